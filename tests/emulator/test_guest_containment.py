"""An emulated guest's memory is enforced like a VM's, its processes are contained (they die
with the emulator, even on SIGKILL, daemons included) and get a clean environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from harness.emulator.errors import GuestError
from harness.emulator.guestface import COMMIT_LIMIT_REACHED, OOM_KILL
from harness.emulator.guestview import LinuxProfile
from harness.emulator.host import EmulatedHost, VMState
from harness.emulator.process.guest import EmulatedGuest, reap_stale
from harness.emulator.process.guestproc import LocalProcess
from harness.emulator.process.sandbox.containment import NOT_ENFORCED, support
from harness.settings import MemoryChange
from harness.units import GB, MB
from tests.requires import needs

APPS = Path(__file__).with_name("guest_apps")
ROOT = Path(__file__).resolve().parents[2]
contained = needs(
    "root",
    missing=None
    if support().enforced and support().namespaces
    else "; ".join(support().warnings) or "guest memory is not enforced here",
)
# What the machine may hold for one guest beyond its assigned memory: the launcher process
# (nsenter) that waits for each program outside the guest's namespaces.
RSS_SLACK = 16 * MB


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def tick(host: EmulatedHost, clock: FakeClock, times: int = 1) -> None:
    for _ in range(times):
        clock.now = round(clock.now + host.timings.tick, 9)
        host.tick()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def host(clock: FakeClock, tmp_path: Path) -> Iterator[EmulatedHost]:
    with EmulatedHost("16GB", reserve="1GB", clock=clock, guest_root=tmp_path / "g") as h:
        yield h


def boot(
    host: EmulatedHost, clock: FakeClock, guest_os: str, memory: MemoryChange | None = None
) -> uuid.UUID:
    vm = host.new_vm(f"{guest_os}-{uuid.uuid4().hex[:6]}", "1GB", guest_os=guest_os).id
    if memory is not None:
        host.set_memory(vm, memory)
    host.start(vm)
    tick(host, clock, 10)
    assert host.get_vm(vm).state is VMState.Running
    return vm


def hog(guest: EmulatedGuest, mode: str, step_mb: int) -> LocalProcess:
    return guest.start_process(
        [sys.executable, str(APPS / "hog.py"), mode, str(step_mb)], stdin=True
    )


def held(proc: LocalProcess) -> int:
    lines = [x for x in proc.output().splitlines() if x.startswith("held ")]
    return int(lines[-1].split()[1]) if lines else 0


def guest_rss(guest: EmulatedGuest) -> int:
    total = 0
    for pid in guest.pids():
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total


# -- enforcement ------------------------------------------------------------------------------
@contained
def test_a_linux_app_allocating_past_the_maximum_is_oom_killed(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = boot(host, clock, "linux", MemoryChange(dynamic=True, minimum=512 * MB, maximum=GB))
    guest = host.guest(vm)
    proc = hog(guest, "touch", 32)
    peak_rss = 0
    for _ in range(64):  # 2 GB of steps: far past the 1 GB maximum
        if not proc.running:
            break
        before = held(proc)
        try:
            proc.send("\n")
        except GuestError:  # the last tick's refusal killed it; it was not reaped yet
            break
        wait_until(lambda: held(proc) > before or not proc.running, 30, "a step")  # noqa: B023
        tick(host, clock)
        peak_rss = max(peak_rss, guest_rss(guest))
        assigned = host.memory(vm).assigned_mb * MB
        assert peak_rss <= assigned + RSS_SLACK, f"guest RSS {peak_rss} > assigned {assigned}"
    wait_until(lambda: not proc.running, 10, "the OOM kill")
    tick(host, clock)
    print(
        f"linux OOM: held {held(proc)} MB, peak guest RSS {peak_rss // MB} MB,"
        f" assigned {host.memory(vm).assigned_mb} MB, exit {proc.exit_code}"
    )
    assert proc.exit_code == -signal.SIGKILL
    # The idle OS holds 250 MB of the guest's 1 GB: the kernel kills before the app has it all.
    assert 500 <= held(proc) <= 1024 - 250
    events = guest.memory_events()
    assert [e.kind for e in events] == [OOM_KILL]
    assert events[0].message == f"the guest OOM-killed {Path(sys.executable).name}"
    assert events[0].pid == proc.pid


@contained
def test_a_windows_app_committing_past_the_commit_limit_is_refused(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = boot(host, clock, "windows")  # static 1 GB: commit limit 1 GB + 1 GB page file
    guest = host.guest(vm)
    proc = hog(guest, "commit", 256)
    views = []
    for _ in range(12):
        if not proc.running:
            break
        before = held(proc)
        try:
            proc.send("\n")
        except GuestError:  # the last tick's refusal killed it; it was not reaped yet
            break
        wait_until(lambda: held(proc) > before or not proc.running, 30, "a step")  # noqa: B023
        tick(host, clock)
        views.append(host.guest_view(vm))
    wait_until(lambda: not proc.running, 10, "the refusal")
    tick(host, clock)
    # Committed, never touched: Committed Bytes counted it, resident memory did not grow.
    last = views[-2]
    print(f"windows commit: held {held(proc)} MB, last view {last}, exit {proc.exit_code}")
    assert last is not None and last.committed_mb >= 750 + held(proc) - 256
    assert last.anon_mb < 750 + 200
    assert 1024 <= held(proc) <= 2048 - 750 + 256
    events = guest.memory_events()
    assert [e.kind for e in events] == [COMMIT_LIMIT_REACHED]
    assert events[0].message.startswith("commit limit reached")


@contained
def test_linux_committed_as_counts_commit_not_resident_memory(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = boot(host, clock, "linux", MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
    guest = host.guest(vm)
    proc = hog(guest, "commit", 512)
    tick(host, clock)
    idle = host.guest_view(vm)
    proc.send("\n")
    wait_until(lambda: held(proc) == 512, 30, "the commit")
    tick(host, clock)
    view = host.guest_view(vm)
    assert idle is not None and view is not None
    assert view.committed_mb - idle.committed_mb >= 512
    assert view.anon_mb - idle.anon_mb < 64
    assert host.memory(vm).guest_demand_mb >= view.committed_mb  # demand follows commit


def test_memavailable_approaches_a_floor_but_is_never_zero_while_cache_is_left() -> None:
    profile = LinuxProfile()
    seen = [
        profile.view(250 + used, 1024, 1024, 4096, anon_mb=250 + used).available_mb
        for used in range(0, 800, 25)
    ]
    assert seen == sorted(seen, reverse=True)
    assert seen[0] > 600 and 0 < seen[-1] < 32
    full = profile.view(2000, 1024, 1024, 4096, anon_mb=1024)
    assert full.cached_mb >= 16 and full.available_mb > 0


# -- containment ------------------------------------------------------------------------------
@contained
def test_stopping_an_app_stops_the_daemon_it_left_behind(
    host: EmulatedHost, clock: FakeClock
) -> None:
    guest = host.guest(boot(host, clock, "linux"))
    proc = guest.start_process([sys.executable, str(APPS / "daemon.py")])
    wait_until(lambda: "daemon" in proc.output() and "parent done" in proc.output(), 10, "daemon")
    pids = [p.pid for p in proc.tree()]
    assert len(pids) == 2  # the app and its detached grandchild (another session)
    sessions = {os.getsid(pid) for pid in pids}
    assert len(sessions) == 2
    proc.stop()
    wait_until(lambda: all(gone(pid) for pid in pids), 5, "the app and its daemon to end")


@contained
def test_two_guests_bind_the_same_port(host: EmulatedHost, clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    guests = [host.guest(boot(host, clock, "linux")) for _ in range(2)]
    procs = [g.start_process([sys.executable, str(APPS / "bind.py"), str(port)]) for g in guests]
    wait_until(lambda: all(p.output() for p in procs), 10, "both binds")
    assert [p.output().strip() for p in procs] == ["bound", "bound"]
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))  # their loopback is theirs, not the machine's


EMULATOR = """
import json, sys, time
from harness.emulator.host import EmulatedHost, HostDriver
from harness.emulator.balancer import Timings
host = EmulatedHost("8GB", timings=Timings.fast())
HostDriver(host).start()
vm = host.new_vm("victim", "1GB", guest_os="linux").id
host.start(vm)
while not str(host.get_vm(vm).heartbeat and host.get_vm(vm).heartbeat.name).startswith("Ok"):
    time.sleep(0.05)  # Running at once after Start-VM; the guest is up with its heartbeat
guest = host.guest(vm)
daemon = guest.start_process([sys.executable, sys.argv[1] + "/daemon.py"])
sleeper = guest.start_process(["sleep", "300"])
while "parent done" not in daemon.output():
    time.sleep(0.05)
settled = time.monotonic() + 30  # on a busy machine the launchers may still be starting
while len(guest.pids()) < 5 and time.monotonic() < settled:
    time.sleep(0.05)
cgroup = daemon.cgroup.path.parent.parent if daemon.cgroup else None
print(json.dumps({"pids": guest.pids(), "dir": str(guest.directory.parent),
                  "cgroup": str(cgroup) if cgroup else None}), flush=True)
time.sleep(300)
"""


@contained
def test_sigkill_of_the_emulator_leaves_no_guest_process_and_the_next_run_reaps(
    tmp_path: Path,
) -> None:
    script = tmp_path / "emulator.py"
    script.write_text(EMULATOR)
    emulator = subprocess.Popen(
        [sys.executable, str(script), str(APPS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert emulator.stdout is not None
        facts = json.loads(emulator.stdout.readline())
    finally:
        emulator.kill()
        emulator.wait(10)
    pids = facts["pids"]
    assert len(pids) >= 5  # 2 launchers, the app, its daemon, sleep
    wait_until(lambda: all(gone(pid) for pid in pids), 5, "every guest process to die")
    assert Path(facts["dir"]).exists() and Path(facts["cgroup"]).exists()
    reap_stale()  # what the next run does first
    assert not Path(facts["dir"]).exists()
    assert not Path(facts["cgroup"]).exists()


# -- environment ------------------------------------------------------------------------------
def test_guest_processes_get_a_clean_environment(
    host: EmulatedHost, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMH_HOST_PASSWORD", "hunter2-host")
    monkeypatch.setenv("DMH_GUEST_PASSWORD", "hunter2-guest")
    monkeypatch.setenv("DMH_UNRELATED_SETTING", "not-for-guests")
    monkeypatch.setenv("MY_APP_MODE", "fast")
    monkeypatch.setenv("DMH_GUEST_PASS_ENV", "MY_APP_MODE,DMH_HOST_PASSWORD")
    guest = host.guest(boot(host, clock, "linux"))
    proc = guest.start_process(["env"], {"GIVEN": "1"})
    assert proc.wait(10) == 0
    env = dict(line.split("=", 1) for line in proc.output().splitlines() if "=" in line)
    assert not [name for name in env if "PASSWORD" in name]
    assert "hunter2" not in proc.output()
    assert "DMH_UNRELATED_SETTING" not in env and "PYTEST_CURRENT_TEST" not in env
    assert env["MY_APP_MODE"] == "fast" and env["GIVEN"] == "1"
    assert env["PATH"] == os.environ["PATH"]
    with pytest.raises(GuestError, match="DMH_X_PASSWORD"):
        guest.start_process(["env"], {"DMH_X_PASSWORD": "nope"})


def test_without_root_the_guest_says_its_memory_is_not_enforced(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        warnings = support().warnings
    else:
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-c",
                "from harness.emulator.process.sandbox.containment import support;"
                "print('\\n'.join(support().warnings))",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        warnings = tuple(done.stdout.splitlines())
    assert any(w.startswith(f"{NOT_ENFORCED}: not root") for w in warnings)
