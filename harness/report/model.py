"""Result records (one JSON file per test, named by a hash of its nodeid) and key figures.

xdist workers write records; the controller rebuilds every report from the directory alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from harness.errors import HarnessError
from harness.target import (
    EMBEDDED_EMULATOR,
    RunTarget,
    target_from_json,
    target_to_json,
)
from harness.timeline import MEMORY_EVENT_KINDS, Event, HostSample, Sample
from harness.verdict import OUTCOMES, TOOL_PREFIX, ExpectationResult, Outcome


def tools_of(apps: Sequence[str]) -> list[str]:
    """The management tools among a run's subjects (records name them "tool: COMMAND")."""
    return sorted({a.removeprefix(TOOL_PREFIX) for a in apps if a.startswith(TOOL_PREFIX)})


RECORD_VERSION = 1
RECORD_PREFIX = "record-"

# The app's own view, in order of preference: the total it believes it has is what a
# memory-sizing app acts on; available/cache are the fallbacks for apps that report no total.
REACTION_KEYS = ("total_mb", "available_mb", "cache_mb")


class RecordError(HarnessError, ValueError):
    """A result record file is unreadable or does not have the record shape."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: not a DM Harness result record: {problem}")


class TimelineView(Protocol):
    """What reports read from a timeline; `harness.timeline.Timeline` satisfies it."""

    @property
    def samples(self) -> Sequence[Sample]: ...

    @property
    def events(self) -> Sequence[Event]: ...


@dataclass(frozen=True)
class KeyFigures:
    """What a reader wants from one timeline at a glance; see `key_figures` for definitions."""

    samples: int = 0
    duration_s: float = 0.0
    peak_assigned_mb: int | None = None
    min_assigned_mb: int | None = None
    peak_demand_mb: int | None = None
    hot_adds: int = 0
    balloon_removals: int = 0
    added_mb: int = 0
    removed_mb: int = 0
    memory_events: int = 0
    app_view: str | None = None
    app_reactions_s: tuple[float, ...] = ()
    events_without_reaction: int = 0

    @property
    def app_reaction_s(self) -> float | None:
        """The slowest measured reaction: a certification cares about the worst case."""
        return max(self.app_reactions_s) if self.app_reactions_s else None


@dataclass(frozen=True)
class TestRecord:
    """The outcome of one test (scenario × guest profile), as the pytest plugin records it."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    scenario: str
    guest_os: str
    outcome: Outcome
    duration_s: float
    message: str = ""
    target: RunTarget | None = None  # where it ran; None: the record does not say
    app: str = ""
    expectations: tuple[ExpectationResult, ...] = ()
    timeline_path: str | None = None
    figures: KeyFigures = field(default_factory=KeyFigures)
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    # Behaviours the user asked for (--dm-expect) that this test checked, and those the user
    # did not ask for (so not certified).
    behaviours_checked: tuple[str, ...] = ()
    behaviours_not_asked: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    @property
    def host_label(self) -> str:
        """The host's secret-free label ("" when the record does not say)."""
        return self.target.label if self.target is not None else ""

    @property
    def failed_expectations(self) -> tuple[ExpectationResult, ...]:
        return tuple(e for e in self.expectations if e.applicable and not e.passed)


# -- key figures ------------------------------------------------------------------------


def key_figures(timeline: TimelineView, tolerance_mb: float = 1.0) -> KeyFigures:
    """Compute the key figures of a timeline.

    - hot-adds / balloon removals: the increases of the host's `add_operations` /
      `remove_operations` counters; when both counters stay zero for the whole timeline
      (a host without the DM counters), the number of sample-to-sample increases / decreases
      of assigned memory instead. `added_mb` / `removed_mb` follow the same rule.
    - app reaction: for each event of a kind in `MEMORY_EVENT_KINDS`, the time from the event
      to the first later sample where the app's reported view differs (by ≥ `tolerance_mb`)
      from its value at the event. The view is the first of `REACTION_KEYS` the app reports.
      The search ends at the next memory event; an event with no change before then counts
      in `events_without_reaction` (e.g. a Windows guest's total after a balloon removal).
    """
    samples = sorted(timeline.samples, key=lambda s: s.t)
    events = sorted((e for e in timeline.events if e.kind in MEMORY_EVENT_KINDS), key=lambda e: e.t)
    hosts = [s.host for s in samples if s.host is not None]
    assigned = [h.assigned_mb for h in hosts if h.assigned_mb > 0]
    demand = [h.demand_mb for h in hosts]
    times = [s.t for s in samples] + [e.t for e in timeline.events]
    hot_adds, removals, added, removed = _memory_moves(hosts)
    view, reactions, unanswered = _reactions(samples, events, tolerance_mb)
    return KeyFigures(
        samples=len(samples),
        duration_s=round(max(times) - min(times), 3) if times else 0.0,
        peak_assigned_mb=max(assigned) if assigned else None,
        min_assigned_mb=min(assigned) if assigned else None,
        peak_demand_mb=max(demand) if demand else None,
        hot_adds=hot_adds,
        balloon_removals=removals,
        added_mb=added,
        removed_mb=removed,
        memory_events=len(events),
        app_view=view,
        app_reactions_s=tuple(round(r, 3) for r in reactions),
        events_without_reaction=unanswered,
    )


def _memory_moves(hosts: Sequence[HostSample]) -> tuple[int, int, int, int]:
    pairs = list(itertools.pairwise(hosts))
    if any(h.add_operations or h.remove_operations for h in hosts):
        return (
            sum(max(0, b.add_operations - a.add_operations) for a, b in pairs),
            sum(max(0, b.remove_operations - a.remove_operations) for a, b in pairs),
            sum(max(0, b.added_mb - a.added_mb) for a, b in pairs),
            sum(max(0, b.removed_mb - a.removed_mb) for a, b in pairs),
        )
    # A VM that is off reports 0 MB assigned; a start is not a hot-add, so skip those pairs.
    running = [(a, b) for a, b in pairs if a.assigned_mb > 0 and b.assigned_mb > 0]
    ups = [b.assigned_mb - a.assigned_mb for a, b in running if b.assigned_mb > a.assigned_mb]
    downs = [a.assigned_mb - b.assigned_mb for a, b in running if b.assigned_mb < a.assigned_mb]
    return len(ups), len(downs), sum(ups), sum(downs)


def _reactions(
    samples: Sequence[Sample], events: Sequence[Event], tolerance_mb: float
) -> tuple[str | None, list[float], int]:
    reported = [s for s in samples if s.app is not None and s.app.reported]
    view = next(
        (k for k in REACTION_KEYS if any(k in s.app.reported for s in reported if s.app)), None
    )
    if view is None:
        return None, [], 0
    values = [
        (s.t, float(s.app.reported[view])) for s in reported if s.app and view in s.app.reported
    ]
    reactions: list[float] = []
    unanswered = 0
    for index, event in enumerate(events):
        end = events[index + 1].t if index + 1 < len(events) else math.inf
        before = [v for t, v in values if t <= event.t]
        if not before:
            continue  # the app reported nothing yet: no baseline to compare with
        baseline = before[-1]
        changed = next(
            (t for t, v in values if event.t < t < end and abs(v - baseline) >= tolerance_mb),
            None,
        )
        if changed is None:
            unanswered += 1
        else:
            reactions.append(changed - event.t)
    return view, reactions, unanswered


# -- persistence ------------------------------------------------------------------------


def record_filename(nodeid: str) -> str:
    """A stable file name for a test's record: xdist workers never write the same file."""
    digest = hashlib.sha256(nodeid.encode("utf-8")).hexdigest()[:20]
    return f"{RECORD_PREFIX}{digest}.json"


def save_record(record: TestRecord, records_dir: Path) -> Path:
    """Write the record into `records_dir` (atomically: the controller may be reading)."""
    records_dir.mkdir(parents=True, exist_ok=True)
    path = records_dir / record_filename(record.nodeid)
    text = json.dumps(record_to_json(record), indent=2, sort_keys=True, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=records_dir, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_record(path: Path) -> TestRecord:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(path, str(exc)) from exc
    try:
        return record_from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(path, f"{type(exc).__name__}: {exc}") from exc


def load_records(records_dir: Path) -> list[TestRecord]:
    """All records in the directory, ordered by scenario, guest profile and nodeid."""
    records = [load_record(p) for p in sorted(records_dir.glob(f"{RECORD_PREFIX}*.json"))]
    return sorted(records, key=lambda r: (r.scenario, r.guest_os, r.nodeid))


def record_to_json(record: TestRecord) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "nodeid": record.nodeid,
        "scenario": record.scenario,
        "guest_os": record.guest_os,
        "outcome": record.outcome,
        "duration_s": record.duration_s,
        "message": record.message,
        "host_label": record.host_label,
        "target": None if record.target is None else target_to_json(record.target),
        "app": record.app,
        "expectations": [
            {
                "name": e.name,
                "passed": e.passed,
                "detail": e.detail,
                "window_start": e.window_start,
                "window_end": e.window_end,
                "behaviour": e.behaviour,
                "applicable": e.applicable,
            }
            for e in record.expectations
        ],
        "timeline_path": record.timeline_path,
        "figures": figures_to_json(record.figures),
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "behaviours_checked": list(record.behaviours_checked),
        "behaviours_not_asked": list(record.behaviours_not_asked),
    }


def record_from_json(data: Mapping[str, Any]) -> TestRecord:
    version = data.get("record_version")
    if version != RECORD_VERSION:
        raise ValueError(f"record_version {version!r} is not {RECORD_VERSION}")
    return TestRecord(
        nodeid=str(data["nodeid"]),
        scenario=str(data["scenario"]),
        guest_os=str(data["guest_os"]),
        outcome=cast(Outcome, data["outcome"]),
        duration_s=float(data["duration_s"]),
        message=str(data.get("message", "")),
        target=_target(data),
        app=str(data.get("app", "")),
        expectations=tuple(
            ExpectationResult(
                name=str(e["name"]),
                passed=bool(e["passed"]),
                detail=str(e.get("detail", "")),
                window_start=_opt_float(e.get("window_start")),
                window_end=_opt_float(e.get("window_end")),
                behaviour=str(e.get("behaviour", "")),
                applicable=bool(e.get("applicable", True)),
            )
            for e in data.get("expectations", ())
        ),
        timeline_path=None if data.get("timeline_path") is None else str(data["timeline_path"]),
        figures=figures_from_json(data.get("figures") or {}),
        started_at=_opt_float(data.get("started_at")),
        finished_at=_opt_float(data.get("finished_at")),
        behaviours_checked=tuple(str(b) for b in data.get("behaviours_checked", ())),
        behaviours_not_asked=tuple(str(b) for b in data.get("behaviours_not_asked", ())),
    )


def figures_to_json(figures: KeyFigures) -> dict[str, Any]:
    return {
        "samples": figures.samples,
        "duration_s": figures.duration_s,
        "peak_assigned_mb": figures.peak_assigned_mb,
        "min_assigned_mb": figures.min_assigned_mb,
        "peak_demand_mb": figures.peak_demand_mb,
        "hot_adds": figures.hot_adds,
        "balloon_removals": figures.balloon_removals,
        "added_mb": figures.added_mb,
        "removed_mb": figures.removed_mb,
        "memory_events": figures.memory_events,
        "app_view": figures.app_view,
        "app_reaction_s": figures.app_reaction_s,
        "app_reactions_s": list(figures.app_reactions_s),
        "events_without_reaction": figures.events_without_reaction,
    }


def figures_from_json(data: Mapping[str, Any]) -> KeyFigures:
    return KeyFigures(
        samples=int(data.get("samples", 0)),
        duration_s=float(data.get("duration_s", 0.0)),
        peak_assigned_mb=_opt_int(data.get("peak_assigned_mb")),
        min_assigned_mb=_opt_int(data.get("min_assigned_mb")),
        peak_demand_mb=_opt_int(data.get("peak_demand_mb")),
        hot_adds=int(data.get("hot_adds", 0)),
        balloon_removals=int(data.get("balloon_removals", 0)),
        added_mb=int(data.get("added_mb", 0)),
        removed_mb=int(data.get("removed_mb", 0)),
        memory_events=int(data.get("memory_events", 0)),
        app_view=None if data.get("app_view") is None else str(data["app_view"]),
        app_reactions_s=tuple(float(r) for r in data.get("app_reactions_s", ())),
        events_without_reaction=int(data.get("events_without_reaction", 0)),
    )


def resolve_timeline(record: TestRecord, records_dir: Path) -> Path | None:
    """The record's timeline file; a relative path is relative to the records directory."""
    if not record.timeline_path:
        return None
    path = Path(record.timeline_path)
    return path if path.is_absolute() else records_dir / path


def _target(data: Mapping[str, Any]) -> RunTarget | None:
    """Where the record's test ran. A record written before targets were recorded names the
    host only by its label, the emulator's being `EMBEDDED_EMULATOR`."""
    if data.get("target") is not None:
        return target_from_json(data["target"])
    label = str(data.get("host_label") or "")
    if not label:
        return None
    return RunTarget("emulator", label) if label == EMBEDDED_EMULATOR else RunTarget.lab(label)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
