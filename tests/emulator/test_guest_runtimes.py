"""Real runtimes inside an emulated Linux guest (Node, the JVM, Python with psutil, getconf,
free, node meminfo) see the guest's memory, before and after a hot-add and a balloon removal.

Each figure must equal the guest's truth (the view the host published) within one 2 MB block
for totals. What each runtime saw is written to `guest-runtimes.json` in the test's temporary
directory and printed (run with -s to see it).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.emulator.guestview import GuestView
from harness.emulator.host import EmulatedHost, Heartbeat
from harness.emulator.process.guest import EmulatedGuest
from harness.emulator.process.guestproc import LocalProcess
from harness.emulator.process.sandbox.containment import support
from harness.emulator.process.sandbox.preload import library
from harness.settings import MemoryChange
from harness.units import GB, MB
from tests.requires import needs, skip_without

APPS = Path(__file__).with_name("guest_apps")
BLOCK = 2 * MB

pytestmark = [
    needs(
        "root",
        missing=None
        if support().enforced and support().namespaces
        else "; ".join(support().warnings) or "no memory cgroup or namespaces here",
    ),
    needs("cc", missing=library().reason if library().path is None else None),
]
# Each runtime in a test of its own, so one that is missing is a recorded skip (a failure
# where CI installs it), never a check that silently did not run.
PROBES = {
    "python": [sys.executable, str(APPS / "memview.py")],
    "node": ["node", str(APPS / "memview.js")],
    "java": ["java", "-Xshare:off", str(APPS / "MemView.java")],
}


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


def advance_until(
    host: EmulatedHost, clock: FakeClock, condition: Callable[[], bool], what: str
) -> None:
    """Run balancer ticks on the fake clock until `condition` (at most 120 s of guest time)."""
    for _ in range(round(120 / host.timings.tick)):
        if condition():
            return
        clock.now = round(clock.now + host.timings.tick, 9)
        host.tick()
    raise AssertionError(f"the balancer never got to: {what}")


class Probe:
    """A long-running app that prints one JSON line per line it is sent."""

    def __init__(self, proc: LocalProcess) -> None:
        self.proc = proc
        wait_until(lambda: self._lines(), 90, f"{proc.argv[0]} to start: {proc.errors()}")

    def _lines(self) -> list[str]:
        return [line for line in self.proc.output().splitlines() if line.startswith("{")]

    def ask(self) -> dict[str, int]:
        count = len(self._lines())
        self.proc.send("\n")
        wait_until(lambda: len(self._lines()) > count, 30, f"{self.proc.argv[0]} to answer")
        return dict(json.loads(self._lines()[-1]))


def run_once(guest: EmulatedGuest, argv: list[str]) -> str:
    proc = guest.start_process(argv)
    assert proc.wait(30) == 0, proc.errors()
    return proc.output()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[EmulatedHost, FakeClock, uuid.UUID]]:
    clock = FakeClock()
    with EmulatedHost("16GB", reserve="1GB", clock=clock, guest_root=tmp_path / "g") as host:
        vm = host.new_vm("runtimes", "1GB", guest_os="linux").id
        host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
        host.start(vm)
        # Running at once after Start-VM; the guest is up once its heartbeat is OK
        advance_until(
            host,
            clock,
            lambda: host.get_vm(vm).heartbeat is Heartbeat.OkApplicationsUnknown,
            "boot",
        )
        yield host, clock, vm


@pytest.mark.parametrize("runtime", PROBES)
def test_a_runtime_sees_the_guest_through_hot_add_and_balloon_removal(
    runtime: str, setup: tuple[EmulatedHost, FakeClock, uuid.UUID], tmp_path: Path
) -> None:
    """The runtime, and the guest's own tools (getconf, free, node meminfo, the cgroup)."""
    if shutil.which(PROBES[runtime][0]) is None:
        skip_without(runtime, why=f"{PROBES[runtime][0]} is not on PATH")
    host, clock, vm = setup
    guest = host.guest(vm)
    # One tick after a process starts settles the view; the probes read it while no tick runs.
    probes = {runtime: Probe(guest.start_process(PROBES[runtime], stdin=True))}
    seen: dict[str, dict[str, object]] = {}

    def look(phase: str) -> GuestView:
        clock.now = round(clock.now + host.timings.tick, 9)
        host.tick()
        view = host.guest_view(vm)
        assert view is not None
        figures: dict[str, object] = {"truth": _truth(view)}
        for name, probe in probes.items():
            figures[name] = probe.ask()
        figures["java_started_now"] = _java_once(guest) if "java" in probes else None
        figures["getconf"] = _getconf(guest)
        figures["free"] = _free(guest)
        figures["node0_meminfo"] = _node_meminfo(guest)
        figures["cgroup"] = _cgroup_limit(guest)
        assert host.guest_view(vm) == view, "no tick ran, so the truth did not move"
        seen[phase] = figures
        _check(phase, view, figures)
        return view

    start = look("start")
    mem = host.memory(vm)
    guest.synthetic_mb = 1500  # demand rises: the host hot-adds
    advance_until(
        host, clock, lambda: host.memory(vm).assigned_mb >= mem.assigned_mb + 1024, "hot-add"
    )
    guest.synthetic_mb = 1500  # hold it while the view settles
    added = look("hot-added")
    assert added.total_mb >= start.total_mb + 1024
    peak = host.memory(vm)
    guest.synthetic_mb = 0  # demand falls: the host balloons memory away
    advance_until(
        host, clock, lambda: host.memory(vm).assigned_mb <= peak.assigned_mb - 1024, "balloon"
    )
    removed = look("ballooned")
    assert removed.total_mb <= added.total_mb - 1024

    # The JVM sized its heap once, at start: hot-added memory does not grow it (a real
    # JVM's behaviour); one started after the hot-add sized it from the larger guest.
    if "java" in probes:
        assert seen["hot-added"]["java"]["max"] == seen["start"]["java"]["max"]  # type: ignore[index]
        assert (
            seen["hot-added"]["java_started_now"]["max"]  # type: ignore[index]
            > seen["start"]["java"]["max"]  # type: ignore[index]
        )
    (tmp_path / "guest-runtimes.json").write_text(json.dumps(seen, indent=1))
    print(json.dumps(seen, indent=1))


def _truth(view: GuestView) -> dict[str, int]:
    return {
        "total": view.total_mb * MB,
        "available": view.available_mb * MB,
        "free": view.free_mb * MB,
        "cached": view.cached_mb * MB,
    }


def _close(seen: object, truth: int, what: str, slack: int = BLOCK) -> None:
    assert isinstance(seen, int), f"{what}: {seen!r}"
    assert abs(seen - truth) <= slack, f"{what}: saw {seen}, the guest has {truth}"


def _check(phase: str, view: GuestView, figures: dict[str, object]) -> None:
    total, available, free = view.total_mb * MB, view.available_mb * MB, view.free_mb * MB
    assert available > 0, "MemAvailable is never a fake 0 while cache is left"
    py = figures.get("python")
    if isinstance(py, dict):
        _close(py["sysconf_total"], total, f"{phase} os.sysconf(SC_PHYS_PAGES)")
        _close(py["sysconf_free"], free, f"{phase} os.sysconf(SC_AVPHYS_PAGES)")
        _close(py["psutil_total"], total, f"{phase} psutil total")
        _close(py["psutil_available"], available, f"{phase} psutil available", slack=0)
        _close(py["sysinfo_total"], total, f"{phase} sysinfo() totalram")
        _close(py["sysinfo_free"], free, f"{phase} sysinfo() freeram", slack=0)
    node = figures.get("node")
    if isinstance(node, dict):
        _close(node["total"], total, f"{phase} os.totalmem()")
        _close(node["free"], available, f"{phase} os.freemem()", slack=0)
    java = figures.get("java")
    if isinstance(java, dict):
        _close(java["total"], total, f"{phase} getTotalMemorySize()")
    once = figures.get("java_started_now")
    if isinstance(once, dict):
        _close(once["total"], total, f"{phase} getTotalMemorySize() (new JVM)")
        # Default max heap: a quarter of physical memory, less one survivor space.
        assert total // 5 <= once["max"] <= total // 4, f"{phase} maxMemory() {once['max']}"
    getconf = figures["getconf"]
    assert isinstance(getconf, dict)
    _close(getconf["phys"], total, f"{phase} getconf _PHYS_PAGES")
    _close(getconf["avphys"], free, f"{phase} getconf _AVPHYS_PAGES")
    free_cmd = figures["free"]
    assert isinstance(free_cmd, dict)
    _close(free_cmd["total"], total, f"{phase} free total")
    _close(free_cmd["available"], available, f"{phase} free available", slack=0)
    _close(figures["node0_meminfo"], total, f"{phase} node0 MemTotal")
    _close(figures["cgroup"], total, f"{phase} the app's memory.limit_in_bytes")


def _java_once(guest: EmulatedGuest) -> dict[str, int]:
    out = run_once(guest, ["java", "-Xshare:off", str(APPS / "MemView.java")])
    return dict(json.loads(out.splitlines()[0]))


def _getconf(guest: EmulatedGuest) -> dict[str, int]:
    page = int(run_once(guest, ["getconf", "PAGESIZE"]))
    phys = int(run_once(guest, ["getconf", "_PHYS_PAGES"]))
    avphys = int(run_once(guest, ["getconf", "_AVPHYS_PAGES"]))
    return {"phys": phys * page, "avphys": avphys * page}


def _free(guest: EmulatedGuest) -> dict[str, int]:
    line = next(x for x in run_once(guest, ["free", "-b"]).splitlines() if x.startswith("Mem:"))
    fields = line.split()
    return {"total": int(fields[1]), "available": int(fields[6])}


def _node_meminfo(guest: EmulatedGuest) -> int:
    text = run_once(guest, ["cat", "/sys/devices/system/node/node0/meminfo"])
    line = next(x for x in text.splitlines() if "MemTotal:" in x)
    return int(line.split()[3]) * 1024


def _cgroup_limit(guest: EmulatedGuest) -> int:
    """The limit a container-aware runtime finds: /proc/self/cgroup → the mounted cgroupfs."""
    script = (
        "import pathlib\n"
        "lines = pathlib.Path('/proc/self/cgroup').read_text().splitlines()\n"
        "rel = next(x.split(':', 2)[2] for x in lines if 'memory' in x.split(':')[1].split(','))\n"
        "print(pathlib.Path('/sys/fs/cgroup/memory' + rel, 'memory.limit_in_bytes').read_text())\n"
    )
    return int(run_once(guest, [sys.executable, "-c", script]))
