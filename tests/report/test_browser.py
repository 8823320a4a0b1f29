"""The report in a real browser (headless Chromium): loads cleanly, shows matrix and plots."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.report.browser import DEFAULT_CHROMIUM, PageCheck, check_page, screenshot
from harness.report.build import ReportPaths, build_reports
from tests.requires import needs

pytestmark = needs(
    "chromium",
    missing=None
    if Path(DEFAULT_CHROMIUM).exists()
    else f"{DEFAULT_CHROMIUM} is absent (Debian package 'chromium'; .ci/run installs it)",
)

IMAGES_RENDERED = "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
MATRIX_CELLS = "document.querySelectorAll('table.matrix td.cell').length"
VERDICT = "document.querySelector('.verdict-status').textContent"


@pytest.fixture(scope="module")
def report(mixed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    return build_reports(mixed_run, tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("h"))


@pytest.fixture(scope="module")
def page(report: ReportPaths, tmp_path_factory: pytest.TempPathFactory) -> PageCheck:
    shot = tmp_path_factory.mktemp("shots") / "report.png"
    return check_page(report.html, shot, expressions=(IMAGES_RENDERED, MATRIX_CELLS, VERDICT))


def test_the_report_loads_without_console_errors(page: PageCheck) -> None:
    assert page.console_errors == ()


def test_matrix_plots_and_verdict_are_rendered(page: PageCheck) -> None:
    images, cells, verdict = page.values
    assert images == 4 + 1  # four timeline plots and the trend plot, all decoded
    assert cells == 6
    assert verdict == "Not certified"
    assert '<table class="matrix">' in page.dom
    assert page.dom.count('<img class="plot"') == 4
    assert '<section id="trend">' in page.dom


def test_screenshot_is_a_real_png(page: PageCheck) -> None:
    assert page.screenshot is not None
    data = page.screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2000)
    assert len(data) > 100_000  # text, colours and a plot: far from a blank page


def test_screenshot_helper_returns_the_console_errors(report: ReportPaths, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    assert screenshot(report.html, shot) == []
    assert shot.stat().st_size > 100_000


def test_console_errors_are_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>"
        "<img src='missing.png' alt=''>"
        "<script>console.error('deliberate'); console.log('fine'); noSuchFunction();</script>"
        "</body></html>",
        encoding="utf-8",
    )
    errors = screenshot(broken, tmp_path / "broken.png")
    assert len(errors) == 3, errors
    assert any("missing.png" in e for e in errors)
    assert any("console.error: deliberate" in e for e in errors)
    assert any("noSuchFunction" in e for e in errors)
