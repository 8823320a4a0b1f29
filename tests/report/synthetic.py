"""Realistic synthetic timelines and records: a load forces hot-add, then its release a balloon."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.report.model import (
    TestRecord,
    key_figures,
    load_records,
    save_record,
)
from harness.report.run import (
    Collection,
    RunEnd,
    RunStart,
    write_collection,
    write_end,
    write_start,
)
from harness.target import RunTarget
from harness.timeline import AppSample, GuestSample, HostSample, Timeline
from harness.verdict import ExpectationResult, Outcome

STARTUP_MB = 1024
MINIMUM_MB = 512
MAXIMUM_MB = 4096
BLOCK_MB = 128
HOSTILE = "<script>alert('dmh')</script>"


def dm_timeline(
    name: str = "hot-add then balloon",
    *,
    windows_guest: bool = False,
    app_reacts: bool = True,
    seconds: int = 70,
    load_at: float = 10.0,
    release_at: float = 40.0,
) -> Timeline:
    """One sample a second: demand rises at `load_at` (hot-add), falls at `release_at`
    (balloon). A Windows guest's total is a high-water mark; a Linux guest's follows assigned.
    The app reports the guest total it read one sample earlier, or a stale view."""
    timeline = Timeline(start=0.0, name=name)
    timeline.add_event("app", "app under test started (pid 4242)", t=0.5)
    timeline.add_event("lever", "load generator commits 2.5 GB", {"mb": 2560}, t=load_at)
    timeline.add_event("lever", "load generator releases its memory", {"mb": 0}, t=release_at)
    assigned, high_water, adds, removes, added, removed = STARTUP_MB, STARTUP_MB, 0, 0, 0, 0
    previous_total = STARTUP_MB
    for second in range(seconds + 1):
        t = float(second)
        if t < load_at:
            committed = 780
        elif t < release_at:
            committed = min(780 + int((t - load_at) * 450), 3000)
        else:
            committed = 760
        want = min(MAXIMUM_MB, max(MINIMUM_MB, _blocks(committed * 1.2)))
        if want > assigned:
            step = min(want - assigned, 512)
            assigned, adds, added = assigned + step, adds + 1, added + step
        elif want < assigned and t >= release_at + 2:  # the host waits before it balloons
            step = min(assigned - want, 256)
            assigned, removes, removed = assigned - step, removes + 1, removed + step
        high_water = max(high_water, assigned)
        total = high_water if windows_guest else assigned
        host = HostSample(
            state="Running",
            assigned_mb=assigned,
            demand_mb=committed,
            status="OK" if committed < assigned else "Warning",
            pressure=round(committed * 100 / assigned),
            minimum_mb=MINIMUM_MB,
            maximum_mb=MAXIMUM_MB,
            buffer=20,
            added_mb=added,
            removed_mb=removed,
            add_operations=adds,
            remove_operations=removes,
            guest_visible_mb=total,
        )
        guest = GuestSample(
            total_mb=total,
            available_mb=max(total - committed, 0),
            committed_mb=committed,
            max_memory_mb=MAXIMUM_MB,
        )
        seen = previous_total if app_reacts else STARTUP_MB
        app = AppSample(
            pid=4242,
            running=True,
            working_set_mb=310.0 + 0.25 * seen,
            private_mb=290.0,
            reported={"total_mb": float(seen), "cache_mb": round(seen * 0.25, 1)},
        )
        timeline.add_sample(host, guest, app, t=t)
        previous_total = total
    return timeline


def make_record(
    records_dir: Path,
    scenario: str,
    guest_os: str,
    outcome: Outcome,
    *,
    timeline: Timeline | None = None,
    message: str = "",
    expectations: Sequence[ExpectationResult] = (),
    started_at: float = 1_750_000_000.0,
    duration_s: float = 71.0,
) -> TestRecord:
    """Save the timeline as JSONL next to the records (relative path) and the record itself."""
    nodeid = f"suites/test_dm.py::test_{scenario}[{guest_os}]"
    timeline_path = None
    figures = None
    if timeline is not None:
        stem = f"{scenario}-{guest_os}".replace("/", "_").replace("<", "_").replace(">", "_")
        timeline_path = f"timelines/{stem}.jsonl"
        (records_dir / "timelines").mkdir(parents=True, exist_ok=True)
        timeline.to_jsonl(records_dir / timeline_path)
        figures = key_figures(timeline)
    record = TestRecord(
        nodeid=nodeid,
        scenario=scenario,
        guest_os=guest_os,
        outcome=outcome,
        duration_s=duration_s,
        message=message,
        target=RunTarget.emulator("2022"),
        app="python -m suites.apps.cache_sizer --fraction 0.25",
        expectations=tuple(expectations),
        timeline_path=timeline_path,
        started_at=started_at,
        finished_at=started_at + duration_s,
        **({"figures": figures} if figures is not None else {}),
    )
    save_record(record, records_dir)
    return record


def finish_run(
    records_dir: Path,
    *,
    run_id: str = "5e0f2c9a41d7",
    profiles: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    deselected: int = 0,
    exit_status: int | None = None,
    interrupted: bool = False,
) -> None:
    """Write the run evidence the plugin writes, for the records already in `records_dir`
    plus `extra` collected tests that left no record; exit status from the outcomes unless
    given."""
    records = load_records(records_dir)
    if exit_status is None:
        exit_status = 1 if any(r.outcome in ("failed", "broken") for r in records) else 0
    started = min((r.started_at or 0.0 for r in records), default=1_750_000_000.0)
    guests = sorted({r.guest_os for r in records}) if profiles is None else list(profiles)
    write_start(records_dir, RunStart(run_id, started, tuple(guests)))
    selected = tuple(r.nodeid for r in records) + tuple(extra)
    write_collection(records_dir, Collection("main", selected, deselected))
    write_end(records_dir, RunEnd(exit_status, interrupted, started + 100.0))


def passing_expectations() -> tuple[ExpectationResult, ...]:
    return (
        ExpectationResult("memory is hot-added under load", True, "assigned 1024 → 3712 MB"),
        ExpectationResult("app sees hot-added memory within 10 s", True, "reacted after 1.0 s"),
        ExpectationResult("app survives balloon removal", True, "running at the end"),
    )


def stale_view_failure() -> ExpectationResult:
    return ExpectationResult(
        "app sees hot-added memory within 10 s",
        False,
        "app reported total 1024 MB at t=26.0 s; guest total is 3712 MB since t=16.0 s",
        16.0,
        26.0,
    )


def _blocks(mb: float) -> int:
    return int(-(-mb // BLOCK_MB) * BLOCK_MB)
