"""Programs as they ship (issue 25): the README's app-view example certifies a program the
harness does not know, run verbatim from a user's directory; `dmh catalog run` certifies the
catalogue's programs from their Debian packages and writes the table, each verdict the same
as last time (a verdict that flips between runs is a defect)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.catalog import installed_version, load_catalog
from harness.expect import BEHAVIOURS
from harness.report.model import load_records
from tests.embedded import REPO, plugin_env
from tests.requires import needs, skip_without
from tests.suites.test_meta import run_suite

DMH = str(Path(sys.executable).parent / "dmh")

pytest_plugins = ["pytester"]


def readme_view_example() -> tuple[str, str]:
    """The command under `<!-- readme-app-view: VERDICT -->` and the verdict it claims."""
    text = (REPO / "README.md").read_text("utf-8")
    found = re.search(r"<!-- readme-app-view: ([A-Z ]+) -->\n```sh\n(.*?)\n```", text, re.S)
    assert found, "the README has no app-view example"
    return found[2].replace("\\\n", " "), found[1]


@needs("node", "curl", missing=None if shutil.which("node") and shutil.which("curl") else "PATH")
def test_the_readme_view_example_certifies_a_program_outside_the_catalogue(
    tmp_path: Path,
) -> None:
    command, claim = readme_view_example()
    argv = shlex.split(command)
    argv[0] = DMH
    argv[2:2] = ["--out", str(tmp_path / "out")]  # after `certify`: not the checkout's reports
    done = subprocess.run(
        argv, cwd=tmp_path, env=plugin_env(), capture_output=True, text=True, timeout=900
    )
    assert f"VERDICT: {claim}\n" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    records = load_records(tmp_path / "out" / "latest" / "records")
    track = [e for r in records for e in r.expectations if e.behaviour == "track"]
    # The view's reports were judged wherever tracking is checked (pressure response does
    # not check it): passed every time, never "not applicable".
    assert len(track) >= 5 and all(e.passed for e in track), [e.detail for e in track]
    # Its load served in every test, before the first lever.
    timelines = sorted((tmp_path / "out" / "latest" / "timelines").glob("*.jsonl"))
    assert len(timelines) == len(records)
    for timeline in timelines:
        assert '"app load served: a run succeeded"' in timeline.read_text("utf-8"), timeline


def test_a_view_that_gives_nothing_is_never_taken_for_tracking(pytester: pytest.Pytester) -> None:
    """The quiet reference app prints no metric lines; its view prints text no pattern reads.
    Tracking fails "not observed", naming the view and its last output, where without a view
    it would be "not applicable"."""
    records = run_suite(
        pytester, "cache_quiet.py", "--dm-guest-os=linux", "-k", "hot_add",
        "--dm-app-view=echo ready", "--dm-app-view-pattern=^total (?P<mb>\\d+)$",
    )  # fmt: skip
    record = records["test_hot_add_during_steady_load[linux]"]
    [track] = [e for e in record.expectations if e.behaviour == "track"]
    assert not track.passed and track.applicable
    assert "not observed (the app view `echo ready` ran" in track.detail, track.detail
    assert "gave nothing it reads; last: ready (exit 0))" in track.detail, track.detail


TOOLS = ("redis", "memcached", "jcmd", "postgres", "node", "curl")  # the catalogue's programs
EXPECTED = {
    # Redis reads total_system_memory once, in initServer() (server.c): it stays at the
    # memory the guest booted with.
    "redis": (
        "NOT CERTIFIED",
        {"survive": "pass", "track": "FAIL", "bounded": "pass", "limits": "pass"},
    ),
    "memcached": ("CERTIFIED", {"survive": "pass", "bounded": "pass", "limits": "pass"}),
    # os.totalmem() is sysinfo() at each call (libuv uv_get_total_memory).
    "node-service": ("CERTIFIED", {"survive": "pass", "track": "pass", "bounded": "pass"}),
    "postgres": ("CERTIFIED", {"survive": "pass", "bounded": "pass", "limits": "pass"}),
    # HotSpot keeps the physical memory it read at start (os::Linux::physical_memory()).
    "jvm-default": ("NOT CERTIFIED", {"survive": "pass", "track": "FAIL", "bounded": "pass"}),
    "jvm-maxrampercentage": (
        "NOT CERTIFIED",
        {"survive": "pass", "track": "FAIL", "bounded": "pass"},
    ),
}


PROCESS_ENTRIES = {
    e.name: e for e in load_catalog(REPO / "suites" / "catalog") if e.backend == "process"
}


def test_every_process_entry_has_its_expected_verdict_here() -> None:
    assert set(PROCESS_ENTRIES) == set(EXPECTED)


# CI's share of the catalogue: the two scenarios that move memory both ways, where every
# behaviour the catalogue asks shows (`dmh catalog run` by hand runs all six for the table).
SCENARIOS = "hot_add or balloon"


# One test per program, so the workers share them out.
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_catalogue_certifies_each_program_under_its_load(tmp_path: Path, name: str) -> None:
    entry = PROCESS_ENTRIES[name]
    if installed_version(entry.package) is None:
        skip_without(*TOOLS, why=f"apt-get install {entry.package} (.ci/run does)")
    table = tmp_path / "catalog.md"
    done = subprocess.run(
        [DMH, "catalog", "run", name, "--out", str(tmp_path / "runs"), "--table", str(table),
         "-k", SCENARIOS],
        cwd=REPO, env=plugin_env(), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rows = {
        cells[0]: cells
        for line in table.read_text("utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("| program")
        for cells in [[c.strip() for c in line.strip("|").split(" | ")]]
    }
    header = ["program", "version", "backend", "verdict", *BEHAVIOURS]
    verdict, behaviours = EXPECTED[name]
    # Two scenarios are a check, never a certification: a program that passes them is
    # INCONCLUSIVE, saying why.
    partial = verdict == "CERTIFIED"
    if partial:
        verdict = "INCONCLUSIVE"
    assert list(rows) == [entry.title]
    cells = dict(zip(header, rows[entry.title], strict=False))
    assert cells["version"] == installed_version(entry.package)
    assert cells["verdict"] == verdict, rows[entry.title]
    assert {b: cells[b] for b in behaviours} == behaviours, rows[entry.title]
    if verdict == "NOT CERTIFIED":
        assert "the app's total_mb does not track the guest" in rows[entry.title][-2]
    if partial:
        assert rows[entry.title][-2].startswith("partial: 2 of 6 scenarios"), rows[entry.title]
    assert "(2 tests, " in rows[entry.title][-1]
    # Judged under its load: it served in every test, before the first lever, and its runs
    # are the survive check's evidence.
    run = tmp_path / "runs" / name / "latest"
    timelines = sorted((run / "timelines").glob("*.jsonl"))
    assert len(timelines) == 2
    for timeline in timelines:
        assert '"app load served: a run succeeded"' in timeline.read_text("utf-8"), timeline
    survived = [e for r in load_records(run / "records") for e in r.expectations]
    survived = [e for e in survived if e.behaviour == "survive"]
    assert survived and all(f"the app load `{entry.load}` ran " in e.detail for e in survived)
