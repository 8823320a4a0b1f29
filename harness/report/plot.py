"""Timeline plots (host, guest and app memory, events, one time axis) and the trend plot.

Headless: `matplotlib.figure.Figure` with the Agg/SVG canvases, never pyplot.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from harness.report.model import TimelineView
from harness.timeline import MEMORY_EVENT_KINDS, Sample

GB_THRESHOLD_MB = 2048  # at or above this peak, GB reads better than four-digit MB
MINUTES_THRESHOLD_S = 900
EVENT_LABEL_CHARS = 34
MAX_EVENT_LABELS = 12  # more than this and labels collide: number them only
BOUND_FACTOR = 2.0  # draw minimum/maximum only up to this multiple of the measured peak

# Any: matplotlib's stubs key rcParams by a Literal that differs between versions.
_STYLE: dict[Any, Any] = {
    "font.size": 9,
    "font.family": "DejaVu Sans",
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": "#94a3b8",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.8,
    "legend.fontsize": 8,
    "xtick.color": "#334155",
    "ytick.color": "#334155",
    "svg.hashsalt": "dm-harness",  # stable element ids: identical input, identical SVG
    "svg.fonttype": "path",
    "text.parse_math": False,  # scenario names and event messages are text, not TeX: "$5"
}
_REPORTED_COLOURS = ("#475569", "#0e7490", "#a16207", "#7c3aed")


@dataclass(frozen=True)
class PlotFiles:
    png: Path
    svg: Path | None = None


@dataclass(frozen=True)
class _Series:
    label: str
    values: tuple[float, ...]  # MB, NaN where the sample lacks the value
    colour: str
    width: float = 1.4
    style: str = "-"
    layer: float = 2.0
    bound: bool = False  # a setting (minimum/maximum), not a measurement


@dataclass(frozen=True)
class Scale:
    x_label: str
    x_divisor: float
    y_label: str
    y_divisor: float


def scale_for(peak_mb: float, span_s: float) -> Scale:
    """Seconds or minutes, MB or GB (Hyper-V's binary GB: 1 GB = 1024 MB), by range."""
    minutes = span_s >= MINUTES_THRESHOLD_S
    gb = peak_mb >= GB_THRESHOLD_MB
    return Scale(
        x_label="time since start (min)" if minutes else "time since start (s)",
        x_divisor=60.0 if minutes else 1.0,
        y_label="memory (GB)" if gb else "memory (MB)",
        y_divisor=1024.0 if gb else 1.0,
    )


def plot_timeline(
    timeline: TimelineView,
    path_png: Path,
    path_svg: Path | None = None,
    title: str = "",
    windows: Sequence[tuple[float, float]] = (),
) -> PlotFiles:
    """Draw one timeline; `windows` (timeline seconds) are shaded as failure windows."""
    samples = sorted(timeline.samples, key=lambda s: s.t)
    events = sorted(timeline.events, key=lambda e: e.t)
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(11.0, 5.0), dpi=110, layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title or "Memory timeline")
        series = _visible_series(_series(samples))
        if not series:
            axes.text(
                0.5,
                0.5,
                "No memory samples were recorded for this test",
                transform=axes.transAxes,
                ha="center",
                va="center",
                color="#64748b",
                fontsize=11,
            )
            axes.set_yticks([])
        peak = max((v for s in series for v in s.values if math.isfinite(v)), default=0.0)
        span = max([s.t for s in samples] + [e.t for e in events], default=0.0)
        scale = scale_for(peak, span)
        x_scale, y_scale = scale.x_divisor, scale.y_divisor
        xs = [s.t / x_scale for s in samples]
        for item in series:
            axes.plot(
                xs,
                [v / y_scale for v in item.values],
                label=item.label,
                color=item.colour,
                linewidth=item.width,
                linestyle=item.style,
                zorder=item.layer,
            )
        for number, (start, end) in enumerate(windows):
            axes.axvspan(
                start / x_scale,
                max(end, start) / x_scale,
                color="#fecaca",
                alpha=0.55,
                linewidth=0,
                label="failure window" if number == 0 else None,
                zorder=0,
            )
        _draw_events(axes, [(e.t / x_scale, e.kind, e.message) for e in events])
        axes.set_xlabel(scale.x_label)
        if series:
            axes.set_ylabel(scale.y_label)
            axes.set_ylim(bottom=0, top=peak / y_scale * 1.12 or 1)
        if samples or events:
            axes.set_xlim(left=0, right=max(span / x_scale, 1e-6))
        if series or windows:
            figure.legend(loc="outside lower center", ncols=4, frameon=False)
        _save_png(figure, path_png)
        if path_svg is not None:
            path_svg.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path_svg, format="svg", metadata={"Date": None})
    return PlotFiles(path_png, path_svg)


def plot_pass_rate(
    labels: Sequence[str], rates: Sequence[float | None], path_png: Path, title: str = ""
) -> Path:
    """A small trend plot: pass rate (%) per run, oldest first; None (nothing ran) is a gap."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(7.5, 2.6), dpi=110, layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title or "Pass rate per run")
        xs = list(range(len(labels)))
        ys = [math.nan if r is None else r * 100.0 for r in rates]
        axes.plot(xs, ys, color="#1f4e79", linewidth=1.6, marker="o", markersize=5)
        for x, y in zip(xs, ys, strict=True):
            if math.isfinite(y):
                axes.annotate(
                    f"{y:.0f}%",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                    color="#334155",
                )
        axes.set_ylim(0, 112)
        axes.set_yticks([0, 25, 50, 75, 100])
        axes.set_ylabel("passed (%)")
        axes.set_xticks(xs, list(labels), rotation=30, ha="right", fontsize=7)
        if len(xs) == 1:
            axes.set_xlim(-0.5, 0.5)
        _save_png(figure, path_png)
    return path_png


def _save_png(figure: Figure, path: Path) -> None:
    # The HTML report inlines every plot: a 128-colour palette PNG is about a third of the
    # size of Agg's RGBA output, with no visible loss on flat-coloured line plots.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    palette.save(path, format="PNG", optimize=True)


def _series(samples: Sequence[Sample]) -> list[_Series]:
    def column(get: Callable[[Sample], float | None]) -> tuple[float, ...]:
        return tuple(math.nan if (v := get(s)) is None else float(v) for s in samples)

    def visible(s: Sample) -> float | None:
        # The host's "Guest Visible Physical Memory" counter when it has one, else the guest's.
        if s.host is not None and s.host.guest_visible_mb > 0:
            return s.host.guest_visible_mb
        return s.guest.total_mb if s.guest is not None else None

    series = [
        _Series(
            "maximum",
            column(lambda s: s.host.maximum_mb if s.host else None),
            "#94a3b8",
            0.9,
            ":",
            bound=True,
        ),
        _Series(
            "minimum",
            column(lambda s: s.host.minimum_mb if s.host else None),
            "#cbd5e1",
            0.9,
            ":",
            bound=True,
        ),
        _Series(
            "assigned",
            column(lambda s: s.host.assigned_mb if s.host else None),
            "#1f4e79",
            2.4,
            layer=3.0,  # the headline series stays on top where others coincide with it
        ),
        _Series(
            "demand", column(lambda s: s.host.demand_mb if s.host else None), "#d97706", 1.5, "--"
        ),
        _Series("guest visible", column(visible), "#7c3aed", 1.5),
        _Series(
            "guest available",
            column(lambda s: s.guest.available_mb if s.guest else None),
            "#059669",
            1.3,
        ),
        _Series(
            "app working set",
            column(lambda s: s.app.working_set_mb if s.app else None),
            "#be185d",
            1.4,
        ),
    ]
    keys = sorted({k for s in samples if s.app for k in s.app.reported if k.endswith("_mb")})
    for index, key in enumerate(keys):
        series.append(
            _Series(
                f"app reports {key.removesuffix('_mb').replace('_', ' ')}",
                column(_reported(key)),
                _REPORTED_COLOURS[index % len(_REPORTED_COLOURS)],
                1.3,
                "-.",
            )
        )
    return series


def _visible_series(series: Sequence[_Series]) -> list[_Series]:
    """Series with data; the bounds only when they do not flatten the rest (Hyper-V's
    default maximum is 1 TB, which would squash a 4 GB VM to a line at the bottom)."""
    present = [s for s in series if any(math.isfinite(v) for v in s.values)]
    data_peak = max(
        (v for s in present if not s.bound for v in s.values if math.isfinite(v)), default=0.0
    )
    return [
        s
        for s in present
        if not s.bound
        or max(v for v in s.values if math.isfinite(v)) <= BOUND_FACTOR * max(data_peak, 1.0)
    ]


def _reported(key: str) -> Callable[[Sample], float | None]:
    return lambda s: s.app.reported.get(key) if s.app is not None else None


def _draw_events(axes: Axes, events: Sequence[tuple[float, str, str]]) -> None:
    with_text = len(events) <= MAX_EVENT_LABELS
    for number, (x, kind, message) in enumerate(events, start=1):
        memory = kind in MEMORY_EVENT_KINDS
        colour = "#334155" if memory else "#94a3b8"
        axes.axvline(x, color=colour, linewidth=0.9, linestyle="--", zorder=1)
        text = f"{number}"
        if with_text:
            short = message if len(message) <= EVENT_LABEL_CHARS else message[:33] + "…"
            text = f"{number} {short}"
        axes.annotate(
            text,
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -4),
            textcoords="offset points",
            rotation=90,
            ha="left",
            va="top",
            fontsize=7,
            color=colour,
            annotation_clip=False,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
        )
