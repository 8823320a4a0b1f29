"""The self-contained HTML certification report, built end to end from result records."""

from __future__ import annotations

import base64
import dataclasses
import json
import platform
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import harness
from harness.report.build import ReportPaths, build_reports
from harness.report.model import save_record
from harness.target import RunTarget

from .synthetic import HOSTILE, dm_timeline, finish_run, make_record, passing_expectations

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects what the tests look at: cells, images, resource URLs, the verdict."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str]] = []  # (class, text)
        self.images: list[str] = []
        self.urls: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None
        self._cell_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v]
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "script":
            self.scripts += 1
        if tag == "td" and "cell" in (values.get("class") or "").split():
            self._cell, self._cell_class = [], values.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell_class, "".join(self._cell).strip()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(mixed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    out = tmp_path_factory.mktemp("report")
    return build_reports(mixed_run, out, environment={"DMH_SCHEDULE": "fast"})


def parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return text, page


def test_report_files(report: ReportPaths) -> None:
    assert report.html.name == "index.html" and report.summary.name == "summary.json"
    # Four tests have a timeline (the broken one has none): four plots, all valid PNGs.
    assert len(report.plots) == 4
    for plot in report.plots:
        assert plot.parent == report.out_dir / "plots" and plot.suffix == ".png"
        assert plot.read_bytes()[:8] == PNG_MAGIC
    assert report.trend is None and report.history_entry is None


def test_verdict_and_matrix(report: ReportPaths) -> None:
    text, page = parse(report.html)
    assert '<div class="verdict-status">Not certified</div>' in text
    assert "hot-add-grows-cache on windows-2022: failed" in text
    assert "not a verdict on the app" in text
    assert sorted(page.cells) == sorted(
        [
            ("cell skipped", "skipped"),
            ("cell none", "not run"),
            ("cell passed", "passed"),
            ("cell broken", "broken"),
            ("cell passed", "passed"),
            ("cell failed", "failed"),
        ]
    )


def test_images_are_inline_and_nothing_is_fetched(report: ReportPaths) -> None:
    text, page = parse(report.html)
    assert len(page.images) == 4
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src.removeprefix(prefix))[:8] == PNG_MAGIC
    assert all(url.startswith(("#", "data:")) for url in page.urls), page.urls
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", text)
    assert page.scripts == 0
    assert "default-src 'none'" in text  # the CSP: even injected markup could fetch nothing


def test_hostile_names_are_escaped(report: ReportPaths) -> None:
    text, _ = parse(report.html)
    assert HOSTILE not in text
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;dmh&#x27;)&lt;/script&gt;" in text
    assert "<b>here</b>" not in text and "not applicable &lt;b&gt;here&lt;/b&gt;" in text


def test_failure_window_shows_its_samples(report: ReportPaths) -> None:
    text, _ = parse(report.html)
    assert "Failure window of “app sees hot-added memory within 10 s”: 16.0 s – 26.0 s" in text
    window = text[text.index("Failure window of") :]
    window = window[: window.index("</table>")]
    rows = re.findall(r'<tr class="(inside|context)">', window)
    # 11 samples from 16 s to 26 s, plus one before and one after for context.
    assert rows.count("inside") == 11 and rows.count("context") == 2
    assert '<td class="num">3,712</td>' in window  # assigned
    assert '<td class="num">1,024</td>' in window  # the app's stale total


def test_expectations_figures_and_environment(report: ReportPaths) -> None:
    text, _ = parse(report.html)
    assert '<span class="chip failed">fail</span>' in text
    assert text.count('<span class="chip passed">pass</span>') == 3 + 3 + 1
    assert "<dt>Peak assigned</dt><dd>3,712 MB</dd>" in text
    assert "<dt>Hot-adds</dt><dd>6 (+2,688 MB)</dd>" in text
    assert "<dt>App reaction</dt><dd>3.0 s slowest (2 measured)</dd>" in text
    env = text[text.index('id="environment"') :]
    for label, value in [
        ("Harness version", harness.__version__),
        ("Python", platform.python_version()),
        ("Host", "embedded emulator"),
        ("Guest profiles", "ubuntu-22.04, windows-2022"),
        ("DMH_SCHEDULE", "fast"),
    ]:
        assert f'<th scope="row">{label}</th><td>{value}</td>' in env


def test_all_passed_run_is_certified(tmp_path: Path) -> None:
    records = tmp_path / "records"
    for guest in ("ubuntu-22.04", "windows-2022"):
        make_record(
            records,
            "hot-add-grows-cache",
            guest,
            "passed",
            timeline=dm_timeline(windows_guest=guest.startswith("windows")),
            expectations=passing_expectations(),
        )
    finish_run(records)
    report = build_reports(records, tmp_path / "out")
    text, page = parse(report.html)
    assert '<div class="verdict-status">Certified</div>' in text
    assert page.cells == [("cell passed", "passed"), ("cell passed", "passed")]


def test_missing_timeline_and_no_records(tmp_path: Path) -> None:
    records = tmp_path / "records"
    make_record(records, "hot-add", "ubuntu-22.04", "passed", timeline=dm_timeline())
    (records / "timelines" / "hot-add-ubuntu-22.04.jsonl").unlink()
    text, page = parse(build_reports(records, tmp_path / "out").html)
    assert "The timeline file could not be read; no plot." in text
    assert page.images == []

    empty = tmp_path / "empty"
    empty.mkdir()
    finish_run(empty, profiles=["linux"], exit_status=5)
    text, _ = parse(build_reports(empty, tmp_path / "out2").html)
    assert '<div class="verdict-status">Inconclusive</div>' in text
    assert "no tests were selected: 0 of 0 scenarios (pytest exit 5: no tests collected)" in text


def test_the_verdict_box_says_a_run_on_the_emulator_is_no_certification(
    report: ReportPaths,
) -> None:
    page, _ = parse(report.html)
    start = page.index('<section id="verdict"')
    box = page[start : page.index("</section>", start)]
    assert (
        '<div class="verdict-where">on the embedded emulator — not a certification on Hyper-V</div>'
        in box
    )
    summary = json.loads(report.summary.read_text(encoding="utf-8"))
    assert (
        summary["verdict"]["where"] == "on the embedded emulator — not a certification on Hyper-V"
    )
    assert summary["run"]["tools"] == []
    assert '<section id="tool">' not in page


def test_a_lab_run_names_its_host_and_a_tool_run_has_a_management_tool_section(
    tmp_path: Path,
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    for scenario, outcome in (("tracks hot-add", "passed"), ("tracks balloon removal", "failed")):
        message = "reports the startup memory as the VM's memory: 1024 MB"
        record = make_record(records, scenario, "linux", outcome, message=message)  # type: ignore[arg-type]
        save_record(
            dataclasses.replace(
                record,
                target=RunTarget.lab("psrp://hyperv01.lab:5986"),
                app="tool: python my_agent.py",
            ),
            records,
        )
    paths = build_reports(records, tmp_path / "out")
    page, _ = parse(paths.html)
    assert '<div class="verdict-where">on Hyper-V host psrp://hyperv01.lab:5986</div>' in page
    tool = page[page.index('<section id="tool">') :]
    tool = tool[: tool.index("</section>")]
    assert "<code>python my_agent.py</code>" in tool
    assert '<td class="cell failed">failed</td>' in tool
    assert "reports the startup memory as the VM&#x27;s memory" in tool
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    assert summary["run"]["tools"] == ["python my_agent.py"]
    assert summary["verdict"]["where"] == "on Hyper-V host psrp://hyperv01.lab:5986"
