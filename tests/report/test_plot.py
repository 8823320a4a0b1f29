"""Timeline and trend plots: valid, non-trivial PNG and SVG files, also for sparse input."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.report.plot import plot_pass_rate, plot_timeline, scale_for
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
    assert (width, height) == (1210, 550)
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
    assert png_size(files.png) == (1210, 550)
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


def test_units_follow_the_range() -> None:
    assert scale_for(1500, 60).y_label == "memory (MB)"
    gb = scale_for(3712, 60)
    assert (gb.y_label, gb.y_divisor) == ("memory (GB)", 1024.0)
    assert scale_for(3712, 60).x_label == "time since start (s)"
    minutes = scale_for(3712, 3600)
    assert (minutes.x_label, minutes.x_divisor) == ("time since start (min)", 60.0)


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
