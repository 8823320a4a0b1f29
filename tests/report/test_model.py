"""Key figures from timelines and result records on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.model import (
    KeyFigures,
    RecordError,
    TestRecord,
    key_figures,
    load_record,
    load_records,
    record_filename,
    resolve_timeline,
    save_record,
)
from harness.target import RunTarget
from harness.timeline import AppSample, HostSample, Timeline
from harness.verdict import ExpectationResult

from .synthetic import dm_timeline


def host(assigned: int, adds: int = 0, removes: int = 0, demand: int = 500) -> HostSample:
    return HostSample(
        state="Running",
        assigned_mb=assigned,
        demand_mb=demand,
        status="OK",
        pressure=50,
        minimum_mb=512,
        maximum_mb=4096,
        buffer=20,
        add_operations=adds,
        remove_operations=removes,
    )


def app(**reported: float) -> AppSample:
    return AppSample(pid=1, running=True, working_set_mb=100.0, private_mb=90.0, reported=reported)


def test_hot_adds_and_removals_come_from_the_host_counters() -> None:
    timeline = Timeline(start=0.0)
    # The counter jumps by two between samples (two operations in one second), while assigned
    # rises once: the counters win.
    for t, (assigned, adds, removes) in enumerate(
        [(1024, 3, 1), (1024, 3, 1), (1536, 5, 1), (1536, 5, 1), (1280, 5, 2), (1024, 5, 3)]
    ):
        timeline.add_sample(host(assigned, adds, removes, demand=600 + t), t=float(t))
    figures = key_figures(timeline)
    assert (figures.hot_adds, figures.balloon_removals) == (2, 2)
    assert (figures.peak_assigned_mb, figures.min_assigned_mb) == (1536, 1024)
    assert figures.peak_demand_mb == 605
    assert (figures.samples, figures.duration_s) == (6, 5.0)


def test_without_counters_assigned_steps_are_counted_and_starts_are_not_hot_adds() -> None:
    timeline = Timeline(start=0.0)
    for t, assigned in enumerate([0, 1024, 1152, 1280, 1280, 1024, 0, 1024]):
        timeline.add_sample(host(assigned), t=float(t))
    figures = key_figures(timeline)
    # 0 → 1024 (twice) is the VM starting, 1024 → 0 is it stopping: neither counts.
    assert (figures.hot_adds, figures.added_mb) == (2, 256)
    assert (figures.balloon_removals, figures.removed_mb) == (1, 256)
    assert figures.min_assigned_mb == 1024


def test_reaction_time_runs_from_the_event_to_the_first_changed_app_view() -> None:
    timeline = Timeline(start=0.0)
    totals = [1024, 1024, 1024, 1024, 2048, 2048, 2048, 2048, 2048, 2048]
    for t, total in enumerate(totals):
        # available_mb wobbles every sample; total_mb is preferred, so the wobble is ignored.
        timeline.add_sample(
            host(1024), app=app(total_mb=total, available_mb=500 + t), t=float(t) + 0.5
        )
    timeline.add_event("lever", "raise maximum", t=2.0)  # view changes at 4.5 s
    timeline.add_event("info", "not a memory event", t=3.0)
    timeline.add_event("memory", "balloon 512 MB", t=6.0)  # total never drops: no reaction
    figures = key_figures(timeline)
    assert figures.app_view == "total_mb"
    assert figures.memory_events == 2
    assert figures.app_reactions_s == (2.5,)
    assert figures.app_reaction_s == 2.5
    assert figures.events_without_reaction == 1


def test_reaction_falls_back_to_available_when_the_app_reports_no_total() -> None:
    timeline = Timeline(start=0.0)
    for t, available in enumerate([800, 800, 800.4, 1600, 1600]):
        timeline.add_sample(host(1024), app=app(available_mb=available), t=float(t))
    timeline.add_event("lever", "hot-add", t=1.0)
    figures = key_figures(timeline)
    assert figures.app_view == "available_mb"
    assert figures.app_reactions_s == (2.0,)  # 0.4 MB at t=2 is under the tolerance


def test_synthetic_run_figures() -> None:
    linux = key_figures(dm_timeline())
    assert linux.peak_assigned_mb == 3712
    assert linux.hot_adds == 6 and linux.balloon_removals == 11
    assert linux.added_mb == linux.removed_mb == 3712 - 1024
    assert linux.app_reactions_s == (2.0, 3.0)
    windows = key_figures(dm_timeline(windows_guest=True))
    # A Windows guest's total is a high-water mark: no reaction to the balloon.
    assert windows.app_reactions_s == (2.0,) and windows.events_without_reaction == 1


def test_empty_timeline_has_empty_figures() -> None:
    figures = key_figures(Timeline(start=0.0))
    assert figures == KeyFigures()
    assert figures.app_reaction_s is None


def record(nodeid: str, **changes: object) -> TestRecord:
    fields: dict[str, object] = {
        "nodeid": nodeid,
        "scenario": "hot-add",
        "guest_os": "windows-2022",
        "outcome": "failed",
        "duration_s": 12.5,
        "message": "ExpectationFailed: späte Reaktion",
        "target": RunTarget.lab("psrp://hyperv01.lab:5986"),
        "app": "cache-sizer",
        "expectations": (ExpectationResult("reacts", False, "too late", 3.0, 9.0),),
        "timeline_path": "timelines/a.jsonl",
        "figures": key_figures(dm_timeline()),
        "started_at": 1_750_000_000.0,
        "finished_at": 1_750_000_012.5,
    }
    fields.update(changes)
    return TestRecord(**fields)  # type: ignore[arg-type]


def test_records_round_trip_one_file_per_nodeid(tmp_path: Path) -> None:
    first = record("suites/test_dm.py::test_a[windows-2022]")
    second = record("suites/test_dm.py::test_a[ubuntu-22.04]", guest_os="ubuntu-22.04")
    path = save_record(first, tmp_path)
    save_record(second, tmp_path)
    save_record(first, tmp_path)  # a rerun overwrites, never duplicates
    (tmp_path / "notes.json").write_text("{}")  # not a record: ignored
    assert path.name == record_filename(first.nodeid)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []
    assert load_records(tmp_path) == [second, first]  # ordered by scenario, guest, nodeid


def test_a_corrupt_record_names_its_file(tmp_path: Path) -> None:
    save_record(record("a"), tmp_path)
    bad = tmp_path / record_filename("b")
    bad.write_text(json.dumps({"record_version": 1, "nodeid": "b"}))
    with pytest.raises(RecordError, match=bad.name):
        load_records(tmp_path)


def test_outcome_is_checked() -> None:
    with pytest.raises(ValueError, match="outcome"):
        record("a", outcome="error")


def test_relative_timeline_paths_are_relative_to_the_records(tmp_path: Path) -> None:
    assert resolve_timeline(record("a"), tmp_path) == tmp_path / "timelines/a.jsonl"
    absolute = tmp_path / "elsewhere.jsonl"
    assert resolve_timeline(record("a", timeline_path=str(absolute)), tmp_path) == absolute
    assert resolve_timeline(record("a", timeline_path=None), tmp_path) is None


def test_expectation_window_is_ordered() -> None:
    assert ExpectationResult("x", False, "", 9.0, 3.0).window == (3.0, 9.0)
    assert ExpectationResult("x", False, "", None, 4.0).window == (4.0, 4.0)
    assert ExpectationResult("x", True).window is None


def test_a_record_says_where_its_test_ran(tmp_path: Path) -> None:
    emulated = RunTarget.emulator("2012R2", "qemu")
    path = save_record(record("t::emulated", target=emulated), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["host_label"] == "embedded emulator"
    assert data["target"] == {
        "kind": "emulator",
        "label": "embedded emulator",
        "hyperv_version": "2012R2",
        "guest_backend": "qemu",
    }
    assert load_record(path).target == emulated


@pytest.mark.parametrize(
    ("label", "target"),
    [
        ("embedded emulator", RunTarget("emulator", "embedded emulator")),
        ("psrp://hyperv01.lab:5986", RunTarget("lab", "psrp://hyperv01.lab:5986")),
        ("", None),
    ],
)
def test_a_record_written_before_targets_names_its_host_by_label(
    tmp_path: Path, label: str, target: RunTarget | None
) -> None:
    path = save_record(record("t::old"), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["target"]
    data["host_label"] = label
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_record(path).target == target
