"""The plugin's lifecycle in real pytest subprocesses on the embedded emulator: bad markers
break only their test, nothing (VM, guest process, emulator) outlives a run, whether tests
pass, fail, keep their VMs or are interrupted, and options resolve command line > environment > ini.

Every run gets a unique `DMH_TEST_TAG` in its environment, passed on to guest processes (named
in DMH_GUEST_PASS_ENV: their environment is otherwise clean), so a
scan of every process's environment finds whatever a run left behind. The suite notes each
guest process, the VMs still on its host and its emulator's process into a JSON-lines file,
so the checks know what existed and can fail.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.deadline import wait_until
from harness.errors import DeadlineError
from harness.report.model import load_records
from tests.embedded import PLUGIN_ARGS, plugin_env, use_plugin_env
from tests.suites.support import read_notes, tagged

pytest_plugins = ["pytester"]

SUITE = '''
"""Tiny lifecycle scenarios: pass (with a load process), fail, hang, list leftover VMs."""
import json
import os

import psutil
import pytest

from harness.deadline import wait_until
from harness.errors import DeadlineError

MEMORY = pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")


def note(kind, **fields):
    with open(os.environ["DMH_LIFECYCLE_NOTES"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"kind": kind, "process": os.getpid(), **fields}) + "\\n")


def host_pid(pid):
    # A Linux guest is reached over SSH and its processes live in its own PID namespace: the
    # pid it reports is the last of NSpid in /proc/PID/status of one of this worker's own
    # descendants (its emulator's guests; another worker's guest may reuse the number).
    for proc in psutil.Process().children(recursive=True):
        try:
            with open(f"/proc/{proc.pid}/status", encoding="utf-8") as status:
                ids = next((l.split()[1:] for l in status if l.startswith("NSpid:")), [])
            if len(ids) > 1 and ids[-1] == str(pid):
                if proc.environ().get("DMH_TEST_TAG") == os.environ["DMH_TEST_TAG"]:
                    return proc.pid
        except (OSError, psutil.Error):
            continue
    return pid


def note_guest(pid, vm, test):
    pid = host_pid(pid)
    # Right after the start the process may still be in exec, with no environment to read.
    try:
        tag = wait_until(
            lambda: psutil.Process(pid).environ().get("DMH_TEST_TAG"), 5, what="its environment"
        )
    except DeadlineError:
        tag = None
    note("guest", pid=pid, vm=vm, test=test, tagged=tag == os.environ["DMH_TEST_TAG"])


@pytest.fixture(autouse=True)
def _note_emulator(dm_host):
    note("emulator", port=dm_host.emulator.server.port)


@MEMORY
@pytest.mark.dm_guest(os="linux")
def test_a_passes(guest_app, memory, dm_vm):
    note_guest(guest_app.process.pid, dm_vm.name, "a")
    load = memory.add_load("64MB")
    note_guest(load.pid, dm_vm.name, "a")


@MEMORY
@pytest.mark.dm_guest(os="linux")
def test_b_fails(guest_app, dm_vm):
    note_guest(guest_app.process.pid, dm_vm.name, "b")
    assert False, "the app misbehaved"


@MEMORY
@pytest.mark.dm_guest(os="linux")
def test_c_hangs(guest_app, timeline, dm_vm):
    note_guest(guest_app.process.pid, dm_vm.name, "c")
    note("hanging")
    timeline.wait_for(lambda s: False, 300, "an interrupt")


@MEMORY
@pytest.mark.dm_guest(os="linux")
def test_z_leftovers(dm_host, dm_vm):
    note("leftovers", vms=sorted(dm_host.host.leftovers(dm_host.run_id)), own=dm_vm.name)
'''


@dataclass
class Lifecycle:
    """One run's tag and notes file, and the checks on what it left behind."""

    path: Path
    tag: str
    notes_path: Path

    @property
    def env(self) -> dict[str, str]:
        return plugin_env(
            DMH_TEST_TAG=self.tag,
            DMH_LIFECYCLE_NOTES=str(self.notes_path),
            # Guest processes get a clean environment: the tag is passed to them explicitly.
            DMH_GUEST_PASS_ENV="DMH_TEST_TAG",
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pytest", "test_lifecycle_suite.py", *PLUGIN_ARGS, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def notes(self, kind: str) -> list[dict[str, Any]]:
        return read_notes(self.notes_path, kind)

    def tagged(self) -> list[psutil.Process]:
        return tagged(self.tag)

    def assert_nothing_left(self) -> None:
        """No tagged process (guest, worker, pytest) and no listener of one survives."""
        guests = self.notes("guest")
        assert guests, "the run started no guest process: nothing was checked"
        assert all(g["tagged"] for g in guests), "guest processes must carry the run's tag"
        left = wait_for(lambda: not self.tagged(), 10.0, self.tagged)
        assert not left, [(p.pid, p.cmdline()) for p in self.tagged()]
        pids = {n["pid"] for n in guests} | {n["process"] for n in self.notes("emulator")}
        listeners = [
            c
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids
        ]
        assert not listeners, listeners


def wait_for(done: Callable[[], bool], timeout: float, state: Callable[[], Any]) -> Any:
    """Poll until `done()`; return None, or what `state()` shows at the deadline."""
    try:
        wait_until(done, timeout, what="the condition", interval=0.1)
    except DeadlineError:
        return state() or "deadline passed"
    return None


@pytest.fixture
def lifecycle(pytester: pytest.Pytester) -> Iterator[Lifecycle]:
    pytester.makepyfile(test_lifecycle_suite=SUITE)
    run = Lifecycle(pytester.path, uuid.uuid4().hex, pytester.path / "notes.jsonl")
    yield run
    for proc in run.tagged():  # never leave a failed check's processes to the next test
        proc.kill()


# -- markers ---------------------------------------------------------------------------------


def test_invalid_memory_marker_breaks_only_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_markers="""
        import pytest

        @pytest.mark.dm_memory(minimum="1GB", startup="512MB")
        def test_bad(dm_vm):
            pass

        @pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")
        @pytest.mark.dm_guest(os="linux")
        def test_good(dm_vm):
            assert dm_vm.memory.startup == 512 * 2**20
        """
    )
    out = pytester.path / "out"
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp, DMH_GUEST_OS="linux")
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, f"--dm-report-dir={out}", timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    text = result.stdout.str()
    assert "ERROR at setup of test_bad[linux]" in text
    assert "minimum: 1GB is not allowed: must not exceed startup 512MB" in text
    records = {r.nodeid.split("::")[-1]: r for r in load_records(out / "records")}
    assert records["test_bad[linux]"].outcome == "broken"
    assert "minimum: 1GB" in records["test_bad[linux]"].message
    assert "must not exceed startup" in records["test_bad[linux]"].message
    assert records["test_good[linux]"].outcome == "passed"


# -- nothing outlives a run --------------------------------------------------------------------


def test_parallel_run_leaves_no_vm_process_or_emulator(lifecycle: Lifecycle) -> None:
    result = lifecycle.run("-n", "2", "-k", "not hangs")
    assert "1 failed, 2 passed" in result.stdout, result.stdout[-3000:]
    assert len({n["process"] for n in lifecycle.notes("emulator")}) == 2, "both workers ran"
    # Each worker has its own emulator; whichever ran the check saw only the check's VM.
    [seen] = lifecycle.notes("leftovers")
    assert seen["vms"] == [seen["own"]]
    assert {g["test"] for g in lifecycle.notes("guest")} == {"a", "b"}
    assert len(lifecycle.notes("guest")) == 3  # two apps and a load process
    lifecycle.assert_nothing_left()


@pytest.mark.parametrize(
    ("keep", "kept"),
    [("never", set()), ("failed", {"b"}), ("always", {"a", "b"})],
)
def test_keep_policy(lifecycle: Lifecycle, keep: str, kept: set[str]) -> None:
    result = lifecycle.run(
        f"--dm-keep={keep}", "-k", "not hangs", "-o", "log_cli=true", "--log-cli-level=WARNING"
    )
    assert "1 failed, 2 passed" in result.stdout, result.stdout[-3000:]
    vms = {g["test"]: g["vm"] for g in lifecycle.notes("guest")}
    [seen] = lifecycle.notes("leftovers")
    assert set(seen["vms"]) == {vms[t] for t in kept} | {seen["own"]}
    for test, vm in vms.items():
        logged = f"keeping VM {vm!r} for inspection" in result.stdout
        assert logged == (test in kept), (test, keep)
    # Kept or not, the emulator dies with pytest and takes every guest process with it.
    lifecycle.assert_nothing_left()


@pytest.mark.parametrize(
    ("sig", "args"),
    [
        (signal.SIGINT, ()),
        (signal.SIGTERM, ()),
        (signal.SIGINT, ("-n", "2")),
    ],
    ids=["sigint", "sigterm", "sigint-n2"],
)
def test_interrupted_run_leaves_no_process(
    lifecycle: Lifecycle, sig: signal.Signals, args: tuple[str, ...]
) -> None:
    proc = subprocess.Popen(
        lifecycle.command("-k", "fails or hangs", *args),
        cwd=lifecycle.path,
        env=lifecycle.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Under -n 2 the failing test may not have run yet: wait for both guest apps.
        wanted = 2 if args else 1
        late = wait_for(
            lambda: (
                (bool(lifecycle.notes("hanging")) and len(lifecycle.notes("guest")) >= wanted)
                or proc.poll() is not None
            ),
            90.0,
            lambda: lifecycle.notes("guest"),
        )
        assert late is None and proc.poll() is None, late
        hanging = next(g for g in lifecycle.notes("guest") if g["test"] == "c")
        assert psutil.pid_exists(hanging["pid"])
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    expected = 2 if sig == signal.SIGINT else 128 + signal.SIGTERM
    assert proc.returncode == expected, output[-3000:]
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in output
    lifecycle.assert_nothing_left()


# -- options -----------------------------------------------------------------------------------


@pytest.fixture
def collect(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Any:
    pytester.makepyfile(
        test_profiles="""
        def test_profile(dm_guest_os):
            pass
        """
    )
    use_plugin_env(monkeypatch)
    monkeypatch.delenv("DMH_GUEST_OS", raising=False)

    def run(*args: str, env: str | None = None, ini: str | None = None) -> pytest.RunResult:
        if env is None:
            monkeypatch.delenv("DMH_GUEST_OS", raising=False)
        else:
            monkeypatch.setenv("DMH_GUEST_OS", env)
        ini_path = pytester.path / "tox.ini"
        ini_path.unlink(missing_ok=True)
        if ini is not None:
            pytester.makeini(f"[pytest]\ndm_guest_os = {ini}\n")
        return pytester.runpytest_subprocess(
            *PLUGIN_ARGS, "--collect-only", "-q", *args, timeout=60
        )

    return run


def profiles(result: pytest.RunResult) -> list[str]:
    return sorted(
        line.split("[")[1].rstrip("]")
        for line in result.outlines
        if line.startswith("test_profiles.py::")
    )


def test_option_precedence_command_line_env_ini_default(collect: Any) -> None:
    assert profiles(collect()) == ["linux", "windows"]  # default: both
    assert profiles(collect(env="windows")) == ["windows"]
    assert profiles(collect(ini="linux")) == ["linux"]
    # A CI variable overrides the committed ini file.
    assert profiles(collect(env="windows", ini="linux")) == ["windows"]
    assert profiles(collect("--dm-guest-os=windows", env="linux", ini="linux")) == ["windows"]
    assert profiles(collect("--dm-guest-os=both", ini="linux")) == ["linux", "windows"]


@pytest.mark.parametrize(
    ("where", "source"),
    [("cli", "--dm-guest-os"), ("ini", "ini dm_guest_os"), ("env", "DMH_GUEST_OS")],
)
def test_bad_option_value_is_a_usage_error_naming_it(collect: Any, where: str, source: str) -> None:
    args = ("--dm-guest-os=solaris",) if where == "cli" else ()
    result = collect(*args, **({} if where == "cli" else {where: "solaris"}))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{source}: 'solaris' is not one of windows, linux, both" in result.stderr.str()


# -- an existing VM, restored for the test ---------------------------------------------------


def test_adopted_vm_is_restored_used_and_restored_again_never_removed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_adopt="""
        import pytest
        from harness.settings import MemorySettings

        def test_1_prepare_an_existing_vm(dm_host):
            host = dm_host.host
            host.create_vm("golden", MemorySettings.build(startup="1GB"), run_id="not-this-run",
                           template=dm_host.template_for("linux"))
            host.checkpoint("golden", "base")

        @pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="2GB")
        def test_2_uses_it(dm_vm, dm_host):
            assert dm_vm.name == "golden" and dm_vm.state == "Running"
            assert dm_vm.memory.maximum == 2 * 2**30  # the marker's settings, applied

        def test_3_afterwards(dm_host):
            vm = dm_host.host.vm("golden")
            assert vm.state == "Off"  # restored again (a Production checkpoint: off)
            assert vm.memory.maximum == 2**30  # the checkpoint's settings, not the test's
        """
    )
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(
            *PLUGIN_ARGS,
            "--dm-guest-os=linux",
            "--dm-adopt=golden@base",
            "-p",
            "no:randomly",
            timeout=120,
        )
    result.assert_outcomes(passed=3)


def test_adopt_needs_name_and_checkpoint_and_no_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_x():\n    pass\n")
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        bad = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--dm-adopt=golden", timeout=60)
        parallel = pytester.runpytest_subprocess(
            *PLUGIN_ARGS, "--dm-adopt=golden@base", "-n", "2", timeout=60
        )
    assert "'golden' is not NAME@CHECKPOINT" in bad.stderr.str()
    assert "run it without -n" in parallel.stderr.str()
