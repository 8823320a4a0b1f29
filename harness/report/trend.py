"""Build a run's reports from its records (`build_reports`) and keep the history of runs.

With a history directory, also `trend.json` and the HTML trend section.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.report.html import TestSection, anchor, write_html
from harness.report.model import (
    KeyFigures,
    TestRecord,
    key_figures,
    load_records,
    resolve_timeline,
)
from harness.report.plot import plot_pass_rate, plot_timeline
from harness.report.summary import (
    SCHEMA_VERSION,
    Summary,
    Totals,
    build_summary,
    iso,
    parse_iso,
    run_info,
    write_summary,
)
from harness.timeline import Timeline

log = logging.getLogger(__name__)

TREND_SCHEMA_VERSION = 1
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
class ReportPaths:
    out_dir: Path
    summary: Path
    html: Path
    plots: tuple[Path, ...]
    trend: Path | None = None
    trend_plot: Path | None = None
    history_entry: Path | None = None


@dataclass(frozen=True)
class HistoryRun:
    """A past run read back from its summary in the history directory."""

    point: RunPoint
    tests: Mapping[str, tuple[str, str, str]]  # nodeid → (scenario, guest profile, outcome)


def build_reports(
    records_dir: Path,
    out_dir: Path,
    history_dir: Path | None = None,
    environment: Mapping[str, str] = MappingProxyType({}),
    *,
    started: datetime | None = None,
    finished: datetime | None = None,
    svg: bool = False,
    history_limit: int = HISTORY_LIMIT,
) -> ReportPaths:
    """Write summary.json, index.html and plots/ into `out_dir` from the records in
    `records_dir`; with `history_dir`, also record this run there and add the trend."""
    records = load_records(records_dir)
    plots_dir = out_dir / "plots"
    sections: list[TestSection] = []
    plot_files: list[Path] = []
    plot_links: dict[str, str] = {}
    for record in records:
        timeline = _read_timeline(record, records_dir)
        if timeline is not None and record.figures == KeyFigures():
            # The plugin recorded no figures (e.g. it crashed first): compute them here.
            record = dataclasses.replace(record, figures=key_figures(timeline))
        png: bytes | None = None
        if timeline is not None:
            stem = plot_stem(record)
            files = plot_timeline(
                timeline,
                plots_dir / f"{stem}.png",
                plots_dir / f"{stem}.svg" if svg else None,
                title=f"{record.scenario} on {record.guest_os}",
                windows=[e.window for e in record.failed_expectations if e.window is not None],
            )
            png = files.png.read_bytes()
            plot_files += [p for p in (files.png, files.svg) if p is not None]
            plot_links[record.nodeid] = f"plots/{files.png.name}"
        sections.append(TestSection(record, png, timeline))

    records = [s.record for s in sections]
    summary = build_summary(records, run_info(records, environment, started, finished), plot_links)
    summary_path = write_summary(summary, out_dir / "summary.json")

    trend: Trend | None = None
    trend_path = trend_plot = history_entry = None
    trend_png: bytes | None = None
    if history_dir is not None:
        history_entry = save_history(summary_path, summary, history_dir)
        trend = compute_trend(summary, read_history(history_dir), history_limit)
        trend_path = write_trend(trend, out_dir / "trend.json")
        trend_plot = plot_pass_rate(
            [p.finished.strftime("%m-%d %H:%M") for p in trend.runs],
            [p.totals.pass_rate for p in trend.runs],
            plots_dir / "trend.png",
        )
        trend_png = trend_plot.read_bytes()
        plot_files.append(trend_plot)

    html_path = write_html(out_dir / "index.html", summary, sections, trend, trend_png)
    return ReportPaths(
        out_dir=out_dir,
        summary=summary_path,
        html=html_path,
        plots=tuple(plot_files),
        trend=trend_path,
        trend_plot=trend_plot,
        history_entry=history_entry,
    )


def plot_stem(record: TestRecord) -> str:
    """A readable, unique, filesystem-safe name for a test's plot."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{record.scenario}-{record.guest_os}".lower()).strip("-")
    return f"{slug[:48] or 'test'}-{anchor(record.nodeid)[2:10]}"


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


def _read_timeline(record: TestRecord, records_dir: Path) -> Timeline | None:
    path = resolve_timeline(record, records_dir)
    if path is None:
        return None
    try:
        return Timeline.from_jsonl(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A lost timeline must not cost the whole report; the test's section says so.
        log.warning("%s: timeline %s unreadable: %s", record.nodeid, path, exc)
        return None


def _parse_history(data: Mapping[str, Any]) -> HistoryRun:
    if data.get("schema_version") != SCHEMA_VERSION:
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
