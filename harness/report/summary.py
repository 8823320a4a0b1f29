"""The run's verdict, each test's outcome (`outcome_of`: failed vs broken) and
`summary.json` for pipelines (schema version 1).

Schema: `reports/summary.schema.json`, documented in `reports/SUMMARY.md`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import harness
from harness.report.model import (
    OUTCOMES,
    Outcome,
    TestRecord,
    figures_to_json,
    tools_of,
    where_it_ran,
)

SCHEMA_VERSION = 1  # bump on any change a consumer of summary.json could notice
VerdictStatus = Literal["certified", "not certified", "inconclusive"]
BROKEN_MEANING = "infrastructure problem, not a verdict on the app"
_MESSAGE_CHARS = 240
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*: )")


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reasons: tuple[str, ...]

    @property
    def headline(self) -> str:
        return self.status.capitalize()


@dataclass(frozen=True)
class Totals:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    broken: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, records: Sequence[TestRecord]) -> Totals:
        counts = {o: sum(1 for r in records if r.outcome == o) for o in OUTCOMES}
        return cls(tests=len(records), **counts)

    @property
    def pass_rate(self) -> float | None:
        """Passed over tests that ran (skipped ones excluded); None when none ran."""
        ran = self.tests - self.skipped
        return self.passed / ran if ran else None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started: datetime
    finished: datetime
    harness_version: str
    python: str
    hosts: tuple[str, ...]
    guest_profiles: tuple[str, ...]
    apps: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Summary:
    run: RunInfo
    totals: Totals
    verdict: Verdict
    tests: tuple[TestRecord, ...]
    plots: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # nodeid →


def decide(records: Sequence[TestRecord]) -> Verdict:
    """Certified iff ≥ 1 test ran and none failed or broke; broken alone is inconclusive."""
    totals = Totals.of(records)
    failed = [r for r in records if r.outcome == "failed"]
    broken = [r for r in records if r.outcome == "broken"]
    broken_reasons = tuple(
        f"{_where(r)}: broken ({BROKEN_MEANING}){_first_line(r.message)}" for r in broken
    )
    if failed:
        return Verdict(
            "not certified",
            tuple(f"{_where(r)}: failed{_first_line(r.message)}" for r in failed) + broken_reasons,
        )
    if broken:
        return Verdict("inconclusive", broken_reasons)
    if totals.tests == 0:
        return Verdict("not certified", ("no tests ran",))
    if totals.passed == 0:
        return Verdict("not certified", (f"all {totals.skipped} tests were skipped",))
    reason = f"all {totals.passed} tests that ran passed"
    if totals.skipped:
        reason += f" ({totals.skipped} skipped)"
    return Verdict("certified", (reason,))


def run_info(
    records: Sequence[TestRecord],
    environment: Mapping[str, str] | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
) -> RunInfo:
    """Run facts from the records; times default to the records' own, else to now (UTC)."""
    now = datetime.now(timezone.utc)
    starts = [r.started_at for r in records if r.started_at is not None]
    ends = [r.finished_at for r in records if r.finished_at is not None]
    began = started or (_utc(min(starts)) if starts else now)
    ended = finished or (_utc(max(ends)) if ends else now)
    # The id depends only on what ran and when, so rebuilding a report keeps its id.
    digest = hashlib.sha256()
    digest.update(f"{began.isoformat()}|{ended.isoformat()}".encode())
    for record in sorted(records, key=lambda r: r.nodeid):
        digest.update(f"|{record.nodeid}={record.outcome}".encode())
    return RunInfo(
        run_id=digest.hexdigest()[:8],
        started=began,
        finished=ended,
        harness_version=harness.__version__,
        python=platform.python_version(),
        hosts=_distinct(r.host_label for r in records),
        guest_profiles=_distinct(r.guest_os for r in records),
        apps=_distinct(r.app for r in records),
        environment=MappingProxyType(dict(environment or {})),
    )


def build_summary(
    records: Sequence[TestRecord], run: RunInfo, plots: Mapping[str, str] | None = None
) -> Summary:
    return Summary(
        run=run,
        totals=Totals.of(records),
        verdict=decide(records),
        tests=tuple(records),
        plots=MappingProxyType(dict(plots or {})),
    )


def summary_to_json(summary: Summary) -> dict[str, Any]:
    run = summary.run
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": run.run_id,
            "harness_version": run.harness_version,
            "python": run.python,
            "started": iso(run.started),
            "finished": iso(run.finished),
            "hosts": list(run.hosts),
            "guest_profiles": list(run.guest_profiles),
            "apps": list(run.apps),
            "tools": tools_of(run.apps),
            "environment": dict(run.environment),
        },
        "totals": {
            "tests": summary.totals.tests,
            "passed": summary.totals.passed,
            "failed": summary.totals.failed,
            "broken": summary.totals.broken,
            "skipped": summary.totals.skipped,
            "pass_rate": summary.totals.pass_rate,
        },
        "verdict": {
            "status": summary.verdict.status,
            "reasons": list(summary.verdict.reasons),
            "where": where_it_ran(run.hosts),
        },
        "tests": [
            {
                "nodeid": r.nodeid,
                "outcome": r.outcome,
                "scenario": r.scenario,
                "guest_profile": r.guest_os,
                "host": r.host_label,
                "app": r.app,
                "duration_s": r.duration_s,
                "message": r.message,
                "expectations": [
                    {
                        "name": e.name,
                        "passed": e.passed,
                        "detail": e.detail,
                        "window": None if e.window is None else list(e.window),
                    }
                    for e in r.expectations
                ],
                "figures": figures_to_json(r.figures),
                "plot": summary.plots.get(r.nodeid),
            }
            for r in summary.tests
        ],
    }


def write_summary(summary: Summary, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary_to_json(summary), indent=2, allow_nan=False, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


FailureKind = Literal["failed", "broken"]
PHASES = ("setup", "call", "teardown")


@dataclass(frozen=True)
class Phase:
    """One phase of a test (setup, call or teardown), as its outcome needs it."""

    when: str
    status: Literal["passed", "failed", "skipped"]
    message: str = ""  # a failure's first line, or why it was skipped
    kind: FailureKind = "broken"  # whose failure a failed phase is
    duration_s: float = 0.0


def failure_kind(when: str, error: BaseException | None) -> FailureKind:
    """An AssertionError in the test body (ExpectationFailed is one) is the app's failure;
    anything else, or any failure in setup or teardown, is the infrastructure's."""
    return "failed" if when == "call" and isinstance(error, AssertionError) else "broken"


def outcome_of(phases: Mapping[str, Phase]) -> tuple[Outcome, str]:
    """passed / failed (the app misbehaved) / broken (infrastructure) / skipped, and why:
    the first phase, in order, that was skipped or failed decides."""
    for when in PHASES:
        phase = phases.get(when)
        if phase is None or phase.status == "passed":
            continue
        if phase.status == "skipped":
            return "skipped", phase.message
        return phase.kind, phase.message.splitlines()[0] if phase.message else ""
    return "passed", ""


def iso(moment: datetime) -> str:
    """UTC, second precision, `Z` suffix: what pipelines and JSON Schema `date-time` expect."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))


def _where(record: TestRecord) -> str:
    return f"{record.scenario} on {record.guest_os}" if record.guest_os else record.scenario


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    # "harness.errors.LeverError: ..." reads better as "LeverError: ..." in a verdict.
    line = _QUALIFIED.sub(r"\1", line)
    if len(line) > _MESSAGE_CHARS:
        line = line[: _MESSAGE_CHARS - 1] + "…"
    return f": {line}" if line else ""
