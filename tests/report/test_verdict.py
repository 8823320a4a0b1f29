"""The verdict rules over a run's evidence, the evidence files, and the report directory's
atomic publication: each way a run can fall short of a certification."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from harness.report.model import TestRecord
from harness.report.run import (
    Collection,
    EvidenceError,
    RunEnd,
    RunStart,
    load_facts,
    prune,
    publish,
    run_dir,
    write_collection,
    write_end,
    write_start,
)
from harness.verdict import Outcome, RunFacts, decide

NODE = "suites/test_certification.py::test_{}[{}]"


def rec(
    name: str, outcome: Outcome = "passed", guest: str = "linux", message: str = ""
) -> TestRecord:
    return TestRecord(
        nodeid=NODE.format(name, guest),
        scenario=name.replace("_", " "),
        guest_os=guest,
        outcome=outcome,
        duration_s=1.0,
        message=message,
    )


SIX = [rec(n, guest=g) for n in ("hot_add", "balloon", "floor") for g in ("linux", "windows")]


def facts(
    selected: list[TestRecord] | tuple[str, ...] = tuple(SIX),
    *,
    exit_status: int | None = 0,
    deselected: int = 0,
    interrupted: bool = False,
    profiles: tuple[str, ...] = ("linux", "windows"),
    problem: str = "",
) -> RunFacts:
    ids = tuple(r.nodeid if isinstance(r, TestRecord) else r for r in selected)
    return RunFacts(
        run_id="5e0f2c9a41d7",
        started=1_750_000_000.0,
        guest_profiles=profiles,
        selected=ids,
        deselected=deselected,
        pytest_exit=exit_status,
        interrupted=interrupted,
        problem=problem,
    )


def test_the_whole_run_passed_is_certified() -> None:
    verdict = decide(SIX, facts())
    assert (verdict.status, verdict.scope, verdict.headline) == ("certified", "", "Certified")


@pytest.mark.parametrize("code", [1, 2, 3, 5, 143, -9, None])
def test_pytest_must_have_exited_0(code: int | None) -> None:
    verdict = decide(SIX, facts(exit_status=code))
    assert verdict.status == "inconclusive"
    assert "although every test has a record" in verdict.reasons[0]


def test_a_missing_record_is_inconclusive_even_if_pytest_says_failed() -> None:
    # A killed xdist worker: pytest counts the test as failed, but nobody recorded it.
    verdict = decide(SIX[1:], facts(exit_status=1))
    assert verdict.status == "inconclusive"
    assert verdict.reasons == (
        "1 of 6 tests have no record (the process running them ended before they finished): "
        "test_hot_add[linux]",
    )


def test_interrupted_names_how_far_it_got() -> None:
    verdict = decide(SIX[:4], facts(exit_status=2, interrupted=True))
    assert verdict.status == "inconclusive"
    assert verdict.reasons[0] == "interrupted after 4 of 6 tests"
    # Even when every test had finished (interrupted during teardown).
    assert decide(SIX, facts(exit_status=2, interrupted=True)).status == "inconclusive"


def test_an_app_failure_is_not_certified_whatever_else_happened() -> None:
    failed = [rec("hot_add", "failed", message="ExpectationFailed: stale"), *SIX[1:3]]
    verdict = decide(failed, facts(exit_status=2, interrupted=True))
    assert verdict.status == "not certified"
    assert verdict.reasons[0] == "hot add on linux: failed: ExpectationFailed: stale"
    assert "interrupted after 3 of 6 tests" in verdict.reasons


def test_a_selection_is_partial_never_certified() -> None:
    two = SIX[:2]
    verdict = decide(two, facts(two, deselected=4))
    assert verdict.status == "inconclusive"
    assert verdict.scope == "partial: 2 of 6 scenarios"
    assert verdict.headline == "Inconclusive (partial: 2 of 6 scenarios)"
    assert verdict.reasons[0].startswith("partial: 2 of 6 scenarios (a -k/-m selection)")
    failing = [rec("hot_add", "failed"), SIX[1]]
    assert decide(failing, facts(failing, exit_status=1, deselected=4)).scope == (
        "partial: 2 of 6 scenarios"
    )


def test_an_empty_selection_is_inconclusive() -> None:
    verdict = decide([], facts((), exit_status=5, deselected=6))
    assert verdict.status == "inconclusive"
    assert verdict.reasons[0] == (
        "no tests were selected: 0 of 6 scenarios (pytest exit 5: no tests collected)"
    )


def test_every_requested_profile_needs_a_passed_scenario() -> None:
    linux = [r for r in SIX if r.guest_os == "linux"]
    skipped = [rec(n, "skipped", "windows") for n in ("hot_add", "balloon", "floor")]
    verdict = decide(linux + skipped, facts(linux + skipped))
    assert verdict.status == "inconclusive"
    assert verdict.reasons == ("no scenario passed for guest profile windows",)


def test_records_the_run_did_not_collect_are_not_counted_as_its_own() -> None:
    stale = rec("old_scenario")
    verdict = decide([*SIX, stale], facts())
    assert verdict.status == "inconclusive"
    assert (
        "1 records are of tests this run did not collect: test_old_scenario[linux]"
        in (verdict.reasons[0])
    )


def test_a_run_that_did_not_start_or_collect() -> None:
    usage = decide([], facts((), exit_status=4, problem="usage error (pytest exit 4)"))
    assert usage.reasons == ("the run did not start: usage error (pytest exit 4)",)
    killed = RunFacts(run_id="5e0f2c9a41d7", pytest_exit=-9)
    assert decide([], killed).reasons == (
        "the run ended before pytest finished collecting (pytest was killed by signal 9)",
    )


# -- evidence files -----------------------------------------------------------------------------


def test_evidence_round_trip_with_workers_and_what_dmh_saw(tmp_path: Path) -> None:
    write_start(tmp_path, RunStart("5e0f2c9a41d7", 1_750_000_000.0, ("linux", "windows")))
    ids = tuple(r.nodeid for r in SIX)
    for worker in ("gw0", "gw1"):  # every xdist worker collects the same tests
        write_collection(tmp_path, Collection(worker, ids, deselected=6))
    write_end(tmp_path, RunEnd(0, False, 1_750_000_100.0))
    read = load_facts(tmp_path)
    assert read.run_id == "5e0f2c9a41d7" and read.guest_profiles == ("linux", "windows")
    assert read.selected == ids and read.available == 12 and read.partial
    assert (read.pytest_exit, read.interrupted, read.finished) == (0, False, 1_750_000_100.0)
    # dmh saw pytest die of SIGKILL after it had written "finished": dmh's view wins.
    seen = load_facts(tmp_path, pytest_exit=-9, interrupted=True)
    assert (seen.pytest_exit, seen.interrupted) == (-9, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "collected-gw0.json",
        "collected-gw1.json",
        "finished.json",
        "run.json",
    ]


def test_unreadable_evidence_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{half")
    with pytest.raises(EvidenceError, match=r"run\.json: not DM Harness run evidence"):
        load_facts(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"evidence_version": 99}))
    with pytest.raises(EvidenceError, match="evidence_version is not 1"):
        load_facts(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"evidence_version": 1, "run_id": "x"}))
    with pytest.raises(EvidenceError, match="a field is missing or malformed: KeyError"):
        load_facts(tmp_path)


# -- the report directory ----------------------------------------------------------------------


def finished_run(out: Path, run_id: str, status: str) -> Path:
    run = run_dir(out, run_id)
    (run / "records").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"run": {"id": run_id}, "status": status}))
    (run / "index.html").write_text(f"<p>{status}</p>")
    return run


def test_publish_switches_every_name_at_once_and_replaces_an_old_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"verdict": "certified, but stale"}')  # old layout
    (out / "timelines").mkdir()
    (out / "timelines" / "old.jsonl").write_text("{}")
    first = finished_run(out, "aaaaaaaaaaaa", "certified")
    publish(out, first)
    assert json.loads((out / "summary.json").read_text())["run"]["id"] == "aaaaaaaaaaaa"
    assert not (out / "timelines" / "old.jsonl").exists()
    second = finished_run(out, "bbbbbbbbbbbb", "inconclusive")
    publish(out, second)
    assert json.loads((out / "summary.json").read_text())["run"]["id"] == "bbbbbbbbbbbb"
    assert (out / "index.html").read_text() == "<p>inconclusive</p>"
    assert os.readlink(out / "summary.json") == "latest/summary.json"  # fixed links
    assert os.readlink(out / "latest") == "runs/bbbbbbbbbbbb"


def test_readers_never_see_a_missing_or_mixed_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runs = [finished_run(out, f"{i:012x}", "x") for i in range(1, 4)]
    publish(out, runs[0])
    seen: set[str] = set()
    problems: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads((out / "summary.json").read_text())["run"]["id"])
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(200):
        for run in runs:
            publish(out, run)
    stop.set()
    reader.join(10)
    assert problems == []
    assert seen <= {r.name for r in runs} and seen


def test_prune_keeps_the_latest_runs_in_progress_and_the_newest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = [finished_run(out, f"{i:012x}", "x") for i in range(1, 6)]
    for age, run in enumerate(reversed(old)):
        stamp = time.time() - 100 * (age + 1)
        os.utime(run, (stamp, stamp))
    in_progress = run_dir(out, "ffffffffffff")
    in_progress.mkdir(parents=True)  # no summary yet: a run still going
    dead = run_dir(out, "eeeeeeeeeeee")
    dead.mkdir(parents=True)
    os.utime(dead, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    publish(out, old[0])  # the oldest is the latest published one
    removed = prune(out, keep=2)
    assert sorted(p.name for p in removed) == sorted([old[1].name, old[2].name, dead.name])
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        [old[0].name, old[3].name, old[4].name, in_progress.name]
    )
