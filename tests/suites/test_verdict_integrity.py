"""`dmh certify` gives the verdict of the run it made, and only that run: every reproduction
of issue 10, with real `dmh` and pytest processes on the embedded emulator.

A tiny suite in a scratch checkout stands in for the certification suites (three tests on
one guest profile, a few seconds a run). Every run carries a unique `DMH_TEST_TAG` in its
environment, so a scan of the process table finds whatever a run left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.suites.support import read_notes, tagged

REPO = Path(__file__).resolve().parents[2]
SECRET = "Hunter2-in-the-url"
TIMEOUT = 180

SUITE = '''
"""Three quick dm tests; the last one waits (when told to) until released or interrupted."""
import json
import os
import signal
import time


def note(kind, **fields):
    with open(os.environ["DMH_VERDICT_NOTES"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\\n")


def test_a(dm_host, dm_guest_os):
    note("ran", test="a")


def test_b(dm_host, dm_guest_os):
    note("ran", test="b")


def test_c_waits(dm_host, dm_guest_os):
    if os.environ.get("DMH_VERDICT_STUBBORN"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a test that will not stop on Ctrl-C
    if os.environ.get("DMH_VERDICT_WAIT"):
        note("waiting", test="c")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not os.path.exists(os.environ["DMH_VERDICT_GO"]):
            time.sleep(0.05)
    note("ran", test="c")
'''


@dataclass
class Checkout:
    """A scratch checkout (conftest.py + suites/) where `dmh certify` runs the tiny suite."""

    path: Path
    tag: str

    @property
    def out(self) -> Path:
        return self.path / "out"

    @property
    def notes_path(self) -> Path:
        return self.path / "notes.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            DMH_TEST_TAG=self.tag,
            DMH_VERDICT_NOTES=str(self.notes_path),
            DMH_VERDICT_GO=str(self.path / "go"),
            **extra,
        )
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "harness.cli", "certify", f"--out={self.out}", *args]

    def dmh(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.command(*args), **env)

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.path,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def notes(self, kind: str) -> list[dict[str, Any]]:
        return read_notes(self.notes_path, kind)

    def published(self) -> dict[str, Any]:
        return dict(json.loads((self.out / "summary.json").read_text(encoding="utf-8")))

    def tagged(self) -> list[psutil.Process]:
        return tagged(self.tag)


def wait_for(done: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def run_id(output: str) -> str:
    """The run id dmh announces on its first line: 'run <id>: <directory>'."""
    first = output.splitlines()[0]
    assert first.startswith("run "), output[:500]
    return first.split()[1].rstrip(":")


def verdict_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("VERDICT: ")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Checkout]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["harness.fixtures.plugin"]\n')
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_tiny.py").write_text(SUITE)
    made = Checkout(tmp_path, uuid.uuid4().hex)
    yield made
    for proc in made.tagged():  # never leave a failed check's processes to the next test
        proc.kill()


LINUX = ("--", "--dm-guest-os=linux")
CHATTY_TEST = """
import time


def test_chatty_app(guest_app, dm_guest_os):
    # The app prints far more than a report attaches; wait until all of it has arrived.
    deadline = time.monotonic() + 60
    while "the last line" not in guest_app.output and time.monotonic() < deadline:
        guest_app.process.poll()
        time.sleep(0.05)
    assert "the last line" in guest_app.output
"""
CHATTY_APP = """
import sys, time
for i in range(35_000):
    sys.stdout.write(f"{i:07d} " + "x" * 92 + "\\n")  # 100 bytes a line: 3.5 MB
sys.stdout.write("the last line\\n")
sys.stdout.flush()
time.sleep(120)
"""


# -- stale outputs are never this run's --------------------------------------------------------


def test_stale_summary_and_an_empty_selection(checkout: Checkout) -> None:
    good = checkout.dmh("-n", "0", *LINUX)
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert verdict_line(good.stdout) == "VERDICT: CERTIFIED"
    assert checkout.published()["run"]["id"] == run_id(good.stdout)
    # The latest run's reports, rebuilt from its records and evidence: the same verdict.
    rebuilt = checkout.run(
        [sys.executable, "-m", "harness.cli", "report", f"--out={checkout.out}", "--no-screenshot"]
    )
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert verdict_line(rebuilt.stdout) == "VERDICT: CERTIFIED"
    assert checkout.published()["run"]["id"] == run_id(good.stdout)

    nothing = checkout.dmh("-n", "0", *LINUX, "-k", "nomatch")
    assert nothing.returncode == 2, nothing.stdout[-3000:]  # inconclusive, never 0
    assert verdict_line(nothing.stdout) == "VERDICT: INCONCLUSIVE (partial: 0 of 3 scenarios)"
    assert "no tests were selected: 0 of 3 scenarios (pytest exit 5" in nothing.stdout
    assert "Tests: 0 " in nothing.stdout
    summary = checkout.published()  # replaced: this run's, not the certified one
    assert summary["run"]["id"] == run_id(nothing.stdout) != run_id(good.stdout)
    assert summary["verdict"]["status"] == "inconclusive"
    assert summary["run"]["selection"] == {"selected": 0, "available": 3, "partial": True}

    bogus = checkout.dmh("-n", "0", "--", "--dm-guest-os", "bogus")
    assert bogus.returncode == 4, bogus.stdout[-3000:] + bogus.stderr[-3000:]
    assert "VERDICT" not in bogus.stdout
    summary = checkout.published()
    assert summary["run"]["id"] == run_id(bogus.stdout)
    assert summary["verdict"]["reasons"][0].startswith("the run did not start: usage error")


def test_a_partial_selection_is_never_a_certification(checkout: Checkout) -> None:
    done = checkout.dmh("-n", "0", *LINUX, "-k", "test_a or test_b")
    assert done.returncode == 2, done.stdout[-3000:]
    assert verdict_line(done.stdout) == "VERDICT: INCONCLUSIVE (partial: 2 of 3 scenarios)"
    assert "all 2 tests that ran passed, but a subset is not a certification" in done.stdout
    page = (checkout.out / "index.html").read_text(encoding="utf-8")
    assert "Inconclusive (partial: 2 of 3 scenarios)" in page


# -- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--", "--dm-guest-os", "bogus"), "--dm-guest-os: 'bogus' is not one of"),
        (("--", "--dm-sample-interval=0"), "--dm-sample-interval: '0' must be"),
        (("--", "--dm-sample-interval=nan"), "--dm-sample-interval: 'nan' must be"),
        (("--", "--dm-keep=sometimes"), "--dm-keep: 'sometimes' is not one of"),
        (("--dm-host", "http://hv.lab"), "host URL must start with psrp://"),
        (("--dm-host", "psrp://qa@hv.lab"), "no password for qa@hv.lab"),
        (("--grace", "0"), "argument --grace: '0' must be"),
        (("-n", "many"), "argument -n/--workers: 'many' must be"),
        (("--", "--dm-report-dir", "x"), "--dm-report-dir after '--' is set by dmh certify"),
        (("--", "--junitxml=x.xml"), "--junitxml after '--' is set by dmh certify"),
    ],
    ids=[
        "guest-os",
        "interval-0",
        "interval-nan",
        "keep",
        "scheme",
        "no-password",
        "grace",
        "n",
        "report-dir",
        "junitxml",
    ],
)
def test_bad_options_are_one_line_and_the_usage_exit_code(
    checkout: Checkout, args: tuple[str, ...], message: str
) -> None:
    done = checkout.dmh(*args)
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert any(message in line for line in errors), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "VERDICT" not in done.stdout
    assert not checkout.notes("ran"), "a test ran despite the bad option"


def test_a_suite_that_does_not_import_is_inconclusive(checkout: Checkout) -> None:
    (checkout.path / "suites" / "test_broken.py").write_text("import no_such_module\n")
    done = checkout.dmh("-n", "0", *LINUX)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert verdict_line(done.stdout) == "VERDICT: INCONCLUSIVE"
    assert "interrupted after 0 of 3 tests (errors during collection)" in done.stdout


# -- a verdict only from the whole run ----------------------------------------------------------


def test_a_worker_killed_mid_run_is_inconclusive(checkout: Checkout) -> None:
    proc = checkout.start("-n", "2", *LINUX, DMH_VERDICT_WAIT="1")
    try:
        wait_for(lambda: bool(checkout.notes("waiting")), 120, "test_c_waits to start")
        [waiting] = checkout.notes("waiting")
        os.kill(waiting["pid"], signal.SIGKILL)  # that xdist worker, mid-test
        output, errors = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, output[-3000:] + errors[-3000:]
    assert verdict_line(output) == "VERDICT: INCONCLUSIVE"
    assert "1 of 3 tests have no record" in output and "test_c_waits[linux]" in output
    assert checkout.published()["verdict"]["status"] == "inconclusive"


@pytest.mark.parametrize(
    ("sig", "args"),
    [(signal.SIGINT, ("-n", "0")), (signal.SIGTERM, ("-n", "0")), (signal.SIGINT, ("-n", "2"))],
    ids=["sigint", "sigterm", "sigint-n2"],
)
def test_an_interrupted_run_says_so_and_tears_down(
    checkout: Checkout, sig: signal.Signals, args: tuple[str, ...]
) -> None:
    proc = checkout.start(*args, *LINUX, DMH_VERDICT_WAIT="1")
    try:
        # -n 2: the other worker may still be on its first test; wait for both to be done.
        wait_for(
            lambda: bool(checkout.notes("waiting")) and len(checkout.notes("ran")) >= 2,
            120,
            "test_c_waits to start after the others",
        )
        proc.send_signal(sig)
        output, errors = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, output[-3000:] + errors[-3000:]
    assert f"dmh: {sig.name}: pytest is tearing down" in errors
    assert "Traceback" not in output + errors
    assert verdict_line(output) == "VERDICT: INCONCLUSIVE"
    assert "interrupted after 2 of 3 tests" in output
    summary = checkout.published()
    assert summary["run"]["interrupted"] is True
    how = "Ctrl-C" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert summary["verdict"]["reasons"][0] == f"interrupted after 2 of 3 tests ({how})"
    wait_for(lambda: not checkout.tagged(), 15, "every process of the run to end")


def test_pytest_that_does_not_stop_is_killed_after_the_grace_period(checkout: Checkout) -> None:
    proc = checkout.start(
        "-n", "0", "--grace", "2", *LINUX, DMH_VERDICT_WAIT="1", DMH_VERDICT_STUBBORN="1"
    )
    try:
        wait_for(lambda: bool(checkout.notes("waiting")), 120, "test_c_waits to start")
        proc.send_signal(signal.SIGINT)
        output, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, output[-3000:] + errors[-3000:]
    assert "pytest did not finish within 2 s and was killed" in errors
    assert "Traceback" not in output + errors
    summary = checkout.published()
    assert summary["run"]["pytest_exit"] == -signal.SIGKILL
    assert summary["verdict"]["reasons"][0] == (
        "interrupted after 2 of 3 tests (SIGINT; pytest killed)"
    )
    wait_for(lambda: not checkout.tagged(), 15, "every process of the run to end")


def test_killing_dmh_alone_does_not_leave_pytest_running(checkout: Checkout) -> None:
    proc = checkout.start("-n", "0", *LINUX, DMH_VERDICT_WAIT="1")
    try:
        wait_for(lambda: bool(checkout.notes("waiting")), 120, "test_c_waits to start")
        [waiting] = checkout.notes("waiting")
        assert psutil.pid_exists(waiting["pid"])
        proc.kill()  # dmh alone, SIGKILL: it cannot pass anything on
        proc.communicate(timeout=30)
        # pytest learns of it from the kernel (SIGTERM), tears down and writes its reports.
        wait_for(lambda: not checkout.tagged(), 60, "pytest to end after dmh died")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [run] = list((checkout.out / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"]["status"] == "inconclusive"
    assert summary["run"]["interrupted"] is True
    assert summary["verdict"]["reasons"][0] == "interrupted after 2 of 3 tests (stopped by SIGTERM)"


def test_two_concurrent_runs_each_report_their_own_tests(checkout: Checkout) -> None:
    one = checkout.start("-n", "0", *LINUX, "-k", "test_a")
    every = checkout.start("-n", "0", *LINUX)
    outputs = [p.communicate(timeout=TIMEOUT) for p in (one, every)]
    (one_out, one_err), (every_out, every_err) = outputs
    assert every.returncode == 0, every_out[-3000:] + every_err[-3000:]
    assert one.returncode == 2, one_out[-3000:] + one_err[-3000:]
    assert "Tests: 1 " in one_out and "Tests: 3 " in every_out
    assert verdict_line(one_out) == "VERDICT: INCONCLUSIVE (partial: 1 of 3 scenarios)"
    assert verdict_line(every_out) == "VERDICT: CERTIFIED"
    for output, tests in ((one_out, 1), (every_out, 3)):
        run = checkout.out / "runs" / run_id(output)
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        assert summary["totals"]["tests"] == tests
    # Whichever finished last is published; whole, never a mixture of the two.
    latest = checkout.published()
    assert latest["run"]["id"] in {run_id(one_out), run_id(every_out)}
    assert (checkout.out / "latest").resolve().name == latest["run"]["id"]


# -- secrets and sizes -----------------------------------------------------------------------------


def test_app_output_attached_to_reports_is_capped_and_says_so(checkout: Checkout) -> None:
    (checkout.path / "suites" / "test_chatty.py").write_text(CHATTY_TEST)
    app = checkout.path / "chatty.py"
    app.write_text(CHATTY_APP)
    # The Windows profile: its PowerShell Direct channel carries the whole output (the Linux
    # profile's SSH channel fails a sample above 2 MB of new output, a separate defect).
    done = checkout.dmh("-n", "0", f"--app={app}", "--", "--dm-guest-os=windows", "-k", "chatty")
    assert "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    results = checkout.out / "runs" / run_id(done.stdout) / "allure-results"
    attachments = [
        a
        for result in results.glob("*-result.json")
        for a in json.loads(result.read_text(encoding="utf-8")).get("attachments", [])
        if a["name"] == "app output"
    ]
    assert len(attachments) == 1
    text = (results / attachments[0]["source"]).read_text(encoding="utf-8")
    first, rest = text.split("\n", 1)
    assert first.startswith("[output cut: the first ") and "bytes are not shown" in first
    assert len(rest.encode()) <= 2 * 1024 * 1024
    assert rest.endswith("the last line\n")


def files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_text(encoding="utf-8", errors="replace"):
                    found.append(path)
            except OSError:
                continue
    return found


@pytest.mark.parametrize("where", ["dmh", "dmh-pytest-args", "pytest", "pytest-env"])
def test_a_password_in_the_host_url_never_appears_anywhere(checkout: Checkout, where: str) -> None:
    url = f"psrp://qa:{SECRET}@127.0.0.1:5985?auth=basic&ssl=false"
    env = {"DMH_HOST_PASSWORD": "from-the-environment"}
    if where == "dmh":
        done = checkout.dmh("--dm-host", url, **env)
    elif where == "dmh-pytest-args":
        done = checkout.dmh("--", f"--dm-host={url}", **env)
    else:
        args = [f"--dm-host={url}"] if where == "pytest" else []
        if where == "pytest-env":
            env["DMH_HOST"] = url
        command = [
            sys.executable, "-m", "pytest", "suites", "-p", "no:cacheprovider",
            "--dm-guest-os=linux", f"--dm-report-dir={checkout.out}",
            f"--junitxml={checkout.path / 'junit.xml'}", f"--alluredir={checkout.path / 'allure'}",
        ]  # fmt: skip
        done = checkout.run([*command, *args], **env)
    assert done.returncode == 4, done.stdout[-3000:] + done.stderr[-3000:]
    assert "must not contain a password" in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert files_containing(checkout.path, SECRET) == []
    assert not checkout.notes("ran")
