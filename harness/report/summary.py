"""`summary.json` for pipelines (schema version 2): the run, its totals, its verdict
(`harness.verdict.decide`) and its tests.

Schema: `reports/summary.schema.json`, documented in `reports/SUMMARY.md`.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import harness
from harness.report.model import (
    TestRecord,
    figures_to_json,
    tools_of,
)
from harness.report.run import write_json
from harness.target import RunTarget, where
from harness.verdict import OUTCOMES, RunFacts, Verdict, decide

SCHEMA_VERSION = 2  # bump on any change a consumer of summary.json could notice


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
    targets: tuple[RunTarget, ...]  # where the tests ran, each once
    guest_profiles: tuple[str, ...]
    apps: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    facts: RunFacts = field(default_factory=RunFacts)


@dataclass(frozen=True)
class Summary:
    run: RunInfo
    totals: Totals
    verdict: Verdict
    tests: tuple[TestRecord, ...]
    plots: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # nodeid →


def run_info(
    records: Sequence[TestRecord],
    environment: Mapping[str, str] | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
    facts: RunFacts | None = None,
) -> RunInfo:
    """Run facts: the id and times from the run's evidence when there is some, else from the
    records' own times (else now, UTC)."""
    facts = facts or RunFacts()
    now = datetime.now(timezone.utc)
    starts = [r.started_at for r in records if r.started_at is not None]
    ends = [r.finished_at for r in records if r.finished_at is not None]
    if facts.started is not None:
        starts = [facts.started]
    if facts.finished is not None:
        ends = [*ends, facts.finished]
    began = started or (_utc(min(starts)) if starts else now)
    ended = finished or (_utc(max(ends)) if ends else now)
    run_id = facts.run_id
    if run_id is None:
        # Records alone: an id that depends only on what ran and when, so rebuilding a
        # report keeps its id.
        digest = hashlib.sha256()
        digest.update(f"{began.isoformat()}|{ended.isoformat()}".encode())
        for record in sorted(records, key=lambda r: r.nodeid):
            digest.update(f"|{record.nodeid}={record.outcome}".encode())
        run_id = digest.hexdigest()[:8]
    return RunInfo(
        run_id=run_id,
        started=began,
        finished=ended,
        harness_version=harness.__version__,
        python=platform.python_version(),
        hosts=_distinct(r.host_label for r in records),
        targets=tuple(dict.fromkeys(r.target for r in records if r.target is not None)),
        guest_profiles=_distinct(r.guest_os for r in records),
        apps=_distinct(r.app for r in records),
        environment=MappingProxyType(dict(environment or {})),
        facts=facts,
    )


def build_summary(
    records: Sequence[TestRecord], run: RunInfo, plots: Mapping[str, str] | None = None
) -> Summary:
    return Summary(
        run=run,
        totals=Totals.of(records),
        verdict=decide(records, run.facts),
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
            "requested_guest_profiles": list(run.facts.guest_profiles),
            "selection": {
                "selected": None if run.facts.selected is None else len(run.facts.selected),
                "available": run.facts.available,
                "partial": run.facts.partial,
            },
            "pytest_exit": run.facts.pytest_exit,
            "interrupted": run.facts.interrupted,
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
            "where": where(run.targets),
            "scope": summary.verdict.scope,
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


def write_summary(summary: Summary, path: Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write summary.json atomically: a pipeline polling it never reads half a file.
    `extra`: keys a merged report adds (`matrix`, see harness.merge)."""
    return write_json(path, {**summary_to_json(summary), **(extra or {})})


def iso(moment: datetime) -> str:
    """UTC, second precision, `Z` suffix: what pipelines and JSON Schema `date-time` expect."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))
