"""The run's verdict, each test's outcome (`outcome_of`: failed vs broken) and
`summary.json` for pipelines (schema version 2).

Schema: `reports/summary.schema.json`, documented in `reports/SUMMARY.md`.

The verdict is decided from one run's evidence (`harness.report.run.RunFacts`: what it
collected, how pytest ended) together with that run's records, never from records alone:
CERTIFIED needs pytest's exit 0, a record for every collected test, no interruption, no
`-k`/`-m` selection and a passed scenario for every requested guest profile. A recorded app
failure is NOT CERTIFIED whatever else happened (no further test could change that);
anything else short of CERTIFIED is INCONCLUSIVE, with the first reason saying why.
"""

from __future__ import annotations

import hashlib
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
    TOOL_PREFIX,
    Outcome,
    TestRecord,
    figures_to_json,
    tools_of,
    where_it_ran,
)
from harness.report.run import RunFacts, describe_exit, write_json

SCHEMA_VERSION = 2  # bump on any change a consumer of summary.json could notice
VerdictStatus = Literal["certified", "not certified", "inconclusive"]
BROKEN_MEANING = "infrastructure problem, not a verdict on the app"
_MESSAGE_CHARS = 240
_NAMES_SHOWN = 3
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*: )")


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    reasons: tuple[str, ...]
    scope: str = ""  # "partial: N of M scenarios" when a selection ran, else ""

    @property
    def headline(self) -> str:
        status = self.status.capitalize()
        return f"{status} ({self.scope})" if self.scope else status


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
    facts: RunFacts = field(default_factory=RunFacts)


@dataclass(frozen=True)
class Summary:
    run: RunInfo
    totals: Totals
    verdict: Verdict
    tests: tuple[TestRecord, ...]
    plots: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # nodeid →


def decide(records: Sequence[TestRecord], facts: RunFacts) -> Verdict:
    """The verdict of one run from its records and its facts; see the module docstring."""
    expected = facts.selected
    own = [r for r in records if expected is None or r.nodeid in expected]
    failed = [r for r in own if r.outcome == "failed"]
    broken = [r for r in own if r.outcome == "broken"]
    gaps = _gaps(records, facts)
    broken_reasons = tuple(
        f"{_where(r)}: broken ({BROKEN_MEANING}){_first_line(r.message)}" for r in broken
    )
    if failed:
        failures = tuple(f"{_where(r)}: failed{_first_line(r.message)}" for r in failed)
        return Verdict("not certified", failures + gaps + broken_reasons, facts.scope)
    if gaps or broken_reasons:
        return Verdict("inconclusive", gaps + broken_reasons, facts.scope)
    passed = [r for r in own if r.outcome == "passed"]
    skipped = len(own) - len(passed)
    if not passed:
        return Verdict("inconclusive", (f"all {skipped} tests were skipped: nothing ran",))
    profiles, judged_on = judged_profiles(own, facts)
    missing_profiles = [p for p in profiles if not any(r.guest_os == p for r in passed)]
    if missing_profiles:
        return Verdict(
            "inconclusive",
            tuple(f"no scenario passed for guest profile {p}" for p in missing_profiles),
            facts.scope,
        )
    reason = f"all {len(passed)} tests that ran passed"
    if skipped:
        reason += f" ({skipped} skipped)"
    reason += judged_on
    if facts.partial:
        return Verdict(
            "inconclusive",
            (f"{facts.scope} (a -k/-m selection): {reason}, but a subset is not a certification",),
            facts.scope,
        )
    return Verdict("certified", (reason,))


def judged_profiles(records: Sequence[TestRecord], facts: RunFacts) -> tuple[tuple[str, ...], str]:
    """The guest profiles a run is judged on, and what to add to its reason when that is not
    simply the profiles requested. A management-tool run (every record names a `tool: `) is
    judged on the profiles it ran: the tool reads the host, so its suite runs one profile
    whatever `--dm-guest-os` asks (issue 22)."""
    tools = [r for r in records if r.app.startswith(TOOL_PREFIX)]
    ran = tuple(sorted({r.guest_os for r in tools if r.guest_os}))
    if not records or len(tools) != len(records) or not ran:
        return facts.guest_profiles, ""
    return ran, f"; a management tool, judged on the guest profile its suite ran: {', '.join(ran)}"


def _gaps(records: Sequence[TestRecord], facts: RunFacts) -> tuple[str, ...]:
    """Why this run's evidence falls short of a whole, finished run, most telling first."""
    if facts.problem:
        return (f"the run did not start: {facts.problem}",)
    if facts.run_id is None and facts.selected is None:
        return (
            "no run evidence next to the records: cannot tell which tests should have run "
            f"({describe_exit(facts.pytest_exit)})",
        )
    expected = facts.selected
    if expected is None:
        return (
            f"the run ended before pytest finished collecting ({describe_exit(facts.pytest_exit)})",
        )
    recorded = {r.nodeid for r in records}
    missing = [n for n in expected if n not in recorded]
    foreign = sorted(recorded - set(expected))
    done = len(expected) - len(missing)
    gaps: list[str] = []
    if facts.interrupted:
        how = f" ({facts.interruption})" if facts.interruption else ""
        gaps.append(f"interrupted after {done} of {len(expected)} tests{how}")
    if not expected:
        available = facts.available or 0
        gaps.append(
            f"no tests were selected: 0 of {available} scenarios ({describe_exit(facts.pytest_exit)})"
        )
    elif missing and not facts.interrupted:
        gaps.append(
            f"{len(missing)} of {len(expected)} tests have no record (the process running them "
            f"ended before they finished): {_names(missing)}"
        )
    if foreign:
        gaps.append(
            f"{len(foreign)} records are of tests this run did not collect: {_names(foreign)}"
        )
    if expected and facts.pytest_exit != 0 and not (facts.interrupted or missing):
        failed = any(r.outcome in ("failed", "broken") for r in records)
        if not (facts.pytest_exit == 1 and failed):  # exit 1 is explained by those records
            gaps.append(f"{describe_exit(facts.pytest_exit)} although every test has a record")
    return tuple(gaps)


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
            "where": where_it_ran(run.hosts),
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


def write_summary(summary: Summary, path: Path) -> Path:
    """Write summary.json atomically: a pipeline polling it never reads half a file."""
    return write_json(path, summary_to_json(summary))


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


def _names(nodeids: Sequence[str]) -> str:
    shown = ", ".join(n.rsplit("::", 1)[-1] for n in nodeids[:_NAMES_SHOWN])
    more = len(nodeids) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    # "harness.errors.LeverError: ..." reads better as "LeverError: ..." in a verdict.
    line = _QUALIFIED.sub(r"\1", line)
    if len(line) > _MESSAGE_CHARS:
        line = line[: _MESSAGE_CHARS - 1] + "…"
    return f": {line}" if line else ""
