"""Meta-tests: the certification suites catch what they claim to catch.

Each bad reference app is run through the scenarios that should expose it (in a real pytest
subprocess, on the embedded emulator) and the result records must show the right scenarios
failing for the right reason; the good app must pass every scenario.
"""

from __future__ import annotations

import json

import pytest

from harness.report.model import TestRecord, load_records
from tests.embedded import REPO, use_plugin_env

SUITE = REPO / "suites" / "test_certification.py"

pytest_plugins = ["pytester"]


def run_suite(pytester: pytest.Pytester, app: str, *args: str) -> dict[str, TestRecord]:
    out = pytester.path / "out"
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(
            str(SUITE), f"--rootdir={REPO}", "-p", "no:cacheprovider", f"--dm-app={app}",
            f"--dm-report-dir={out}", *args, timeout=600,
        )  # fmt: skip
    records = {r.nodeid.split("::")[-1]: r for r in load_records(out / "records")}
    assert records, result.stdout.str()[-3000:]
    return records


def failed_expectations(record: TestRecord) -> list[str]:
    return [e.name for e in record.expectations if not e.passed]


def test_good_app_passes_every_scenario(pytester: pytest.Pytester) -> None:
    records = run_suite(pytester, "cache_good.py", "-n", "2")
    assert len(records) == 12  # six scenarios × two guest profiles
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad
    summary = json.loads((pytester.path / "out" / "summary.json").read_text())
    assert summary["verdict"]["status"] == "certified"


def test_stale_app_fails_because_its_view_does_not_track_the_guest(
    pytester: pytest.Pytester,
) -> None:
    records = run_suite(pytester, "cache_stale.py", "-n", "2", "-k", "hot_add")
    for name in (
        "test_hot_add_during_steady_load[linux]",
        "test_hot_add_during_steady_load[windows]",
    ):
        record = records[name]
        assert record.outcome == "failed", name
        assert "app's total_mb tracks the guest" in failed_expectations(record), name
        assert "app survived" not in failed_expectations(record), name


def test_hog_fails_only_where_memory_must_be_given_back(pytester: pytest.Pytester) -> None:
    records = run_suite(
        pytester,
        "cache_hog.py",
        "-n",
        "2",
        "--dm-guest-os=linux",
        "-k",
        "pressure or balloon or hot_add",
    )
    for name in ("test_pressure_response[linux]", "test_balloon_removal_during_load[linux]"):
        assert records[name].outcome == "failed", name
        assert any(
            e.startswith("app releases memory") for e in failed_expectations(records[name])
        ), name
    # It grows into added memory and survives: hot-add alone is not its problem.
    assert records["test_hot_add_during_steady_load[linux]"].outcome == "passed"


def test_fragile_app_fails_because_it_crashes_on_hot_add(pytester: pytest.Pytester) -> None:
    records = run_suite(pytester, "cache_fragile.py", "--dm-guest-os=linux", "-k", "hot_add")
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "failed"
    assert "app survived" in failed_expectations(record)
    survived = next(e for e in record.expectations if e.name == "app survived")
    assert "exited with code 3" in survived.detail
