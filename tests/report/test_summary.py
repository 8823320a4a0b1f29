"""The verdict rules and summary.json against its published schema."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.report.model import TestRecord, load_records
from harness.report.summary import (
    build_summary,
    run_info,
    summary_to_json,
    write_summary,
)
from harness.target import RunTarget
from harness.verdict import Outcome, RunFacts, decide

from . import schema_check

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "reports" / "summary.schema.json").read_text()
)


def rec(
    scenario: str, outcome: Outcome, guest: str = "ubuntu-22.04", message: str = ""
) -> TestRecord:
    return TestRecord(
        nodeid=f"suites/test_dm.py::test_{scenario}[{guest}]",
        scenario=scenario,
        guest_os=guest,
        outcome=outcome,
        duration_s=3.0,
        message=message,
    )


def whole(records: list[TestRecord], exit_status: int | None = None) -> RunFacts:
    """The facts of a finished run that collected exactly these tests."""
    failing = any(r.outcome in ("failed", "broken") for r in records)
    return RunFacts(
        run_id="5e0f2c9a41d7",
        started=1_750_000_000.0,
        guest_profiles=tuple(sorted({r.guest_os for r in records})),
        selected=tuple(r.nodeid for r in records),
        pytest_exit=(1 if failing else 0) if exit_status is None else exit_status,
    )


def test_all_passed_is_certified() -> None:
    records = [rec("hot-add", "passed"), rec("balloon", "passed")]
    verdict = decide(records, whole(records))
    assert verdict.status == "certified"
    assert verdict.reasons == ("all 2 tests that ran passed",)


def test_skipped_tests_do_not_count_against() -> None:
    records = [rec("hot-add", "passed"), rec("balloon", "skipped")]
    verdict = decide(records, whole(records))
    assert verdict.status == "certified"
    assert "1 skipped" in verdict.reasons[0]


def test_one_failure_is_not_certified_and_names_the_scenario() -> None:
    records = [
        rec("hot-add", "passed"),
        rec("balloon", "failed", "windows-2022", "harness.errors.ExpectationFailed: stale\nx"),
    ]
    verdict = decide(records, whole(records))
    assert verdict.status == "not certified"
    assert verdict.reasons == ("balloon on windows-2022: failed: ExpectationFailed: stale",)


def test_failure_and_breakage_list_both() -> None:
    records = [rec("hot-add", "failed"), rec("balloon", "broken")]
    verdict = decide(records, whole(records))
    assert verdict.status == "not certified"
    assert [r.split(":")[0] for r in verdict.reasons] == [
        "hot-add on ubuntu-22.04",
        "balloon on ubuntu-22.04",
    ]


def test_only_broken_is_inconclusive() -> None:
    records = [
        rec("hot-add", "passed"),
        rec("balloon", "broken", message="HostUnreachableError: x"),
    ]
    verdict = decide(records, whole(records))
    assert verdict.status == "inconclusive"
    assert "not a verdict on the app" in verdict.reasons[0]
    assert "balloon" in verdict.reasons[0]


@pytest.mark.parametrize("records", [[], [rec("hot-add", "skipped"), rec("b", "skipped")]])
def test_nothing_ran_is_inconclusive(records: list[TestRecord]) -> None:
    verdict = decide(records, whole(records, exit_status=5 if not records else 0))
    assert verdict.status == "inconclusive"
    assert ("no tests were selected" if not records else "skipped") in verdict.reasons[0]


def test_records_without_run_evidence_are_never_certified() -> None:
    records = [rec("hot-add", "passed"), rec("balloon", "passed")]
    verdict = decide(records, RunFacts())
    assert verdict.status == "inconclusive"
    assert verdict.reasons[0].startswith("no run evidence next to the records")


def test_run_info_from_the_records_and_a_stable_id() -> None:
    first = TestRecord(
        "a",
        "s",
        "g",
        "passed",
        1.0,
        target=RunTarget.emulator("2022"),
        app="app",
        started_at=1_750_000_000.0,
        finished_at=1_750_000_010.0,
    )
    second = TestRecord(
        "b",
        "s",
        "h",
        "passed",
        1.0,
        target=RunTarget.emulator("2022"),
        app="app",
        started_at=1_750_000_005.0,
        finished_at=1_750_000_030.0,
    )
    info = run_info([first, second], {"CI": "local"})
    assert info.started == datetime.fromtimestamp(1_750_000_000.0, timezone.utc)
    assert info.finished == datetime.fromtimestamp(1_750_000_030.0, timezone.utc)
    assert info.hosts == ("embedded emulator",) and info.guest_profiles == ("g", "h")
    assert info.harness_version == harness.__version__
    assert run_info([second, first]).run_id == info.run_id
    assert run_info([first]).run_id != info.run_id


def test_summary_matches_the_schema(mixed_run: Path, tmp_path: Path) -> None:
    records = load_records(mixed_run)
    summary = build_summary(records, run_info(records, {"DMH_SCHEDULE": "fast"}))
    path = write_summary(summary, tmp_path / "summary.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert schema_check.errors(data, SCHEMA) == []
    assert data["schema_version"] == 2
    assert data["run"]["selection"] == {"selected": None, "available": None, "partial": False}
    assert data["run"]["pytest_exit"] is None and data["run"]["interrupted"] is False
    assert data["totals"] == {
        "tests": 5,
        "passed": 2,
        "failed": 1,
        "broken": 1,
        "skipped": 1,
        "pass_rate": 0.5,
    }
    assert data["verdict"]["status"] == "not certified"
    failed = next(t for t in data["tests"] if t["outcome"] == "failed")
    assert failed["scenario"] == "hot-add-grows-cache"
    assert failed["guest_profile"] == "windows-2022"
    assert failed["figures"]["peak_assigned_mb"] == 3712
    assert failed["figures"]["hot_adds"] == 6
    assert failed["figures"]["balloon_removals"] == 11
    assert failed["figures"]["app_reactions_s"] == []
    assert failed["expectations"][1]["window"] == [16.0, 26.0]


def _mutations(valid: dict[str, Any]) -> list[dict[str, Any]]:
    def changed(edit: Any) -> dict[str, Any]:
        doc = copy.deepcopy(valid)
        edit(doc)
        return doc

    return [
        changed(lambda d: d.pop("verdict")),
        changed(lambda d: d.__setitem__("schema_version", 1)),
        changed(lambda d: d["verdict"].pop("scope")),
        changed(lambda d: d["run"]["selection"].__setitem__("partial", "no")),
        changed(lambda d: d["run"].__setitem__("pytest_exit", "0")),
        changed(lambda d: d["verdict"].__setitem__("status", "certified-ish")),
        changed(lambda d: d["totals"].__setitem__("failed", -1)),
        changed(lambda d: d["totals"].__setitem__("passed", True)),
        changed(lambda d: d["run"].__setitem__("started", "yesterday")),
        changed(lambda d: d["run"].__setitem__("password", "hunter2")),
        changed(lambda d: d["tests"][0]["figures"].__setitem__("hot_adds", "6")),
        changed(lambda d: d["tests"][-1]["expectations"][0].__setitem__("window", [1.0])),
        changed(lambda d: d["tests"][0].__setitem__("outcome", "error")),
    ]


def test_the_schema_check_rejects_broken_summaries(mixed_run: Path) -> None:
    records = load_records(mixed_run)
    valid = summary_to_json(build_summary(records, run_info(records)))
    valid = json.loads(json.dumps(valid))
    assert schema_check.errors(valid, SCHEMA) == []
    for doc in _mutations(valid):
        assert schema_check.errors(doc, SCHEMA), f"accepted an invalid summary: {doc}"
