"""The history of runs: each run's summary kept in a history directory, the trend over
them (`compute_trend`, `trend.json`), and Allure's own history carried between reports.

The HTML report reads `Trend` from here; `trend.build_reports` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.report.summary import SCHEMA_VERSION, Summary, Totals, iso, parse_iso

log = logging.getLogger(__name__)

TREND_SCHEMA_VERSION = 1
# Version 1 summaries (before run evidence) carry every field the trend reads.
_READABLE_SCHEMAS = (1, SCHEMA_VERSION)
HISTORY_LIMIT = 30  # runs shown in the trend; older history files stay on disk


@dataclass(frozen=True)
class RunPoint:
    """One run as the trend sees it."""

    run_id: str
    finished: datetime
    verdict: str
    totals: Totals


@dataclass(frozen=True)
class OutcomeChange:
    """A test whose outcome differs from the previous run; None means it did not run."""

    nodeid: str
    scenario: str
    guest_profile: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Trend:
    runs: tuple[RunPoint, ...]  # oldest first; the last one is this run
    changes: tuple[OutcomeChange, ...]
    previous: RunPoint | None


@dataclass(frozen=True)
class HistoryRun:
    """A past run read back from its summary in the history directory."""

    point: RunPoint
    tests: Mapping[str, tuple[str, str, str]]  # nodeid → (scenario, guest profile, outcome)


def history_name(summary: Summary) -> str:
    return f"{summary.run.finished.strftime('%Y%m%dT%H%M%SZ')}-{summary.run.run_id}.json"


def save_history(summary_path: Path, summary: Summary, history_dir: Path) -> Path:
    """Copy this run's summary into the history, named by finished time and run id."""
    history_dir.mkdir(parents=True, exist_ok=True)
    target = history_dir / history_name(summary)
    shutil.copyfile(summary_path, target)
    return target


def read_history(history_dir: Path) -> list[HistoryRun]:
    """Every readable summary in the history, oldest first; unreadable ones are logged."""
    runs: list[HistoryRun] = []
    for path in sorted(history_dir.glob("*.json")):
        try:
            runs.append(_parse_history(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("history: skipping %s: %s", path, exc)
    return sorted(runs, key=lambda r: (r.point.finished, r.point.run_id))


def compute_trend(
    summary: Summary, history: Sequence[HistoryRun], limit: int = HISTORY_LIMIT
) -> Trend:
    current = HistoryRun(
        RunPoint(summary.run.run_id, summary.run.finished, summary.verdict.status, summary.totals),
        {r.nodeid: (r.scenario, r.guest_os, r.outcome) for r in summary.tests},
    )
    earlier = [
        h
        for h in history
        if h.point.run_id != current.point.run_id and h.point.finished <= current.point.finished
    ]
    previous = earlier[-1] if earlier else None
    changes: list[OutcomeChange] = []
    if previous is not None:
        for nodeid in sorted(set(previous.tests) | set(current.tests)):
            before = previous.tests.get(nodeid)
            after = current.tests.get(nodeid)
            old = before[2] if before else None
            new = after[2] if after else None
            if old != new:
                scenario, guest, _ = after or before or ("", "", "")
                changes.append(OutcomeChange(nodeid, scenario, guest, old, new))
    changes.sort(key=lambda c: (c.scenario, c.guest_profile, c.nodeid))
    runs = [h.point for h in earlier][-(max(limit, 1) - 1) :] if limit > 1 else []
    return Trend(
        runs=(*runs, current.point),
        changes=tuple(changes),
        previous=previous.point if previous else None,
    )


def write_trend(trend: Trend, path: Path) -> Path:
    data = {
        "schema_version": TREND_SCHEMA_VERSION,
        "runs": [
            {
                "id": p.run_id,
                "finished": iso(p.finished),
                "verdict": p.verdict,
                "totals": dataclasses.asdict(p.totals),
                "pass_rate": p.totals.pass_rate,
            }
            for p in trend.runs
        ],
        "previous_run": trend.previous.run_id if trend.previous else None,
        "changes": [dataclasses.asdict(c) for c in trend.changes],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def carry_allure_history(prev_report_dir: Path, results_dir: Path) -> Path | None:
    """Copy a previous Allure report's `history/` into the new results, so Allure's own
    trend and retries widgets continue; None when either side is missing."""
    source = prev_report_dir / "history"
    if not source.is_dir() or not results_dir.is_dir():
        return None
    target = results_dir / "history"
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def _parse_history(data: Mapping[str, Any]) -> HistoryRun:
    if data.get("schema_version") not in _READABLE_SCHEMAS:
        raise ValueError(f"schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
    run, totals = data["run"], data["totals"]
    return HistoryRun(
        RunPoint(
            run_id=str(run["id"]),
            finished=parse_iso(str(run["finished"])),
            verdict=str(data["verdict"]["status"]),
            totals=Totals(
                tests=int(totals["tests"]),
                passed=int(totals["passed"]),
                failed=int(totals["failed"]),
                broken=int(totals["broken"]),
                skipped=int(totals["skipped"]),
            ),
        ),
        {
            str(t["nodeid"]): (str(t["scenario"]), str(t["guest_profile"]), str(t["outcome"]))
            for t in data["tests"]
        },
    )
