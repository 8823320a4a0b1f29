"""Meta-tests: the certification suites catch what they claim to catch, and only that.

Each reference app is run through the scenarios that should expose it (in a real pytest
subprocess, on the embedded emulator) and the result records must show the right scenarios
failing for the right reason, named in the first line; the good and the quiet app must pass
every scenario; an app the user wrote runs as the README says, from its own directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.report.model import TestRecord, load_records
from tests.embedded import REPO, plugin_env, use_plugin_env

SUITE = REPO / "suites" / "test_certification.py"
TRACK = "the app's total_mb tracks the guest"
RELEASE = "the app releases memory"
SURVIVE = "the app survives"
CERTIFIED_RUN = "DMH_CERTIFIED_RUN"

pytest_plugins = ["pytester"]


def run_suite(pytester: pytest.Pytester, app: str, *args: str) -> dict[str, TestRecord]:
    out = pytester.path / "out"
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(
            str(SUITE), f"--rootdir={REPO}", "-p", "no:cacheprovider", f"--dm-app={app}",
            f"--dm-report-dir={out}", *args, timeout=600,
        )  # fmt: skip
    records = {r.nodeid.split("::")[-1]: r for r in load_records(out / "records")}
    assert records, result.stdout.str()[-3000:]
    return records


def verdict(pytester: pytest.Pytester) -> str:
    summary = json.loads((pytester.path / "out" / "summary.json").read_text())
    return str(summary["verdict"]["status"])


def failed_expectations(record: TestRecord) -> list[str]:
    return [e.name for e in record.failed_expectations]


def assert_ended_at_the_exit(record: TestRecord) -> None:
    """The test ended through the app's exit guard, at the first sample that saw the app
    gone (its result spans that one sample), not by waiting out a deadline and judging the
    app afterwards (that check's window spans the seconds before the exit). How soon after
    the exit is a duration: benchmarks' to measure, not this test's to bound."""
    [survive] = [e for e in record.expectations if e.behaviour == "survive"]
    assert not survive.passed
    assert survive.window_start is not None
    assert survive.window_start == survive.window_end, survive
    assert "waited" not in record.message  # no deadline ran out first


def test_good_app_passes_every_scenario(pytester: pytest.Pytester) -> None:
    """Where CERTIFIED_RUN names the run directory of a `dmh certify` of this checkout with
    its defaults (`.ci/run` makes one just before the tests), that run is judged instead of
    certifying the same app on the same 12 scenarios a second time."""
    made = os.environ.get(CERTIFIED_RUN)
    if made:
        records = {r.nodeid.split("::")[-1]: r for r in load_records(Path(made) / "records")}
        summary = json.loads((Path(made) / "summary.json").read_text())
        assert str(summary["verdict"]["status"]) == "certified"
    else:
        records = run_suite(pytester, "cache_good.py", "-n", "2")
        assert verdict(pytester) == "certified"
    assert len(records) == 12  # six scenarios × two guest profiles
    assert {r.app.split(" ")[0] for r in records.values()} == {"cache_good.py"}
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad
    # Its own view was checked wherever the scenario asks for it, and it was observed.
    hot_add = records["test_hot_add_during_steady_load[linux]"]
    assert hot_add.behaviours_checked == ("survive", "track", "grow", "bounded")
    track = next(e for e in hot_add.expectations if e.name == TRACK)
    assert track.passed and "reports followed the guest" in track.detail


def test_quiet_app_is_certified_on_what_it_does(pytester: pytest.Pytester) -> None:
    """No metric lines: certified on survive/grow/release/bounded; "track" is shown as not
    applicable, never as passed."""
    records = run_suite(pytester, "cache_quiet.py", "-n", "2")
    assert len(records) == 12  # six scenarios × two guest profiles
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad
    assert verdict(pytester) == "certified"
    for name, record in records.items():
        track = [e for e in record.expectations if e.behaviour == "track"]
        assert all(not e.applicable and not e.passed for e in track), name
        assert all(e.detail == "not applicable (the app reports no total_mb)" for e in track)
        assert "track" not in record.behaviours_checked, name
    # Every scenario that tracks (all but the pressure one, which only asks for a release)
    # shows its track check as not applicable: none vanished (all() of nothing is True).
    shown = {n for n, r in records.items() if any(e.behaviour == "track" for e in r.expectations)}
    assert shown == {n for n in records if not n.startswith("test_pressure_response")}
    balloon = records["test_balloon_removal_during_load[windows]"]
    assert balloon.behaviours_checked == ("survive", "release", "bounded")


def test_declared_behaviours_are_the_only_ones_checked(pytester: pytest.Pytester) -> None:
    """A monitoring-style declaration (survive,track): growth and release are not asked for,
    so the hog, which never releases, passes the pressure scenario on what was asked."""
    records = run_suite(
        pytester, "cache_hog.py", "--dm-guest-os=linux", "-k", "pressure",
        "--dm-expect=survive,track",
    )  # fmt: skip
    record = records["test_pressure_response[linux]"]
    assert record.outcome == "passed", record.message
    assert record.behaviours_not_asked == ("grow", "release", "bounded", "limits")
    assert {e.behaviour for e in record.expectations} == {"survive"}


def test_crashing_app_fails_at_once_with_its_exit_code(pytester: pytest.Pytester) -> None:
    records = run_suite(pytester, "crash_after_3s.py", "--dm-guest-os=linux", "-k", "hot_add")
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "failed"
    first = record.message.splitlines()[0]
    assert first.startswith("the app did not survive: it exited with code 1"), first
    assert "RuntimeError: simulated crash 3 s after start" in first
    assert SURVIVE in failed_expectations(record)
    assert_ended_at_the_exit(record)  # not a 45 s wait per test
    assert verdict(pytester) == "not certified"


def test_apps_on_a_fixed_port_run_side_by_side(pytester: pytest.Pytester) -> None:
    """Each guest has its own network: two workers' guests both bind port 8080."""
    records = run_suite(pytester, "fixed_port.py --port 8080", "-n", "2", "-k", "hot_add or pressure")  # fmt: skip
    assert len(records) == 4
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad


def test_slow_app_fails_tracking_after_the_boot_hot_add(pytester: pytest.Pytester) -> None:
    """It re-reads memory every 8 s: the balancer's hot-add right after boot is a memory
    change it must follow within 5 s, and it does not."""
    records = run_suite(pytester, "cache_slow.py", "-n", "2", "-k", "start_below")
    for name in ("test_start_below_demand[linux]", "test_start_below_demand[windows]"):
        record = records[name]
        assert record.outcome == "failed", name
        assert record.message.startswith("the app's total_mb does not track the guest: "), name
        assert failed_expectations(record) == [TRACK], name


def test_stale_app_fails_because_its_view_does_not_track_the_guest(
    pytester: pytest.Pytester,
) -> None:
    records = run_suite(pytester, "cache_stale.py", "-n", "2", "-k", "hot_add or start_below")
    for name in (
        "test_hot_add_during_steady_load[linux]",
        "test_hot_add_during_steady_load[windows]",
        "test_start_below_demand[linux]",
        "test_start_below_demand[windows]",
    ):
        record = records[name]
        assert record.outcome == "failed", name
        assert TRACK in failed_expectations(record), name
        assert SURVIVE not in failed_expectations(record), name
        # Named in the first line (with its growth, which follows its stale view, on hot-add).
        assert "the app's total_mb does not track the guest" in record.message.splitlines()[0]


def test_hog_fails_only_where_memory_must_be_given_back(pytester: pytest.Pytester) -> None:
    """Through `dmh certify`, as a CI runs it: the app failed, so the run is NOT CERTIFIED
    and exits 1, even though it ran a selection (README, exit codes)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dmh")), "certify", "--app", "cache_hog.py",
         "-n", "2", "--", "--dm-guest-os=linux", "-k", "pressure or balloon or hot_add"],
        cwd=pytester.path, env=plugin_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "VERDICT: NOT CERTIFIED" in done.stdout, done.stdout[-3000:]
    run = done.stdout.split(":", 1)[0].removeprefix("run ").strip()
    found = load_records(pytester.path / "reports" / "out" / "runs" / run / "records")
    records = {r.nodeid.split("::")[-1]: r for r in found}
    for name in ("test_pressure_response[linux]", "test_balloon_removal_during_load[linux]"):
        record = records[name]
        assert record.outcome == "failed", (name, record.message)
        assert RELEASE in failed_expectations(record), name
        assert record.message.startswith("the app did not release memory"), name
    # It grows into added memory and survives: hot-add alone is not its problem.
    assert records["test_hot_add_during_steady_load[linux]"].outcome == "passed"


def test_fragile_app_fails_because_it_crashes_on_hot_add(pytester: pytest.Pytester) -> None:
    records = run_suite(pytester, "cache_fragile.py", "--dm-guest-os=linux", "-k", "hot_add")
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "failed"
    assert SURVIVE in failed_expectations(record)
    assert "exited with code 3" in record.message.splitlines()[0]
    assert "FATAL: total memory changed" in record.message.splitlines()[0]


MY_SERVICE = '''
    """A user's service, written outside the harness: serves --port, sizes a cache from
    /proc/meminfo, reports its total as JSON lines; its cache lives in a module beside it."""
    import argparse, json, socket, time
    from mycache import Cache, meminfo

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    cache = Cache()
    while True:
        total, available = meminfo()
        cache.resize(min(total // 4, cache.mb + available - total // 10))
        print(json.dumps({"metric": "total_mb", "value": total}), flush=True)
        time.sleep(0.2)
'''
MY_CACHE = """
    def meminfo():
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0])
        return fields["MemTotal"] // 1024, fields["MemAvailable"] // 1024

    class Cache:
        def __init__(self):
            self.chunks = []

        @property
        def mb(self):
            return len(self.chunks) * 8

        def resize(self, target):
            for _ in range(8):  # grow at most 64 MB a tick, as a real cache fills
                if self.mb >= target:
                    break
                chunk = bytearray(8 << 20)
                for i in range(0, len(chunk), 4096):
                    chunk[i] = 1
                self.chunks.append(chunk)
            while self.mb > max(0, target):
                self.chunks.pop()
"""


def test_readme_example_runs_from_the_users_directory(pytester: pytest.Pytester) -> None:
    """`dmh certify --app "python3 my_service.py --port 8080"` as the README writes it, from a
    directory outside the checkout: the script and the module beside it are copied into the
    guest, and it passes (the one selected scenario)."""
    assert not pytester.path.is_relative_to(REPO)
    (pytester.path / "my_service.py").write_text(textwrap.dedent(MY_SERVICE))
    (pytester.path / "mycache.py").write_text(textwrap.dedent(MY_CACHE))
    dmh = Path(sys.executable).with_name("dmh")
    done = subprocess.run(
        [str(dmh), "certify", "--app", "python3 my_service.py --port 8080", "-n", "0",
         "--", "--dm-guest-os=linux", "-k", "hot_add"],
        cwd=pytester.path, env=plugin_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    # One scenario selected with -k: the app passes it, and the run says it is partial
    # (inconclusive, exit 2), never a full certification.
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-2000:]
    assert "VERDICT: INCONCLUSIVE (partial: 1 of 6 scenarios)" in done.stdout
    run = done.stdout.split(":", 1)[0].removeprefix("run ").strip()
    [record] = load_records(pytester.path / "reports" / "out" / "runs" / run / "records")
    assert record.outcome == "passed", record.message
    assert record.app == "python3 my_service.py --port 8080"
    assert "track" in record.behaviours_checked


def test_an_app_that_is_not_there_fails_naming_it(pytester: pytest.Pytester) -> None:
    records = run_suite(pytester, "python3 missing.py", "--dm-guest-os=linux", "-k", "hot_add")
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "failed"
    first = record.message.splitlines()[0]
    assert first.startswith("the app did not survive: it exited with code 2"), first
    assert "missing.py" in first and "No such file" in first
    assert_ended_at_the_exit(record)
