"""Timeline and trend plots: valid, non-trivial PNG and SVG files, also for sparse input."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from harness.report.plot import (
    _STYLE,
    draw_timeline,
    plot_pass_rate,
    plot_timeline,
    scale_for,
)
from harness.timeline import HostSample, Timeline

from .synthetic import dm_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def svg_root(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_full_timeline_png_and_svg(tmp_path: Path) -> None:
    files = plot_timeline(
        dm_timeline(),
        tmp_path / "plot.png",
        tmp_path / "plot.svg",
        title="hot-add then balloon on ubuntu-22.04",
        windows=[(16.0, 26.0)],
    )
    width, height = png_size(files.png)
    assert width == 1210 and height > 550  # the plot, its legend and the event key
    assert files.png.stat().st_size > 15_000  # lines, legend and labels, not a blank canvas
    assert files.svg is not None
    root = svg_root(files.svg)
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 50


def test_svg_is_reproducible(tmp_path: Path) -> None:
    timeline = dm_timeline()
    plot_timeline(timeline, tmp_path / "a.png", tmp_path / "a.svg")
    plot_timeline(timeline, tmp_path / "b.png", tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_empty_timeline_draws_an_empty_plot_with_a_note(tmp_path: Path) -> None:
    files = plot_timeline(Timeline(start=0.0), tmp_path / "e.png", tmp_path / "e.svg")
    assert png_size(files.png)[0] == 1210
    assert files.png.stat().st_size > 3_000
    assert files.svg is not None
    svg_root(files.svg)


def test_host_only_timeline_with_events_and_no_samples_of_guest_or_app(tmp_path: Path) -> None:
    timeline = Timeline(start=0.0)
    timeline.add_event("lever", "raise maximum to 8 GB", t=3.0)
    for t in range(10):
        # Hyper-V's default maximum is 1 TB: it must not flatten the plot (not drawn).
        timeline.add_sample(
            HostSample("Running", 1024 + 128 * t, 900, "OK", 80, 512, 1_048_576, 20), t=t
        )
    files = plot_timeline(timeline, tmp_path / "h.png")
    png_size(files.png)
    assert files.svg is None


def test_events_only_timeline(tmp_path: Path) -> None:
    timeline = Timeline(start=0.0)
    for n in range(20):  # more events than get text labels
        timeline.add_event("lever", f"step {n}", t=float(n))
    png_size(plot_timeline(timeline, tmp_path / "ev.png").png)


def test_memory_is_always_mb_and_time_follows_the_range() -> None:
    # One unit for every plot of a report: a 4 GB plot next to a 1 GB plot both read MB.
    assert scale_for(60).y_label == "memory (MB)"
    assert scale_for(60).x_label == "time since start (s)"
    minutes = scale_for(3600)
    assert (minutes.x_label, minutes.x_divisor, minutes.y_label) == (
        "time since start (min)",
        60.0,
        "memory (MB)",
    )


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def _colours(path: Path) -> set[tuple[int, int, int]]:
    with Image.open(path) as image:
        return {colour for _, colour in image.convert("RGB").getcolors(1 << 20) or []}


def test_every_series_keeps_its_exact_colour_in_every_png(tmp_path: Path) -> None:
    """A fixed palette: the assigned line is the same blue in a busy plot and a quiet one
    (an adaptive palette moved colours between PNGs)."""
    busy = dm_timeline()
    for n in range(30):
        busy.add_event("lever", f"step {n}", t=12.0 + n)
    quiet = dm_timeline(seconds=8, load_at=100, release_at=200)
    first = plot_timeline(busy, tmp_path / "busy.png", windows=[(16.0, 26.0)]).png
    second = plot_timeline(quiet, tmp_path / "quiet.png").png
    series = {"assigned": "#1f4e79", "demand": "#d97706", "app working set": "#be185d"}
    for name, colour in series.items():
        assert _rgb(colour) in _colours(first), f"{name} lost its colour in the busy plot"
        assert _rgb(colour) in _colours(second), f"{name} lost its colour in the quiet plot"


def _texts(figure: matplotlib.figure.Figure, prefix: str) -> list[Text]:
    return [t for t in figure.findobj(Text) if (t.get_gid() or "").startswith(prefix)]


def test_every_event_has_a_number_and_a_key_line_and_no_numbers_overlap() -> None:
    timeline = dm_timeline()
    # A random walk's changes a second apart and a burst closer still: labels must not touch.
    for n in range(24):
        timeline.add_event("lever", f"walk step {n}: buffer to {20 + n}%", t=12.0 + n * 0.3)
    with matplotlib.rc_context(_STYLE):
        figure = draw_timeline(timeline, "walk")
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        renderer = canvas.get_renderer()
        labels = _texts(figure, "event-label-")
        keys = _texts(figure, "event-key-")
    events = len(timeline.events)
    assert len(labels) == events and len(keys) == events
    assert any("walk step 23: buffer to 43%" in key.get_text() for key in keys)
    boxes = [label.get_bbox_patch().get_window_extent(renderer) for label in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), "two event numbers overlap"
    key_boxes = [key.get_window_extent(renderer) for key in keys]
    for i, a in enumerate(key_boxes):
        for b in key_boxes[i + 1 :]:
            assert not a.overlaps(b), "two lines of the event key overlap"


def test_pass_rate_plot(tmp_path: Path) -> None:
    path = plot_pass_rate(
        ["06-14 10:00", "06-15 10:00", "06-16 10:00"], [1.0, None, 0.5], tmp_path / "trend.png"
    )
    width, height = png_size(path)
    assert width > 600 and height > 200


def test_names_are_text_not_tex(tmp_path: Path) -> None:
    timeline = dm_timeline(seconds=5)
    timeline.add_event("lever", r"cost $5 \frac{a}{ and $_{", t=2.0)
    files = plot_timeline(timeline, tmp_path / "t.png", title=r"<script> $\frac{1}{ 100% ^_^")
    png_size(files.png)
