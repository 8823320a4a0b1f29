"""The report pipeline end to end: a small suite runs on the embedded emulator in real pytest
subprocesses, and every output (Allure results, JUnit XML, records, summary.json, the HTML
report, the trend) is read back and checked.

Two runs share one history directory. Run 1 (one process, CI variables set): one scenario
passes, one fails (an expectation), one is broken (a lever that cannot move memory). Run 2
(`-n 2`, no CI variables, a previous Allure report given): the broken scenario is fixed
through an environment variable, so the trend shows it changing.

The runs are plain subprocesses made once per module (pytester is function-scoped and each
run costs seconds); like pytester they load the plugin with `-p harness.fixtures.plugin`.

JUnit: pytest's junitxml knows only a call-phase <failure> and a setup/teardown <error>, so
a test broken in its body (the lever here) is a <failure>, one broken at setup an <error>.
The plugin adds a `dm_outcome` property (passed / failed / broken) to every testcase.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.report.allure_files import CATEGORIES
from tests.embedded import PLUGIN_ARGS, REPO, plugin_env

from . import schema_check

SCHEMA = REPO / "reports" / "summary.schema.json"
# One worker runs every test here (--dist loadgroup): the module's pipeline (two pytest runs of
# the suite below) is then made once, not once on each xdist worker.
pytestmark = pytest.mark.xdist_group("pipeline")
CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILD_NUMBER", "TF_BUILD")
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.example",
    "GITHUB_REPOSITORY": "lab/dm-harness",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_NUMBER": "17",
    "GITHUB_WORKFLOW": "certify",
}

SUITE = '''
"""Three scenarios: one passes, one fails (the app), one is broken (the infrastructure)."""
import os

import allure
import pytest

pytestmark = allure.epic("Pipeline check")


@pytest.fixture(autouse=True)
def _reveal_secrets(dm_host):
    # The checking test needs this run's secrets to prove none of them reached a report.
    with open(os.environ["DMH_PIPELINE_SECRETS"], "a", encoding="utf-8") as out:
        out.write(dm_host.emulator.password + "\\n" + dm_host.emulator.guest_password + "\\n")


def _reporting(timeline):
    timeline.wait_for(lambda s: s.app is not None and bool(s.app.reported), 30, "app reports")


@pytest.fixture(autouse=True)
def _quick_heartbeat():
    # The plugin's own heartbeat, every 0.5 s instead of 10 s, so a short wait shows one.
    from harness import deadline

    installed = deadline.installed_heartbeat()
    assert installed is not None, "the plugin installs a heartbeat for every dm test"
    previous = deadline.set_heartbeat(deadline.Heartbeat(installed.progress, every=0.5))
    yield
    deadline.set_heartbeat(previous)


@allure.feature("Levers")
@allure.story("Buffer raised")
@allure.severity(allure.severity_level.CRITICAL)
@pytest.mark.dm_memory(startup="1GB", minimum="512MB", maximum="2GB")
@pytest.mark.dm_guest(os="windows")
def test_buffer_raised(guest_app, memory, timeline, dm_expect, dm_vm):
    _reporting(timeline)
    memory.set_bounds(buffer=30)
    begun = timeline.now()
    timeline.wait_for(lambda s: s.t > begun + 1.2, 10, "the clock to pass 1.2 s")
    # A measured value shown as a parameter: different every run, never part of the identity.
    allure.dynamic.parameter("measured", f"{dm_vm.name}: {timeline.samples[-1].t:.3f} s")
    dm_expect.app_survived()


@allure.feature("Hot-add")
@allure.story("Growth beyond reason")
@allure.severity(allure.severity_level.NORMAL)
@pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")
@pytest.mark.dm_guest(os="linux")
def test_growth_beyond_reason(guest_app, memory, timeline, dm_expect):
    _reporting(timeline)
    memory.set_bounds(buffer=40)
    # a thousand times what the raised buffer offered it: no app can (asked of nothing
    # offered, a check is not applicable, so it asks a share of what was offered)
    dm_expect.grows_after(timeline.last_event("memory"), within=2, fraction=1000.0)


@allure.feature("Balloon removal")
@allure.story("Balloon below demand")
@allure.severity(allure.severity_level.MINOR)
@pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")
@pytest.mark.dm_guest(os="linux")
def test_balloon_below_demand(guest_app, memory, timeline, dm_expect):
    _reporting(timeline)
    if os.environ.get("DMH_PIPELINE_FIXED") == "1":
        memory.set_bounds(buffer=10)
        dm_expect.app_survived()
        return
    memory.deadline = 2  # the guest needs more than the minimum: this cannot move
    memory.force_balloon("1GB", strategy="lower-buffer")
'''

NAMES = {
    "test_buffer_raised[windows]": ("passed", "windows"),
    "test_growth_beyond_reason[linux]": ("failed", "linux"),
    "test_balloon_below_demand[linux]": ("broken", "linux"),
}


def labels(result: dict[str, Any], name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


@dataclass(frozen=True)
class Run:
    root: Path
    alluredir: Path
    junit: Path
    out: Path
    output: str
    returncode: int

    def results(self) -> dict[str, dict[str, Any]]:
        """Allure test results by pytest's test name (the result's own name is its title)."""
        found: dict[str, dict[str, Any]] = {}
        for path in self.alluredir.glob("*-result.json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            name = f"{data['fullName'].rsplit('#', 1)[1]}[{labels(data, 'guest_os')[0]}]"
            assert name not in found, f"two results for {name}"
            found[name] = data
        return found

    def containers(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text(encoding="utf-8"))
            for p in self.alluredir.glob("*-container.json")
        ]


@dataclass(frozen=True)
class Pipeline:
    first: Run
    second: Run
    history: Path
    previous_report: Path
    secrets: list[str]


def _run(root: Path, name: str, env: dict[str, str], *args: str) -> Run:
    alluredir, junit, out = root / f"allure-{name}", root / f"junit-{name}.xml", root / name
    command = [
        sys.executable, "-m", "pytest", "test_pipeline_suite.py", *PLUGIN_ARGS, "-l", "--log-level=DEBUG",
        "-o", "junit_logging=all", f"--alluredir={alluredir}", "--clean-alluredir",
        f"--junitxml={junit}", f"--dm-report-dir={out}", f"--dm-history-dir={root / 'history'}",
        *args,
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return Run(root, alluredir, junit, out, proc.stdout + proc.stderr, proc.returncode)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "test_pipeline_suite.py").write_text(SUITE, encoding="utf-8")
    secrets = root / "secrets.txt"
    outside = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    base = plugin_env(outside, DMH_PIPELINE_SECRETS=str(secrets))
    first = _run(root, "first", {**base, **GITHUB})
    # A previous Allure report (as `allure generate` leaves it) whose history must carry over,
    # and a stale file in the results that --clean-alluredir must remove.
    previous = root / "previous-report"
    (previous / "history").mkdir(parents=True)
    (previous / "history" / "history-trend.json").write_text('[{"data": {"passed": 1}}]')
    (root / "allure-second").mkdir()
    (root / "allure-second" / "stale-result.json").write_text("{}")
    second = _run(
        root,
        "second",
        {**base, "DMH_PIPELINE_FIXED": "1"},
        "-n",
        "2",
        f"--dm-allure-history={previous}",
    )
    yield Pipeline(
        first,
        second,
        root / "history",
        previous,
        sorted(set(secrets.read_text(encoding="utf-8").split())),
    )


def test_the_runs_ended_as_expected(pipeline: Pipeline) -> None:
    first, second = pipeline.first, pipeline.second
    assert first.returncode == 1, first.output[-3000:]
    assert "1 passed" in first.output and "2 failed" in first.output, first.output[-3000:]
    assert second.returncode == 1, second.output[-3000:]
    assert "2 passed" in second.output and "1 failed" in second.output, second.output[-3000:]


def test_the_header_shows_the_resolved_settings(pipeline: Pipeline) -> None:
    output = pipeline.first.output
    assert re.search(
        r"^dm-harness \S+: embedded emulator \(plays Hyper-V 2022\), on the embedded "
        r"emulator — not a certification on Hyper-V$",
        output,
        re.M,
    ), output[:2000]
    assert re.search(r"^  guest profiles: both \(default\)$", output, re.M), output[:2000]
    assert re.search(r"^  app: cache_good.py \(reference app\) \(default\)$", output, re.M), output[
        :2000
    ]


@pytest.mark.parametrize("run", ["first", "second"])
def test_one_progress_line_per_test_and_a_heartbeat_while_waiting(
    pipeline: Pipeline, run: str
) -> None:
    """Avocado style, numbered across the run (under -n 2 by the controller), and a
    heartbeat naming what a long wait waits for (from the worker under -n 2)."""
    output = getattr(pipeline, run).output
    found = re.findall(r"^\((\d)/3\) (.+?): (PASS|FAIL|BROKEN) \((\d+\.\d) s\)$", output, re.M)
    assert sorted(n for n, *_ in found) == ["1", "2", "3"], output[-3000:]
    verdicts = {title: verdict for _, title, verdict, _ in found}
    fixed = run == "second"
    assert verdicts == {
        "buffer raised [windows]": "PASS",
        "growth beyond reason [linux]": "FAIL",
        "balloon below demand [linux]": "PASS" if fixed else "BROKEN",
    }
    assert all(float(seconds) > 0.5 for *_, seconds in found)
    assert re.search(
        r"… \d+ s waiting for the clock to pass 1.2 s \(buffer raised \[windows\]\)", output
    ), output[-3000:]


# -- Allure results ------------------------------------------------------------------------


def test_allure_status_per_test(pipeline: Pipeline) -> None:
    first = {name: r["status"] for name, r in pipeline.first.results().items()}
    assert first == {name: status for name, (status, _) in NAMES.items()}
    second = {name: r["status"] for name, r in pipeline.second.results().items()}
    assert second == {**first, "test_balloon_below_demand[linux]": "passed"}
    broken = pipeline.first.results()["test_balloon_below_demand[linux]"]
    assert broken["statusDetails"]["message"].startswith(
        "harness.errors.BalloonBlocked:"  # a LeverError: the guest (not the app) holds it
    )
    failed = pipeline.first.results()["test_growth_beyond_reason[linux]"]
    assert failed["statusDetails"]["message"].startswith("harness.errors.ExpectationFailed:")


@pytest.mark.parametrize("run", ["first", "second"])
def test_allure_labels(pipeline: Pipeline, run: str) -> None:
    results = getattr(pipeline, run).results()
    expected = {
        "test_buffer_raised[windows]": ("Levers", "Buffer raised", "critical"),
        "test_growth_beyond_reason[linux]": ("Hot-add", "Growth beyond reason", "normal"),
        "test_balloon_below_demand[linux]": ("Balloon removal", "Balloon below demand", "minor"),
    }
    for name, (feature, story, severity) in expected.items():
        result = results[name]
        assert labels(result, "epic") == ["Pipeline check"], name
        assert labels(result, "feature") == [feature], name
        assert labels(result, "story") == [story], name
        assert labels(result, "severity") == [severity], name
        assert labels(result, "guest_os") == [NAMES[name][1]], name
        # One host label, the Hyper-V host's: not also the machine allure-pytest runs on.
        assert labels(result, "host") == ["embedded emulator"], name
        assert {NAMES[name][1], "emulator", "Hyper-V 2022"} <= set(labels(result, "tag")), name
    # A readable title: the scenario in words and the guest profile, no Python names.
    assert results["test_buffer_raised[windows]"]["name"] == "Buffer raised [windows]"
    assert results["test_growth_beyond_reason[linux]"]["name"] == "Growth beyond reason [linux]"
    # The behaviour that failed, as a label Allure 3's categories group by.
    assert labels(results["test_growth_beyond_reason[linux]"], "expectation") == ["grow"]
    assert labels(results["test_buffer_raised[windows]"], "expectation") == []


def steps(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from steps(item.get("steps", []))


def params(step: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in step.get("parameters", [])}


def test_allure_steps_for_levers_with_parameters(pipeline: Pipeline) -> None:
    results = pipeline.first.results()
    raised = list(steps(results["test_buffer_raised[windows]"]["steps"]))
    assert [(s["name"], params(s), s["status"]) for s in raised][:1] == [
        ("set memory bounds (buffer=30)", {"buffer": "30"}, "passed")
    ]
    balloon = list(steps(results["test_balloon_below_demand[linux]"]["steps"]))
    outer = balloon[0]
    assert outer["name"].startswith("force balloon (lower-buffer)")
    assert outer["status"] == "broken"
    assert params(outer)["at_least_mb"] == "1024"
    assert int(params(outer)["assigned_mb"]) > 256
    assert [(s["name"], params(s)) for s in balloon[1:]] == [
        ("set memory bounds (buffer=5)", {"buffer": "5"})
    ]


def test_allure_expectations_are_steps(pipeline: Pipeline) -> None:
    results = pipeline.first.results()
    raised = [s for s in steps(results["test_buffer_raised[windows]"]["steps"])]
    checked = [(s["name"], s["status"]) for s in raised if s["name"].startswith("expect: ")]
    assert checked == [("expect: the app survives", "passed")]
    grown = [s for s in steps(results["test_growth_beyond_reason[linux]"]["steps"])]
    failed = [s for s in grown if s["name"].startswith("expect: ")]
    assert [s["status"] for s in failed] == ["failed"]
    assert failed[0]["name"] == "expect: the app grows into added memory"
    assert "MB that became available to it" in params(failed[0])["detail"]


def test_allure_vm_creation_is_a_step_with_the_memory_settings(pipeline: Pipeline) -> None:
    results = pipeline.first.results()
    by_uuid = {r["uuid"]: name for name, r in results.items()}
    created: dict[str, dict[str, str]] = {}
    for container in pipeline.first.containers():
        for before in container.get("befores", []):
            for step in steps(before.get("steps", [])):
                if step["name"].startswith("create VM"):
                    for child in container.get("children", []):
                        created[by_uuid[child]] = params(step)
    assert set(created) == set(NAMES)
    linux = created["test_growth_beyond_reason[linux]"]
    assert {k: linux[k] for k in ("guest_os", "startup", "minimum", "maximum", "buffer")} == {
        "guest_os": "linux",
        "startup": "512MB",
        "minimum": "256MB",
        "maximum": "1GB",
        "buffer": "20%",
    }
    assert created["test_buffer_raised[windows]"]["guest_os"] == "windows"


@pytest.mark.parametrize("run", ["first", "second"])
def test_allure_attachments_are_valid_files(pipeline: Pipeline, run: str) -> None:
    alluredir = getattr(pipeline, run).alluredir
    for name, result in getattr(pipeline, run).results().items():
        attached = {a["name"]: (alluredir / a["source"], a["type"]) for a in result["attachments"]}
        assert {
            "timeline.jsonl",
            "timeline.csv",
            "timeline plot",
            "timeline plot (SVG)",
            "app output",
        } <= set(attached), name
        jsonl, _ = attached["timeline.jsonl"]
        lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
        assert lines[0]["type"] == "timeline"
        assert sum(1 for line in lines if line.get("host")) >= 2, name
        table, mime = attached["timeline.csv"]
        rows = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))))
        assert mime == "text/csv"
        assert rows and {"t", "host.assigned_mb", "app.working_set_mb"} <= set(rows[0]), name
        png, mime = attached["timeline plot"]
        assert mime == "image/png" and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
        svg, mime = attached["timeline plot (SVG)"]
        assert mime == "image/svg+xml"
        assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg", name
        output, mime = attached["app output"]
        assert mime == "text/plain"
        assert '"metric": "total_mb"' in output.read_text(encoding="utf-8"), name


@pytest.mark.parametrize("run", ["first", "second"])
def test_plot_and_timeline_files_have_no_trailing_underscores(pipeline: Pipeline, run: str) -> None:
    files = [
        p
        for p in getattr(pipeline, run).out.rglob("*")
        if p.suffix in (".png", ".svg", ".jsonl", ".csv")
    ]
    assert len(files) >= 6
    assert not [p.name for p in files if p.stem.endswith(("_", "-"))]


def test_vm_name_and_measured_values_are_kept_out_of_the_history_id(pipeline: Pipeline) -> None:
    first, second = pipeline.first.results(), pipeline.second.results()
    measured = [
        [p for p in run["test_buffer_raised[windows]"]["parameters"] if p["name"] == "measured"]
        for run in (first, second)
    ]
    assert measured[0][0]["value"] != measured[1][0]["value"]
    assert measured[0][0].get("excluded") is True
    for name in NAMES:
        vm_first = [p for p in first[name]["parameters"] if p["name"] == "vm"]
        vm_second = [p for p in second[name]["parameters"] if p["name"] == "vm"]
        assert len(vm_first) == len(vm_second) == 1, name
        assert vm_first[0].get("excluded") is True, vm_first
        assert vm_first[0]["value"] != vm_second[0]["value"], "VM names are unique per run"
        profile = [p for p in first[name]["parameters"] if p["name"] == "dm_guest_os"]
        assert profile and not profile[0].get("excluded"), name
        shown = [p for p in first[name]["parameters"] if p["name"] not in ("vm", "dm_guest_os")]
        assert all(p.get("excluded") is True for p in shown), shown
        assert first[name]["historyId"] == second[name]["historyId"], name
        assert first[name]["testCaseId"] == second[name]["testCaseId"], name
    assert len({r["historyId"] for r in first.values()}) == 3


def test_no_secret_reaches_any_output(pipeline: Pipeline) -> None:
    # Host and guest password of each emulator: one in run 1, one per busy worker in run 2.
    assert len(pipeline.secrets) in (4, 6), pipeline.secrets
    assert all(len(s) >= 16 for s in pipeline.secrets)
    files = [
        path
        for run in (pipeline.first, pipeline.second)
        for folder in (run.alluredir, run.out)
        for path in folder.rglob("*")
        if path.is_file()
    ]
    files += [pipeline.first.junit, pipeline.second.junit, *pipeline.history.glob("*")]
    assert len(files) > 40
    for path in files:
        data = path.read_bytes()
        for secret in pipeline.secrets:
            assert secret.encode() not in data, f"a secret is in {path}"
    for run in (pipeline.first, pipeline.second):
        for secret in pipeline.secrets:
            assert secret not in run.output


def properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="ascii").splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_allure_run_files_written_by_the_controller(pipeline: Pipeline) -> None:
    for run in (pipeline.first, pipeline.second):
        env = properties(run.alluredir / "environment.properties")
        # Built from every test's record: under -n 2 no single worker saw both profiles.
        assert env["Host"] == "embedded emulator"
        assert env["Hyper-V"] == "2022 (embedded emulator)"
        assert env["Guest.OS"] == "linux, windows"
        assert env["App"] == "cache_good.py (reference app)"
        categories = json.loads((run.alluredir / "categories.json").read_text(encoding="utf-8"))
        assert categories == json.loads(json.dumps(CATEGORIES))
    executor = json.loads((pipeline.first.alluredir / "executor.json").read_text("utf-8"))
    assert executor["type"] == "github"
    assert executor["buildUrl"] == "https://github.example/lab/dm-harness/actions/runs/4242"
    assert executor["buildOrder"] == 17
    assert not (pipeline.second.alluredir / "executor.json").exists(), "no CI, no executor"


def test_allure_history_carried_over_and_results_cleaned_once(pipeline: Pipeline) -> None:
    results = pipeline.second.alluredir
    assert not (results / "stale-result.json").exists()
    carried = results / "history" / "history-trend.json"
    # Workers must not clean the results again after the controller carried the history.
    assert (
        carried.read_text()
        == (pipeline.previous_report / "history" / "history-trend.json").read_text()
    )


# -- JUnit, summary.json, HTML, trend ------------------------------------------------------


def test_junit_xml(pipeline: Pipeline) -> None:
    root = ET.parse(pipeline.first.junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == set(NAMES)
    for name, (outcome, _) in NAMES.items():
        case = cases[name]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props.get("dm_outcome") == outcome, name
        # Honest about where it ran: the emulator's verdict is no Hyper-V certification.
        assert props.get("dm_ran_on") == (
            "embedded emulator (plays Hyper-V 2022), "
            "on the embedded emulator — not a certification on Hyper-V"
        ), name
        failure = case.find("failure")
        if outcome == "passed":
            assert failure is None and case.find("error") is None, name
        else:
            assert failure is not None, name  # broken in the test body: a <failure>
    assert "BalloonBlocked" in (
        cases["test_balloon_below_demand[linux]"].find("failure").get("message") or ""
    )  # type: ignore[union-attr]


def test_summary_json_valid_against_the_schema(pipeline: Pipeline) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for run in (pipeline.first, pipeline.second):
        summary = json.loads((run.out / "summary.json").read_text(encoding="utf-8"))
        assert schema_check.errors(summary, schema) == []
    summary = json.loads((pipeline.first.out / "summary.json").read_text(encoding="utf-8"))
    totals = summary["totals"]
    assert (totals["tests"], totals["passed"], totals["failed"], totals["broken"]) == (3, 1, 1, 1)
    assert summary["verdict"]["status"] == "not certified"
    reasons = " | ".join(summary["verdict"]["reasons"])
    assert "growth beyond reason on linux: failed" in reasons
    assert "balloon below demand on linux: broken" in reasons
    assert {t["guest_profile"] for t in summary["tests"]} == {"linux", "windows"}
    assert {t["host"] for t in summary["tests"]} == {"embedded emulator"}


def test_html_report_content(pipeline: Pipeline) -> None:
    page = (pipeline.first.out / "index.html").read_text(encoding="utf-8")
    assert re.search(r'class="verdict-status">Not certified<', page)
    matrix = page[
        page.index('<section id="matrix">') : page.index(
            "</section>", page.index('<section id="matrix">')
        )
    ]
    for scenario, _guest, outcome in (
        ("buffer raised", "windows", "passed"),
        ("growth beyond reason", "linux", "failed"),
        ("balloon below demand", "linux", "broken"),
    ):
        row = re.search(rf'<tr><th scope="row">{scenario}</th>(.*?)</tr>', matrix)
        assert row is not None, scenario
        assert f'<td class="cell {outcome}">' in row.group(1), (scenario, row.group(1))
    # The "not run" cells: each scenario ran on one profile only.
    assert matrix.count('class="cell none"') == 3
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "Failure window of “the app grows into added memory”" in page
    window = page[page.index("Failure window of") :]
    assert '<tr class="inside">' in window[: window.index("</table>")]
    assert "BalloonBlocked" in page


def test_trend_over_both_runs(pipeline: Pipeline) -> None:
    history = sorted(pipeline.history.glob("*.json"))
    assert len(history) == 2
    trend = json.loads((pipeline.second.out / "trend.json").read_text(encoding="utf-8"))
    first = json.loads((pipeline.first.out / "summary.json").read_text(encoding="utf-8"))
    second = json.loads((pipeline.second.out / "summary.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in trend["runs"]] == [first["run"]["id"], second["run"]["id"]]
    assert [r["verdict"] for r in trend["runs"]] == ["not certified", "not certified"]
    assert trend["previous_run"] == first["run"]["id"]
    assert [(c["scenario"], c["before"], c["after"]) for c in trend["changes"]] == [
        ("balloon below demand", "broken", "passed")
    ]
    page = (pipeline.second.out / "index.html").read_text(encoding="utf-8")
    assert f"Changed since run {first['run']['id']}" in page
    assert '<span class="chip broken">broken</span>' in page[page.index('id="trend"') :]
