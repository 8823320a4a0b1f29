"""Build a run's reports from its records (`build_reports`): summary.json, index.html, the
plots and, with a history directory, the trend (`harness.report.history`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.report.history import (
    HISTORY_LIMIT,
    Trend,
    compute_trend,
    read_history,
    save_history,
    write_trend,
)
from harness.report.html import TestSection, anchor, write_html
from harness.report.model import (
    KeyFigures,
    TestRecord,
    key_figures,
    load_records,
    resolve_timeline,
)
from harness.report.plot import plot_pass_rate, plot_timeline, scale_for, timeline_span
from harness.report.run import load_facts
from harness.report.summary import build_summary, run_info, write_summary
from harness.timeline import Timeline
from harness.verdict import RunFacts, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    summary: Path
    html: Path
    plots: tuple[Path, ...]
    trend: Path | None = None
    trend_plot: Path | None = None
    history_entry: Path | None = None


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
    facts: RunFacts | None = None,
    verdict: Verdict | None = None,
    extra_html: str = "",
    extra_summary: Mapping[str, Any] | None = None,
) -> ReportPaths:
    """Write summary.json, index.html and plots/ into `out_dir` from the records in
    `records_dir` and the run's evidence there (or `facts`, when the caller knows better);
    with `history_dir`, also record this run there and add the trend. A merged report
    (harness.merge) gives its own `verdict` (its cells'), a section shown after the verdict
    (`extra_html`) and keys added to summary.json (`extra_summary`)."""
    records = load_records(records_dir)
    if facts is None:
        facts = load_facts(records_dir)
    plots_dir = out_dir / "plots"
    sections: list[TestSection] = []
    plot_files: list[Path] = []
    plot_links: dict[str, str] = {}
    timelines = [_read_timeline(record, records_dir) for record in records]
    # One time unit for every plot of the report (memory is always MB).
    scale = scale_for(max((timeline_span(t) for t in timelines if t is not None), default=0.0))
    for record, timeline in zip(records, timelines, strict=True):
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
                scale=scale,
            )
            png = files.png.read_bytes()
            plot_files += [p for p in (files.png, files.svg) if p is not None]
            plot_links[record.nodeid] = f"plots/{files.png.name}"
        sections.append(TestSection(record, png, timeline))

    records = [s.record for s in sections]
    info = run_info(records, environment, started, finished, facts)
    summary = build_summary(records, info, plot_links)
    if verdict is not None:
        summary = dataclasses.replace(summary, verdict=verdict)
    summary_path = write_summary(summary, out_dir / "summary.json", extra_summary)

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

    html_path = write_html(out_dir / "index.html", summary, sections, trend, trend_png, extra_html)
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
