"""History across runs: trend.json, the trend section, and Allure's history carried over."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.report.build import build_reports
from harness.report.history import carry_allure_history
from harness.verdict import Outcome

from .synthetic import dm_timeline, make_record

DAY = 86_400.0


def run(records: Path, outcomes: dict[tuple[str, str], Outcome], started_at: float) -> Path:
    for (scenario, guest), outcome in outcomes.items():
        make_record(
            records,
            scenario,
            guest,
            outcome,
            timeline=dm_timeline(windows_guest=guest.startswith("windows"), seconds=20),
            started_at=started_at,
        )
    return records


FIRST: dict[tuple[str, str], Outcome] = {
    ("hot-add-grows-cache", "ubuntu-22.04"): "passed",
    ("hot-add-grows-cache", "windows-2022"): "failed",
    ("balloon-shrinks-cache", "ubuntu-22.04"): "passed",
    ("balloon-shrinks-cache", "windows-2022"): "passed",
}
SECOND: dict[tuple[str, str], Outcome] = {
    ("hot-add-grows-cache", "windows-2022"): "passed",  # fixed
    ("balloon-shrinks-cache", "ubuntu-22.04"): "passed",  # unchanged
    ("balloon-shrinks-cache", "windows-2022"): "broken",  # lab trouble
    ("cache-ceiling", "ubuntu-22.04"): "passed",  # new; hot-add on ubuntu did not run
}


def test_two_runs_make_a_trend(tmp_path: Path) -> None:
    history = tmp_path / "history"
    first = build_reports(run(tmp_path / "r1", FIRST, 1_750_000_000.0), tmp_path / "o1", history)
    second = build_reports(
        run(tmp_path / "r2", SECOND, 1_750_000_000.0 + DAY), tmp_path / "o2", history
    )
    first_id = json.loads(first.summary.read_text())["run"]["id"]
    second_id = json.loads(second.summary.read_text())["run"]["id"]
    assert first_id != second_id

    names = sorted(p.name for p in history.iterdir())
    assert len(names) == 2
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}\.json", n) for n in names)
    assert names[0].endswith(f"-{first_id}.json") and names[1].endswith(f"-{second_id}.json")

    assert second.trend is not None
    trend = json.loads(second.trend.read_text())
    assert trend["schema_version"] == 1
    assert [r["id"] for r in trend["runs"]] == [first_id, second_id]
    assert [r["pass_rate"] for r in trend["runs"]] == [0.75, 0.75]
    assert [r["verdict"] for r in trend["runs"]] == ["not certified", "inconclusive"]
    assert trend["previous_run"] == first_id
    changes = {
        (c["scenario"], c["guest_profile"]): (c["before"], c["after"]) for c in trend["changes"]
    }
    assert changes == {
        ("balloon-shrinks-cache", "windows-2022"): ("passed", "broken"),
        ("cache-ceiling", "ubuntu-22.04"): (None, "passed"),
        ("hot-add-grows-cache", "ubuntu-22.04"): ("passed", None),
        ("hot-add-grows-cache", "windows-2022"): ("failed", "passed"),
    }

    html = second.html.read_text()
    section = html[html.index('id="trend"') : html.index('id="tests"')]
    assert f"Changed since run {first_id}" in section
    assert section.count("<tr><td>") == 2 + 4  # two runs, four changes
    assert "cache-ceiling" in section and "not run" in section
    assert "data:image/png;base64," in section
    assert second.trend_plot is not None and second.trend_plot.read_bytes()[:4] == b"\x89PNG"

    first_trend = json.loads(first.trend.read_text()) if first.trend else {}
    assert first_trend["previous_run"] is None and first_trend["changes"] == []
    assert "This is the first run in the history." in first.html.read_text()


def test_rebuilding_a_run_does_not_duplicate_it_and_bad_history_is_skipped(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history"
    history.mkdir()
    (history / "00000000T000000Z-garbage.json").write_text("{not json")
    (history / "00000000T000001Z-future.json").write_text(json.dumps({"schema_version": 99}))
    records = run(tmp_path / "r", FIRST, 1_750_000_000.0)
    build_reports(records, tmp_path / "o", history)
    again = build_reports(records, tmp_path / "o", history)
    assert len(list(history.glob("*.json"))) == 3
    assert again.trend is not None
    trend = json.loads(again.trend.read_text())
    assert len(trend["runs"]) == 1 and trend["previous_run"] is None


def test_allure_history_is_carried_into_new_results(tmp_path: Path) -> None:
    previous = tmp_path / "allure-report"
    (previous / "history").mkdir(parents=True)
    (previous / "history" / "history-trend.json").write_text('[{"buildOrder": 7}]')
    (previous / "history" / "history.json").write_text("{}")
    results = tmp_path / "allure-results"
    results.mkdir()
    (results / "history").mkdir()
    (results / "history" / "stale.json").write_text("{}")

    target = carry_allure_history(previous, results)
    assert target == results / "history"
    assert sorted(p.name for p in target.iterdir()) == [
        "history-trend.json",
        "history.json",
        "stale.json",
    ]
    assert json.loads((target / "history-trend.json").read_text()) == [{"buildOrder": 7}]


def test_allure_history_needs_both_sides(tmp_path: Path) -> None:
    results = tmp_path / "allure-results"
    results.mkdir()
    assert carry_allure_history(tmp_path / "no-report", results) is None
    (tmp_path / "report" / "history").mkdir(parents=True)
    assert carry_allure_history(tmp_path / "report", tmp_path / "no-results") is None
    assert not (tmp_path / "no-results").exists()
