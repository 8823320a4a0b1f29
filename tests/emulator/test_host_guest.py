"""The emulated host's operations and errors, and its guests: real local processes whose
memory drives the balancer, and the guest memory view they see (files, /proc/meminfo)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from harness import deadline
from harness.emulator.balancer import Timings
from harness.emulator.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    EmulatorError,
    GuestError,
    MemorySettingError,
    NotEnoughMemoryError,
    ParameterMismatchError,
    RuntimeMemoryChangeError,
    VmNotFoundError,
    VmStateError,
)
from harness.emulator.guestenv import ENV_OS
from harness.emulator.guestview import (
    AVAILABLE_MBYTES,
    COMMITTED_BYTES,
    MAXIMUM_MEMORY,
    TOTAL_PHYSICAL,
    LinuxProfile,
    WindowsProfile,
)
from harness.emulator.host import (
    CheckpointType,
    EmulatedHost,
    Heartbeat,
    HostDriver,
    VMState,
)
from harness.emulator.process.guestproc import LocalProcess
from harness.emulator.process.sandbox.overlay import (
    ENV_COUNTERS,
    ENV_MEMINFO,
    Overlay,
    meminfo_overlay,
)
from harness.emulator.wildcards import has_wildcards, like
from harness.errors import RuntimeChangeError
from harness.settings import MemoryChange
from harness.units import GB, MB, TB
from tests.requires import skip_without


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def host(clock: FakeClock, tmp_path: Path) -> Iterator[EmulatedHost]:
    with EmulatedHost("16GB", reserve="1GB", clock=clock, guest_root=tmp_path / "guests") as h:
        yield h


def advance(host: EmulatedHost, clock: FakeClock, seconds: float) -> None:
    for _ in range(round(seconds / host.timings.tick)):
        clock.now = round(clock.now + host.timings.tick, 9)
        host.tick()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll a condition until a deadline (no fixed sleeps)."""
    deadline.wait_until(condition, timeout, what=what, interval=0.02)


def running_vm(
    host: EmulatedHost, clock: FakeClock, name: str = "vm", guest_os: str = "linux"
) -> uuid.UUID:
    vm = host.new_vm(name, "1GB", guest_os=guest_os).id
    host.start(vm)
    advance(host, clock, 0.5)
    assert host.get_vm(vm).state is VMState.Running
    return vm


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- VMs, names, lookups ---------------------------------------------------------------------
def test_new_vm_has_hyperv_defaults(host: EmulatedHost) -> None:
    vm = host.new_vm("fresh")
    assert vm.memory_startup == 512 * MB  # New-VM default (§1.4)
    assert not vm.dynamic_memory_enabled
    assert (vm.state, vm.heartbeat, vm.generation) == (VMState.Off, None, 2)
    assert vm.checkpoint_type is CheckpointType.Production  # §1.5
    assert (vm.memory_assigned, vm.memory_demand, vm.memory_status) == (0, 0, "")
    assert int(VMState.Running) == 2 and int(VMState.Off) == 3 and int(VMState.Saved) == 6
    assert int(VMState.Paused) == 9 and int(VMState.Starting) == 10


@pytest.mark.parametrize(
    "name", ['it\'s "quoted"', "$(Remove-Item C:\\)", "back`tick", "Ünïcødé 名前", "semi;colon"]
)
def test_any_string_is_a_plain_name(host: EmulatedHost, name: str) -> None:
    created = host.new_vm(name)
    assert host.get_vm(name).id == created.id
    assert host.get_vm(created.id).name == name
    assert [vm.name for vm in host.find_vms("*")] == [name]


def test_unknown_vm_fails_like_get_vm(host: EmulatedHost) -> None:
    with pytest.raises(VmNotFoundError) as info:
        host.get_vm("nope")
    error = info.value
    assert error.message == 'Hyper-V was unable to find a virtual machine with name "nope".'
    assert (error.category, error.error_id, error.target) == (
        "InvalidArgument",
        "InvalidParameter",
        "nope",
    )
    missing = uuid.uuid4()
    with pytest.raises(VmNotFoundError, match="with id"):
        host.start(missing)


def test_find_vms_uses_powershell_wildcards(host: EmulatedHost) -> None:
    for name in ("web-1", "web-2", "Web-10", "db-1", "a*b", "x[1]"):
        host.new_vm(name)
    names = lambda pattern: [vm.name for vm in host.find_vms(pattern)]  # noqa: E731
    assert names("web-?") == ["web-1", "web-2"]
    assert names("WEB-*") == ["web-1", "Web-10", "web-2"]
    assert names("[dw]*-1") == ["db-1", "web-1"]
    assert names("a`*b") == ["a*b"]
    assert names("x`[1`]") == ["x[1]"]
    assert names("nothing*") == []
    assert has_wildcards("web-*") and not has_wildcards("a`*b") and not has_wildcards("plain")
    assert like("Web-10", "w*0") and not like("web-1", "web-1?")


# -- Set-VMMemory ---------------------------------------------------------------------------
def test_enabling_dm_uses_the_common_defaults(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", "2GB")
    snap = host.set_memory(vm.id, MemoryChange(dynamic=True))
    assert snap.memory.dynamic
    assert (snap.memory.buffer, snap.memory.priority) == (20, 50)  # §8.12
    assert (snap.memory_minimum, snap.memory_maximum) == (512 * MB, TB)


def test_one_call_is_one_write_validated_as_a_whole(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", "1GB")
    host.set_memory(vm.id, MemoryChange(dynamic=True, minimum=512 * MB, maximum=2 * GB))
    with pytest.raises(MemorySettingError) as info:  # separately, the order matters (§1.1)
        host.set_memory(vm.id, MemoryChange(startup=4 * GB))
    assert info.value.reason is not None and info.value.reason.field == "maximum"
    snap = host.set_memory(vm.id, MemoryChange(startup=4 * GB, maximum=8 * GB))
    assert (snap.memory_startup, snap.memory_maximum) == (4 * GB, 8 * GB)


def test_dm_parameters_without_dm_are_a_parameter_mismatch(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", "1GB")
    with pytest.raises(ParameterMismatchError) as info:
        host.set_memory(vm.id, MemoryChange(buffer=30))
    assert (info.value.category, info.value.target) == ("InvalidArgument", "vm")
    assert "Buffer" in info.value.message
    with pytest.raises(ParameterMismatchError):
        host.set_memory(vm.id, MemoryChange(dynamic=False, maximum=4 * GB))
    assert host.set_memory(vm.id, MemoryChange(dynamic=True, buffer=30)).memory.buffer == 30


def test_odd_mb_is_refused_in_hyperv_words_and_bytes_are_truncated(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", "1GB")
    with pytest.raises(MemorySettingError) as info:
        host.set_memory(vm.id, MemoryChange(startup=1025 * MB))
    error = info.value
    lines = error.message.splitlines()
    assert lines[0] == "Failed to modify device 'Memory'."
    assert (
        lines[1]
        == f"'vm' failed to modify device 'Memory'. (Virtual machine ID {str(vm.id).upper()})"
    )
    assert "The memory value assigned ('1025' MB) is not properly aligned." in error.message
    assert (error.category, error.error_id) == ("InvalidArgument", "InvalidParameter")
    assert error.reason is not None and error.reason.field == "startup"
    assert (
        host.set_memory(vm.id, MemoryChange(startup=GB + 1000)).memory_startup == GB
    )  # cmdlet truncation
    with pytest.raises(MemorySettingError, match="Invalid memory value assigned for 'odd'"):
        host.new_vm("odd", 9001 * MB)


def test_settings_errors_surface_with_field_value_and_rule(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", "1GB")
    with pytest.raises(MemorySettingError) as info:
        host.set_memory(vm.id, MemoryChange(dynamic=True, buffer=3))
    assert info.value.reason is not None
    assert (info.value.reason.field, info.value.reason.value) == ("buffer", 3)
    assert "buffer: 3 is not allowed: must be an integer from 5 to 2000" in info.value.message


def _dm_running(host: EmulatedHost, clock: FakeClock) -> uuid.UUID:
    vm = host.new_vm("vm", "1GB").id
    host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
    host.start(vm)
    advance(host, clock, 1)
    return vm


def test_runtime_changes_follow_the_host_version(clock: FakeClock, tmp_path: Path) -> None:
    with EmulatedHost("16GB", clock=clock, version="2022", guest_root=tmp_path) as host:
        vm = _dm_running(host, clock)
        with pytest.raises(RuntimeMemoryChangeError) as info:
            host.set_memory(vm, MemoryChange(maximum=2 * GB))
        error = info.value
        assert (error.category, error.error_id) == ("InvalidOperation", "InvalidState")
        assert isinstance(error.reason, RuntimeChangeError)
        assert error.reason.host_version == "2022"
        assert "maximum: 2GB (was 4GB)" in error.message
        assert error.message.startswith("Failed to modify device 'Memory'.")
        host.set_memory(vm, MemoryChange(maximum=8 * GB, minimum=256 * MB, buffer=50, priority=90))
        with pytest.raises(RuntimeMemoryChangeError, match="dynamic"):
            host.set_memory(vm, MemoryChange(dynamic=False))
    with EmulatedHost("16GB", clock=clock, version="2008R2SP1", guest_root=tmp_path) as old:
        vm = _dm_running(old, clock)
        with pytest.raises(RuntimeMemoryChangeError, match="2008R2SP1"):
            old.set_memory(vm, MemoryChange(buffer=50))


def test_runtime_memory_resize_of_a_static_vm_on_2016_and_later(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = running_vm(host, clock, guest_os="windows")
    snap = host.set_memory(vm, MemoryChange(startup=2 * GB))
    assert snap.memory_assigned == 2 * GB
    counters = host.vm_counters(vm)
    assert counters["Added Memory"] == 1024
    snap = host.set_memory(vm, MemoryChange(startup=1 * GB))
    assert snap.memory_assigned == GB
    with EmulatedHost("16GB", clock=clock, version="2012R2") as old:
        vm = running_vm(old, clock)
        with pytest.raises(RuntimeMemoryChangeError):
            old.set_memory(vm, MemoryChange(startup=2 * GB))


def test_a_saved_vm_memory_cannot_change(host: EmulatedHost, clock: FakeClock) -> None:
    vm = running_vm(host, clock)
    host.save(vm)
    with pytest.raises(VmStateError) as info:
        host.set_memory(vm, MemoryChange(startup=2 * GB))
    assert info.value.message.startswith(
        "The operation cannot be performed while the virtual machine is in its current state."
    )


# -- power states --------------------------------------------------------------------------
def test_lifecycle_states_heartbeat_uptime_and_memory(host: EmulatedHost, clock: FakeClock) -> None:
    vm = host.new_vm("vm", "2GB").id
    free = host.available_memory()
    snap = host.start(vm)
    # Running at once while the guest boots, as on a real host (issue 13, item 9)
    assert (snap.state, snap.heartbeat) == (VMState.Running, Heartbeat.NoContact)
    assert host.available_memory() == free - 2 * GB
    advance(host, clock, 1.0)
    snap = host.get_vm(vm)
    assert (snap.state, snap.heartbeat) == (VMState.Running, Heartbeat.OkApplicationsUnknown)
    assert snap.uptime.total_seconds() == pytest.approx(1.0)
    assert host.pause(vm).heartbeat is Heartbeat.Paused
    assert host.get_vm(vm).memory_assigned == 2 * GB
    with pytest.raises(VmStateError):
        host.pause(vm)
    assert host.resume(vm).state is VMState.Running
    saved = host.save(vm)
    assert (saved.state, saved.heartbeat, saved.memory_assigned) == (VMState.Saved, None, 0)
    assert host.available_memory() == free  # a saved VM's memory is on disk
    assert host.start(vm).memory_assigned == 2 * GB
    with pytest.raises(VmStateError):
        host.remove(vm)
    off = host.stop(vm)
    assert (off.state, off.heartbeat, off.memory_assigned) == (VMState.Off, None, 0)
    assert off.uptime.total_seconds() == 0
    host.remove(vm)
    with pytest.raises(VmNotFoundError):
        host.get_vm(vm)


def test_start_needs_startup_memory_free(clock: FakeClock) -> None:
    with EmulatedHost("4GB", reserve="512MB", clock=clock) as host:
        vm = host.new_vm("big", "6GB").id
        with pytest.raises(NotEnoughMemoryError) as info:
            host.start(vm)
        error = info.value
        assert error.message.startswith("'big' failed to start.")
        assert "Not enough memory in the system to start the virtual machine big" in error.message
        assert (error.category, error.needed_mb, error.available_mb) == (
            "ResourceUnavailable",
            6144,
            3584,
        )
        assert host.get_vm(vm).state is VMState.Off


# -- checkpoints ---------------------------------------------------------------------------
def test_production_checkpoint_restores_settings_and_leaves_the_vm_off(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = host.new_vm("vm", "1GB").id
    host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
    host.start(vm)
    advance(host, clock, 1)
    cp = host.checkpoint(vm)
    assert cp.checkpoint_type is CheckpointType.Production
    assert cp.name.startswith("vm - (") and cp.name.endswith(("AM)", "PM)"))
    assert cp.memory.maximum == 4 * GB
    host.set_memory(vm, MemoryChange(maximum=8 * GB))
    snap = host.restore_checkpoint(vm, cp.name)
    assert snap.state is VMState.Off  # §1.5: no memory state
    assert snap.memory_maximum == 4 * GB
    assert snap.parent_checkpoint_id == cp.id
    assert [c.id for c in host.checkpoints(vm)] == [cp.id]
    host.remove_checkpoint(vm, cp.id)
    with pytest.raises(CheckpointNotFoundError) as info:
        host.restore_checkpoint(vm, cp.id)
    assert info.value.message == "Unable to find a snapshot matching the given criteria."
    assert info.value.category == "ObjectNotFound"


def test_standard_checkpoint_restores_the_memory_state(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = host.new_vm("vm", "1GB", guest_os="windows").id
    host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=8 * GB))
    host.set_checkpoint_type(vm, CheckpointType.Standard)
    host.start(vm)
    host.guest(vm).synthetic_mb = 2000
    advance(host, clock, 2)
    grown = host.memory(vm)
    cp = host.checkpoint(vm, "grown")
    assert cp.checkpoint_type is CheckpointType.Standard
    host.guest(vm).synthetic_mb = 0
    advance(host, clock, 10)
    assert host.memory(vm).assigned_mb < grown.assigned_mb
    # A running VM is saved, the checkpoint applied and the VM started again (real-host facts)
    snap = host.restore_checkpoint(vm, "grown")
    assert snap.state is VMState.Running
    back = host.memory(vm)
    assert back.assigned_mb == grown.assigned_mb
    assert back.high_water_mb == grown.high_water_mb
    assert back.added_mb - back.removed_mb == back.assigned_mb - 1024
    host.set_checkpoint_type(vm, CheckpointType.Disabled)
    with pytest.raises(CheckpointError, match="disabled"):
        host.checkpoint(vm)


# -- guest processes -----------------------------------------------------------------------
def test_processes_only_run_in_a_running_guest(host: EmulatedHost, clock: FakeClock) -> None:
    vm = host.new_vm("vm", "1GB").id
    guest = host.guest(vm)
    with pytest.raises(GuestError) as info:
        guest.start_process(py("pass"))
    assert (info.value.category, info.value.error_id) == ("InvalidOperation", "InvalidState")
    host.start(vm)
    with pytest.raises(GuestError, match="booting"):
        guest.start_process(py("pass"))
    advance(host, clock, 0.5)
    with pytest.raises(GuestError) as info:
        guest.start_process(["no-such-program-dmh"])
    assert info.value.error_id == "CommandNotFoundException"


def test_output_exit_code_env_and_files(host: EmulatedHost, clock: FakeClock) -> None:
    vm = running_vm(host, clock, guest_os="windows")
    guest = host.guest(vm)
    code = (
        "import os, sys, json;"
        f"print(json.dumps({{k: os.environ[k] for k in ('{ENV_OS}', '{ENV_MEMINFO}', '{ENV_COUNTERS}')}}));"
        "print('oops', file=sys.stderr); sys.exit(3)"
    )
    proc = guest.start_process(py(code))
    assert proc.wait(10) == 3
    env = json.loads(proc.output())
    assert env[ENV_OS] == "windows"
    assert proc.errors() == "oops\n"
    meminfo = Path(env[ENV_MEMINFO]).read_text()
    counters = json.loads(Path(env[ENV_COUNTERS]).read_text())
    view = host.guest_view(vm)
    assert view is not None
    assert f"MemTotal:{view.total_mb * 1024:>21} kB\n" in meminfo
    assert counters[TOTAL_PHYSICAL] == view.total_mb * MB
    assert counters[COMMITTED_BYTES] == view.committed_mb * MB
    assert counters[MAXIMUM_MEMORY] == 1024  # static VM: its fixed size
    assert proc.stdout_path.parent.parent == guest.directory  # output kept in the guest
    merged = guest.start_process(
        py("import sys; print('out', flush=True); print('err', file=sys.stderr)"),
        merge_output=True,
    )
    merged.wait(10)
    assert merged.output() == "out\nerr\n"


def test_disks_carry_their_guest_os(clock: FakeClock, tmp_path: Path) -> None:
    template = "C:\\Templates\\ws2022.vhdx"
    with EmulatedHost("8GB", clock=clock, guest_root=tmp_path, disks={template: "windows"}) as host:
        assert host.disk_os("c:/templates/WS2022.VHDX") == "windows"
        host.add_disk("D:\\vm\\ubuntu.vhdx", "linux")
        assert host.disks() == {template: "windows", "D:\\vm\\ubuntu.vhdx": "linux"}
        assert host.remove_disk("d:\\VM\\ubuntu.vhdx")
        assert host.disk_os("D:\\vm\\ubuntu.vhdx") is None
        assert not host.remove_disk("D:\\vm\\ubuntu.vhdx")
        with pytest.raises(EmulatorError, match="freebsd"):
            host.add_disk("E:\\bsd.vhdx", "freebsd")


def test_copy_in_maps_guest_paths_into_the_guest_directory(
    host: EmulatedHost, clock: FakeClock, tmp_path: Path
) -> None:
    vm = running_vm(host, clock)
    guest = host.guest(vm)
    src = tmp_path / "tool.txt"
    src.write_text("payload")
    win = guest.copy_in(src, "C:\\Tools\\tool.txt")
    assert win == guest.directory / "C" / "Tools" / "tool.txt"
    assert guest.copy_in(src, "/opt/app/").read_text() == "payload"
    assert guest.copy_in(src, "rel/x.txt") == guest.directory / "rel" / "x.txt"
    with pytest.raises(GuestError):
        guest.copy_in(src, "../escape.txt")
    proc = guest.start_process(["cat", "tool.txt"], cwd="C:\\Tools")
    proc.wait(10)
    assert proc.output() == "payload"


CHILD_SPAWNER = (
    "import signal, subprocess, sys, time;"
    "signal.signal(signal.SIGTERM, lambda *_: print('TERM', flush=True))"
    " if 'stubborn' in sys.argv else None;"
    "c = subprocess.Popen(['sleep', '60']); print(c.pid, flush=True); time.sleep(60)"
)


def _child_pid(proc: LocalProcess) -> int:
    """The host's pid of the app's `sleep` child (the app prints its guest pid, which is the
    guest's own PID namespace's where the machine allows one)."""
    wait_until(lambda: proc.output().strip(), 10, "the child's pid")
    children = [p.pid for p in proc.tree() if p.name() == "sleep"]
    assert len(children) == 1
    return children[0]


def test_stopping_a_vm_stops_its_processes_and_their_children(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = running_vm(host, clock)
    proc = host.guest(vm).start_process(py(CHILD_SPAWNER))
    child = _child_pid(proc)
    stats = proc.stats()
    assert stats.processes == 2 and stats.working_set_bytes > 0
    assert 0 < stats.private_bytes <= stats.working_set_bytes
    host.stop(vm)
    assert gone(proc.pid) and gone(child)
    assert proc.exit_code == -15  # SIGTERM: a graceful shutdown

    host.start(vm)
    advance(host, clock, 0.5)
    stubborn = host.guest(vm).start_process([*py(CHILD_SPAWNER), "stubborn"])
    child = _child_pid(stubborn)
    host.stop(vm, turn_off=True)  # no grace: SIGKILL even for a process ignoring SIGTERM
    assert gone(stubborn.pid) and gone(child)
    assert stubborn.exit_code == -9
    assert "TERM" not in stubborn.output()  # never asked to end first: no grace waited out


def test_closing_the_host_leaves_no_orphans(clock: FakeClock, tmp_path: Path) -> None:
    host = EmulatedHost("8GB", clock=clock, guest_root=tmp_path)
    vm = running_vm(host, clock)
    proc = host.guest(vm).start_process(py(CHILD_SPAWNER))
    child = _child_pid(proc)
    host.close()
    assert gone(proc.pid) and gone(child)


def test_saving_a_vm_freezes_its_processes(host: EmulatedHost, clock: FakeClock) -> None:
    vm = running_vm(host, clock)
    proc = host.guest(vm).start_process(py("print('up', flush=True); import time; time.sleep(60)"))
    wait_until(lambda: proc.output() == "up\n", 10, "the process to start")
    status = lambda: psutil.Process(proc.pid).status()  # noqa: E731
    host.save(vm)
    wait_until(lambda: status() == psutil.STATUS_STOPPED, 5, "SIGSTOP")
    host.start(vm)
    wait_until(lambda: status() != psutil.STATUS_STOPPED, 5, "SIGCONT")
    assert proc.running


# -- published view ------------------------------------------------------------------------
def test_meminfo_is_rewritten_in_place_and_the_counters_are_replaced_whole(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = running_vm(host, clock, guest_os="windows")
    guest = host.guest(vm)
    meminfo, counters = guest.meminfo_path, guest.counters_path
    inode, size = meminfo.stat().st_ino, meminfo.stat().st_size
    profile = WindowsProfile()
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        lines = len(meminfo.read_text().splitlines())
        while not stop.is_set():
            text = meminfo.read_text()
            if len(text.splitlines()) != lines or not text.endswith("kB\n"):
                bad.append(text)
            try:
                json.loads(counters.read_text())
            except ValueError as exc:
                bad.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            guest.publish(profile.view(700 + 37 * i, 512 + 1000 * (i % 7), 8000, 10 ** (i % 6)))
    finally:
        stop.set()
        thread.join()
    assert bad == []
    # The bind mount over the guest's /proc/meminfo pins its inode; its lines keep their width.
    assert (meminfo.stat().st_ino, meminfo.stat().st_size) == (inode, size)
    assert [p.name for p in counters.parent.glob(".*")] == []


overlay_expected = sys.platform.startswith("linux") and bool(shutil.which("unshare"))


@pytest.mark.skipif(not overlay_expected, reason="needs Linux with unshare")
def test_proc_meminfo_is_the_guests_own_view(host: EmulatedHost, clock: FakeClock) -> None:
    mode = meminfo_overlay()
    if os.geteuid() != 0 and mode is Overlay.NONE:
        skip_without("root", why="no root and no unprivileged user namespaces here")
    assert mode is not Overlay.NONE
    vm = running_vm(host, clock, guest_os="linux")
    host.set_memory(
        vm, MemoryChange(startup=2 * GB)
    )  # Runtime Memory Resize: the guest sees 2 GB now
    code = (
        "import psutil; print(psutil.virtual_memory().total); print(open('/proc/meminfo').read())"
    )
    proc = host.guest(vm).start_process(py(code))
    assert proc.wait(20) == 0, proc.errors()
    total, _, meminfo = proc.output().partition("\n")
    assert int(total) == 2 * GB
    assert meminfo.strip() == host.guest(vm).meminfo_path.read_text().strip()
    free = host.guest(vm).start_process(["free", "-m"])
    if shutil.which("free"):
        free.wait(10)
        assert free.output().splitlines()[1].split()[1] == "2048"


# -- the whole loop, in real time ----------------------------------------------------------
GUEST_APP = """
import json, sys
size = int(sys.argv[1]) << 20
held = None
def meminfo():
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.split():
                values[key] = int(rest.split()[0])
    return values
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "alloc":
        held = bytearray(size)
        held[::4096] = b"\\x01" * len(range(0, size, 4096))  # touch every page
        print("allocated", flush=True)
    elif command == "free":
        held = None
        print("freed", flush=True)
    elif command == "meminfo":
        print("meminfo " + json.dumps(meminfo()), flush=True)
"""


def _said(proc: LocalProcess, word: str) -> bool:
    return any(line == word for line in proc.output().splitlines())


def _inside_meminfo(proc: LocalProcess) -> dict[str, int]:
    """Ask the app for /proc/meminfo as it sees it; returns the newest answer."""
    count = proc.output().count("meminfo ")
    proc.send("meminfo\n")
    wait_until(lambda: proc.output().count("meminfo ") > count, 10, "the app's meminfo")
    last = [line for line in proc.output().splitlines() if line.startswith("meminfo ")][-1]
    return {k: int(v) for k, v in json.loads(last.removeprefix("meminfo ")).items()}


def _file_meminfo(path: Path) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values


def test_a_guest_shows_what_its_programs_take_between_the_hosts_passes(tmp_path: Path) -> None:
    """The guest's own counters are the kernel's, live: with a host that balances only every
    5 s, a program's 300 MB shows in the guest's MemAvailable within a second, while the host
    still has the demand of its last pass (issue #21: with realistic timings the view was a
    second old, and a load outran it into the OOM killer)."""
    app = tmp_path / "guest_app.py"
    app.write_text(GUEST_APP)
    timings = Timings(tick=5.0, boot=0.1, quiet_after_boot=60.0, guest_refresh=0.1)
    host = EmulatedHost("16GB", reserve="1GB", timings=timings, guest_root=tmp_path / "guests")
    with host, HostDriver(host) as driver:
        vm = host.new_vm("linux-vm", "2GB", guest_os="linux").id
        host.start(vm)
        guest = host.guest(vm)
        wait_until(lambda: host.get_vm(vm).heartbeat is Heartbeat.OkApplicationsUnknown, 5, "boot")
        proc = guest.start_process(
            [sys.executable, str(guest.copy_in(app, "/opt/app/guest_app.py")), "300"], stdin=True
        )
        wait_until(lambda: _said(proc, "ready"), 10, "app ready")
        wait_until(lambda: guest.view is not None, 5, "a first view")
        before, ticks, demand = (
            guest.view.available_mb,
            driver.ticks,
            host.memory(vm).guest_demand_mb,
        )
        proc.send("alloc\n")
        wait_until(lambda: _said(proc, "allocated"), 10, "alloc")
        wait_until(
            lambda: guest.view.available_mb <= before - 250, 1.0, "the guest to show the 300 MB"
        )
        assert driver.ticks == ticks, "the host made a pass: the test proves nothing"
        assert host.memory(vm).guest_demand_mb == demand


def test_real_processes_are_hot_added_then_ballooned_away(tmp_path: Path) -> None:
    """A Linux and a Windows guest each run a real process that allocates 500 MB and frees
    it: the host hot-adds, then balloons, and each guest's view follows its OS's rules."""
    overlay = meminfo_overlay() is not Overlay.NONE
    app = tmp_path / "guest_app.py"
    app.write_text(GUEST_APP)
    host = EmulatedHost(
        "16GB",
        reserve="1GB",
        timings=Timings.fast(),
        guest_root=tmp_path / "guests",
        linux_profile=LinuxProfile(baseline_commit_mb=250),
        windows_profile=WindowsProfile(baseline_commit_mb=750),
    )
    with host, HostDriver(host) as driver:
        vms = {}
        for os_name in ("linux", "windows"):
            vm = host.new_vm(f"{os_name}-vm", "1GB", guest_os=os_name).id
            host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
            host.start(vm)
            vms[os_name] = vm
        wait_until(
            lambda: all(
                host.get_vm(v).heartbeat is Heartbeat.OkApplicationsUnknown for v in vms.values()
            ),
            5,
            "both VMs running",
        )
        lin_guest, win_guest = host.guest(vms["linux"]), host.guest(vms["windows"])
        lin_app = lin_guest.copy_in(app, "/opt/app/guest_app.py")
        win_app = win_guest.copy_in(app, "C:\\app\\guest_app.py")
        procs = {
            "linux": lin_guest.start_process([sys.executable, str(lin_app), "500"], stdin=True),
            "windows": win_guest.start_process([sys.executable, str(win_app), "500"], stdin=True),
        }
        wait_until(lambda: all(_said(p, "ready") for p in procs.values()), 10, "apps ready")
        start = {os_name: host.memory(vm) for os_name, vm in vms.items()}

        for proc in procs.values():
            proc.send("alloc\n")
        wait_until(lambda: all(_said(p, "allocated") for p in procs.values()), 10, "alloc")

        def hot_added(os_name: str) -> bool:
            mem = host.memory(vms[os_name])
            baseline = 250 if os_name == "linux" else 750
            return (
                mem.guest_demand_mb >= baseline + 500
                and mem.add_operations > start[os_name].add_operations
                and mem.assigned_mb >= start[os_name].assigned_mb + 256
                and mem.assigned_mb >= mem.guest_demand_mb
            )

        wait_until(lambda: hot_added("linux") and hot_added("windows"), 10, "hot-add")
        peak = {os_name: host.memory(vm) for os_name, vm in vms.items()}
        wait_until(
            lambda: (
                _file_meminfo(lin_guest.meminfo_path)["MemTotal"]
                == host.memory(vms["linux"]).assigned_mb * 1024
            ),
            5,
            "the Linux meminfo file to show the hot-added memory",
        )
        lin_peak_total = _file_meminfo(lin_guest.meminfo_path)["MemTotal"]
        assert lin_peak_total >= (start["linux"].assigned_mb + 256) * 1024
        if overlay:
            assert _inside_meminfo(procs["linux"])["MemTotal"] >= lin_peak_total - 128 * 1024

        for proc in procs.values():
            proc.send("free\n")
        wait_until(lambda: all(_said(p, "freed") for p in procs.values()), 10, "free")
        win_available_seen: list[float] = []

        def ballooned(os_name: str) -> bool:
            mem = host.memory(vms[os_name])
            high = max(peak[os_name].assigned_mb, host.memory(vms[os_name]).high_water_mb)
            return mem.remove_operations > peak[os_name].remove_operations and (
                mem.assigned_mb <= high - 384
            )

        def watch_windows() -> bool:
            counters = json.loads(win_guest.counters_path.read_text())
            win_available_seen.append(counters[AVAILABLE_MBYTES])
            return ballooned("linux") and ballooned("windows")

        wait_until(watch_windows, 15, "balloon removal in both guests")
        seen: list[tuple[int, float]] = []

        def caught_up() -> bool:
            """The removal is over (nothing moved for 20 checks, 1 s: four balancer passes)
            and the Windows counters file shows the guest's view of that state."""
            view = host.guest_view(vms["windows"])
            if view is None:
                return False
            available = json.loads(win_guest.counters_path.read_text())[AVAILABLE_MBYTES]
            seen.append((host.memory(vms["windows"]).assigned_mb, available))
            return len(seen) >= 20 and len(set(seen[-20:])) == 1 and available == view.available_mb

        wait_until(caught_up, 15, "the Windows guest to settle and its counters file to catch up")

        # Linux: MemTotal follows assigned memory down (§5.4)
        lin_mem = host.memory(vms["linux"])
        lin_total = _file_meminfo(lin_guest.meminfo_path)["MemTotal"]
        assert lin_total < lin_peak_total
        if overlay:
            assert _inside_meminfo(procs["linux"])["MemTotal"] < lin_peak_total

        # Windows: the total is a high-water mark; ballooned memory is in use (§4.4)
        win_mem = host.memory(vms["windows"])
        counters = json.loads(win_guest.counters_path.read_text())
        assert counters[TOTAL_PHYSICAL] == win_mem.high_water_mb * MB
        assert win_mem.high_water_mb >= peak["windows"].assigned_mb > win_mem.assigned_mb
        assert counters[AVAILABLE_MBYTES] < max(win_available_seen)
        assert counters[AVAILABLE_MBYTES] <= win_mem.assigned_mb - 750
        if overlay:
            assert _inside_meminfo(procs["windows"])["MemTotal"] == win_mem.high_water_mb * 1024

        for mem in (lin_mem, win_mem):
            assert mem.added_mb - mem.removed_mb == mem.assigned_mb - 1024
        assert driver.last_error is None
    assert all(gone(p.pid) for p in procs.values())
    assert not driver.running
