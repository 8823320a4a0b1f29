"""Host, guest and app samples and the harness's own events on one monotonic clock.

A timeline is what expectations read and what reports plot; it saves to JSONL (lossless,
one record per line, `"type": "sample" | "event"`) and CSV (samples only, flat columns).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.deadline import Deadline, wait_until

# Event kinds that change the VM's memory or the guest's demand: bounds set ("memory"), guest
# load started or dropped ("load"), verified moves ("hot-add", "balloon"), other levers
# ("lever"), and the DM balancer's own moves the sampler saw, with no lever behind them
# ("balancer": e.g. the hot-adds right after boot).
MEMORY_EVENT_KINDS = frozenset({"memory", "lever", "load", "hot-add", "balloon", "balancer"})


@dataclass(frozen=True)
class HostSample:
    """The VM as the host sees it (Get-VM, Get-VMMemory and the DM VM counters, §4.1)."""

    state: str
    assigned_mb: int
    demand_mb: int
    status: str
    pressure: int
    minimum_mb: int
    maximum_mb: int
    buffer: int
    added_mb: int = 0
    removed_mb: int = 0
    add_operations: int = 0
    remove_operations: int = 0
    guest_visible_mb: int = 0


@dataclass(frozen=True)
class GuestSample:
    """The guest's own memory counters (what software inside the VM reads)."""

    total_mb: int
    available_mb: int
    committed_mb: int
    max_memory_mb: int = 0  # "Hyper-V Dynamic Memory Integration Service" maximum (§4.3)


@dataclass(frozen=True)
class AppSample:
    """The app under test: process stats and, if it reports them, its own memory view."""

    pid: int
    running: bool
    working_set_mb: float
    private_mb: float
    exit_code: int | None = None
    reported: Mapping[str, float] = field(default_factory=dict)
    memory_event: str = ""  # what the guest OS logged about memory running out for it
    # A report line arrived with this sample; False: `reported` carries the last one forward
    # (an app whose loop is slow, or a starved guest, said nothing new since).
    reported_fresh: bool = True


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the timeline started
    host: HostSample | None
    guest: GuestSample | None = None
    app: AppSample | None = None


@dataclass(frozen=True)
class Event:
    """Something the harness did (a setting change, a lever) or saw (the app exited)."""

    t: float
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


class Timeline:
    """Thread-safe, append-only record of samples and events against one monotonic clock."""

    def __init__(self, start: float | None = None, name: str = "") -> None:
        self.name = name
        self.start = time.monotonic() if start is None else start
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._events: list[Event] = []

    def now(self) -> float:
        return time.monotonic() - self.start

    def add_sample(
        self,
        host: HostSample | None,
        guest: GuestSample | None = None,
        app: AppSample | None = None,
        t: float | None = None,
    ) -> Sample:
        sample = Sample(self.now() if t is None else t, host, guest, app)
        with self._lock:
            self._samples.append(sample)
        return sample

    def add_event(
        self, kind: str, message: str, data: Mapping[str, Any] | None = None, t: float | None = None
    ) -> Event:
        event = Event(self.now() if t is None else t, kind, message, dict(data or {}))
        with self._lock:
            self._events.append(event)
        return event

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def last_event(self, kind: str) -> Event:
        """The latest event of `kind` (LookupError when there is none)."""
        found = next((e for e in reversed(self.events) if e.kind == kind), None)
        if found is None:
            raise LookupError(f"no {kind!r} event on the timeline")
        return found

    def samples_between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]

    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def wait_for(self, condition: Callable[[Sample], bool], timeout: float, what: str) -> Sample:
        """Wait until a new sample satisfies `condition`; DeadlineError (broken) if none does."""
        seen = 0

        def found() -> Sample | None:
            nonlocal seen
            samples = self.samples
            hit = next((s for s in samples[seen:] if condition(s)), None)
            seen = len(samples)
            return hit

        return wait_until(found, timeout, what=what, detail=lambda: f"last sample: {self.latest()}")

    def wait_until(self, t: float) -> None:
        """Let the timeline run until its clock reaches `t` (so a window can be observed)."""
        Deadline.at(t, clock=self.now).run_out()

    # -- persistence ------------------------------------------------------------------
    def to_jsonl(self, path: Path) -> Path:
        with path.open("w", encoding="utf-8") as out:
            out.write(json.dumps({"type": "timeline", "name": self.name}) + "\n")
            for record in _merged(self.samples, self.events):
                out.write(json.dumps(record, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_jsonl(cls, path: Path) -> Timeline:
        timeline = cls(start=0.0)
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            kind = record.pop("type")
            if kind == "timeline":
                timeline.name = record.get("name", "")
            elif kind == "event":
                timeline._events.append(Event(**record))
            elif kind == "sample":
                timeline._samples.append(
                    Sample(
                        t=record["t"],
                        host=_load(HostSample, record.get("host")),
                        guest=_load(GuestSample, record.get("guest")),
                        app=_load(AppSample, record.get("app")),
                    )
                )
        return timeline

    def to_csv(self, path: Path) -> Path:
        columns = ["t"] + [
            f"{prefix}.{f.name}"
            for prefix, kind in (("host", HostSample), ("guest", GuestSample), ("app", AppSample))
            for f in fields(kind)
            if f.name != "reported"
        ]
        reported = sorted({k for s in self.samples if s.app for k in s.app.reported})
        columns += [f"app.reported.{k}" for k in reported]
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for sample in self.samples:
                writer.writerow(_flat(sample))
        return path


def _merged(samples: Iterable[Sample], events: Iterable[Event]) -> list[dict[str, Any]]:
    records = [{"type": "sample", **asdict(s)} for s in samples]
    records += [{"type": "event", **asdict(e)} for e in events]
    return sorted(records, key=lambda r: (r["t"], r["type"] == "sample"))


def _load(kind: type[Any], data: Mapping[str, Any] | None) -> Any:
    return None if data is None else kind(**data)


def _flat(sample: Sample) -> dict[str, Any]:
    row: dict[str, Any] = {"t": round(sample.t, 3)}
    for prefix, part in (("host", sample.host), ("guest", sample.guest), ("app", sample.app)):
        if part is None:
            continue
        for key, value in asdict(part).items():
            if key == "reported":
                row.update({f"app.reported.{k}": v for k, v in value.items()})
            else:
                row[f"{prefix}.{key}"] = value
    return row
