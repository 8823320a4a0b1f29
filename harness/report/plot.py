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

MINUTES_THRESHOLD_S = 900
EVENT_LABEL_CHARS = 58  # an event's text in the key; longer messages end in "…"
KEY_COLUMNS = 2
KEY_ROW_INCHES = 0.17
PLOT_INCHES = 4.4
LEGEND_INCHES = 0.45
LABEL_ROW_POINTS = 11.0  # one row of event numbers at the top of the plot
BOUND_FACTOR = 2.0  # draw minimum/maximum only up to this multiple of the measured peak
FAILURE_WINDOW = "#fecaca"
MEMORY_EVENT = "#334155"
OTHER_EVENT = "#94a3b8"

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
_REPORTED_COLOURS = ("#475569", "#0e7490", "#a16207", "#4d7c0f")
TREND_COLOUR = "#1f4e79"
BLEND_STEPS = 8


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
    y_label: str = "memory (MB)"


def scale_for(span_s: float) -> Scale:
    """Seconds or minutes by the time range; memory always in MB, the unit Hyper-V, the
    guests and every message of the harness use, so one report never mixes MB and GB."""
    minutes = span_s >= MINUTES_THRESHOLD_S
    return Scale(
        x_label="time since start (min)" if minutes else "time since start (s)",
        x_divisor=60.0 if minutes else 1.0,
        y_label="memory (MB)",
    )


def plot_timeline(
    timeline: TimelineView,
    path_png: Path,
    path_svg: Path | None = None,
    title: str = "",
    windows: Sequence[tuple[float, float]] = (),
    scale: Scale | None = None,
) -> PlotFiles:
    """Draw one timeline; `windows` (timeline seconds) are shaded as failure windows.

    `scale` gives every plot of one report the same units (default: MB, and seconds or
    minutes by this timeline's span)."""
    with matplotlib.rc_context(_STYLE):
        figure = draw_timeline(timeline, title, windows, scale)
        _save_png(figure, path_png)
        if path_svg is not None:
            path_svg.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path_svg, format="svg", metadata={"Date": None})
    return PlotFiles(path_png, path_svg)


def timeline_span(timeline: TimelineView) -> float:
    """The last moment a timeline knows of (sample or event), in seconds."""
    return max([s.t for s in timeline.samples] + [e.t for e in timeline.events], default=0.0)


def draw_timeline(
    timeline: TimelineView,
    title: str = "",
    windows: Sequence[tuple[float, float]] = (),
    scale: Scale | None = None,
) -> Figure:
    """The timeline's figure: the plot, its legend, and the key of its numbered events."""
    samples = sorted(timeline.samples, key=lambda s: s.t)
    events = sorted(timeline.events, key=lambda e: e.t)
    series = _visible_series(_series(samples))
    key_rows = math.ceil(len(events) / KEY_COLUMNS)
    key_height = 0.12 + KEY_ROW_INCHES * key_rows if events else 0.0
    figure = Figure(figsize=(11.0, PLOT_INCHES + LEGEND_INCHES + key_height), dpi=110)
    figure.set_layout_engine("constrained")
    ratios = [PLOT_INCHES, LEGEND_INCHES] + ([key_height] if events else [])
    grid = figure.add_gridspec(len(ratios), 1, height_ratios=ratios)
    axes = figure.add_subplot(grid[0])
    axes.set_title(title or "Memory timeline")
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
    span = timeline_span(timeline)
    scale = scale or scale_for(span)
    x_scale = scale.x_divisor
    xs = [s.t / x_scale for s in samples]
    for item in series:
        axes.plot(
            xs,
            list(item.values),
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
            color=FAILURE_WINDOW,
            alpha=0.55,
            linewidth=0,
            label="failure window" if number == 0 else None,
            zorder=0,
        )
    if samples or events:
        axes.set_xlim(left=0, right=max(span / x_scale, 1e-6))
    axes.set_xlabel(scale.x_label)
    if series:
        axes.set_ylabel(scale.y_label)
        axes.set_ylim(bottom=0, top=peak * 1.12 or 1)
    _draw_events(axes, [(e.t / x_scale, e.kind) for e in events], figure.get_figwidth())
    legend_axes = figure.add_subplot(grid[1])
    legend_axes.set_axis_off()
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        legend_axes.legend(handles, labels, loc="center", ncols=4, frameon=False)
    if events:
        key_axes = figure.add_subplot(grid[2])
        key_axes.set_axis_off()
        _draw_key(key_axes, [(e.t / x_scale, e.kind, e.message) for e in events], scale)
    return figure


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
        axes.plot(xs, ys, color=TREND_COLOUR, linewidth=1.6, marker="o", markersize=5)
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
    # The HTML report inlines every plot: a palette PNG is about a third of the size of
    # Agg's RGBA output. The palette is fixed, so every series keeps its exact colour in
    # every PNG (an adaptive palette would shift a colour from one plot to the next).
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    buffer.seek(0)
    with Image.open(buffer) as image:
        reduced = image.convert("RGB").quantize(palette=_palette(), dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    reduced.save(path, format="PNG", optimize=True)


def _palette() -> Image.Image:
    """Every colour the plots draw with, each blended with white in steps (antialiased
    edges), and a grey ramp for black text: at most 256 entries."""
    bases = sorted(
        {
            *(s.colour for s in _series(())),
            *_REPORTED_COLOURS,
            FAILURE_WINDOW,
            MEMORY_EVENT,
            OTHER_EVENT,
            *(str(v) for k, v in _STYLE.items() if str(v).startswith("#")),
            TREND_COLOUR,
            "#64748b",
        }
    )
    colours: list[tuple[int, int, int]] = []
    for base in bases:
        r, g, b = (int(base[i : i + 2], 16) for i in (1, 3, 5))
        for step in range(BLEND_STEPS):
            mix = step / BLEND_STEPS
            colours.append(
                (round(r + (255 - r) * mix), round(g + (255 - g) * mix), round(b + (255 - b) * mix))
            )
    colours += [(v, v, v) for v in range(0, 256, 17)]
    unique = list(dict.fromkeys(colours))[:256]
    flat = [channel for colour in unique for channel in colour]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[:3] * (256 - len(unique)))
    return palette


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


def _draw_events(axes: Axes, events: Sequence[tuple[float, str]], figure_inches: float) -> None:
    """A dashed line and a number per event; numbers that would touch move down a row."""
    left, right = axes.get_xlim()
    # The axes width in points before the layout trims margins for the tick labels (90 %).
    width = axes.get_position().width * figure_inches * 72 * 0.9
    row_ends: list[float] = []  # per row, the right edge (points) of its last label
    for number, (x, kind) in enumerate(events, start=1):
        colour = MEMORY_EVENT if kind in MEMORY_EVENT_KINDS else OTHER_EVENT
        axes.axvline(x, color=colour, linewidth=0.9, linestyle="--", zorder=1)
        centre = (x - left) / ((right - left) or 1.0) * width
        half = 3.0 + 2.4 * len(str(number))  # half a label's width in points, with its box
        row = next(
            (r for r, end in enumerate(row_ends) if centre - half > end + 1.0), len(row_ends)
        )
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = centre + half
        axes.annotate(
            str(number),
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -3 - row * LABEL_ROW_POINTS),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            color=colour,
            annotation_clip=False,
            gid=f"event-label-{number}",
            bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": colour, "lw": 0.5},
        )


def _draw_key(axes: Axes, events: Sequence[tuple[float, str, str]], scale: Scale) -> None:
    """The event key under the plot: number, time and message of every event."""
    rows = math.ceil(len(events) / KEY_COLUMNS)
    unit = "min" if scale.x_divisor == 60.0 else "s"
    for index, (x, kind, message) in enumerate(events):
        column, row = divmod(index, rows)
        cut = EVENT_LABEL_CHARS - 1
        short = message if len(message) <= EVENT_LABEL_CHARS else message[:cut] + "…"
        axes.text(
            column / KEY_COLUMNS,
            1.0 - (row + 0.5) / rows,
            f"{index + 1:>3}  {x:7.1f} {unit}  {short}",
            transform=axes.transAxes,
            va="center",
            ha="left",
            fontsize=7.5,
            family="DejaVu Sans Mono",
            color=MEMORY_EVENT if kind in MEMORY_EVENT_KINDS else "#64748b",
            gid=f"event-key-{index + 1}",
        )
