"""The verdict of a management-tool run: judged on the guest profiles its suite ran (the tool
reads the host, so the suite runs one profile whatever `--dm-guest-os` asks), while an app
run still needs a passed scenario on every requested profile (issue 22)."""

from __future__ import annotations

from harness.report.model import Outcome, TestRecord
from harness.report.run import RunFacts
from harness.report.summary import decide

TOOL = "tool: python suites/tools/wmi_tool.py"
NAMES = ("reports_memory", "tracks_hot_add", "tracks_balloon_removal")


def rec(name: str, app: str, guest: str = "windows", outcome: Outcome = "passed") -> TestRecord:
    return TestRecord(
        nodeid=f"suites/test_management_tools.py::test_{name}",
        scenario=name.replace("_", " "),
        guest_os=guest,
        outcome=outcome,
        duration_s=1.0,
        app=app,
    )


def facts(records: list[TestRecord]) -> RunFacts:
    return RunFacts(
        run_id="5e0f2c9a41d7",
        started=1_750_000_000.0,
        guest_profiles=("linux", "windows"),  # --dm-guest-os both, the default
        selected=tuple(r.nodeid for r in records),
        pytest_exit=0,
    )


def test_a_tool_run_is_judged_on_the_profile_it_ran_and_says_so() -> None:
    records = [rec(n, TOOL) for n in NAMES]
    verdict = decide(records, facts(records))
    assert verdict.status == "certified", verdict.reasons
    assert verdict.reasons[0].endswith("judged on the guest profile its suite ran: windows")


def test_an_app_run_still_needs_every_requested_profile() -> None:
    records = [rec(n, "cache_good.py") for n in NAMES]
    verdict = decide(records, facts(records))
    assert verdict.status == "inconclusive"
    assert verdict.reasons == ("no scenario passed for guest profile linux",)


def test_a_failed_tool_test_is_still_not_certified() -> None:
    records = [rec(n, TOOL) for n in NAMES[:2]] + [rec(NAMES[2], TOOL, outcome="failed")]
    assert decide(records, facts(records)).status == "not certified"
