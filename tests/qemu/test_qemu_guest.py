"""Real-kernel guests: the emulated host's Linux VMs as QEMU VMs (harness/emulator/qemu).

Each test boots a real kernel under QEMU (5–9 s under TCG), so they run one at a time and
only where qemu-system-x86_64, busybox-static and qemu.qmp are installed. The DM model
(the balancer, ticking on a HostDriver) decides; the guest kernel's own figures are checked.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import psutil
import pytest

from harness.config import Secret
from harness.emulator import owner
from harness.emulator.guestface import OOM_KILL
from harness.emulator.host import EmulatedHost, HostDriver, VMState
from harness.emulator.integration import LinuxIntegration
from harness.emulator.qemu import launcher
from harness.emulator.qemu.errors import QemuBootError
from harness.emulator.qemu.guest import QemuGuest
from harness.emulator.qemu.launcher import QemuVm, VmSpec, available
from harness.emulator.ssh import GuestSSH
from harness.hyperv.guest import Guest
from harness.hyperv.ssh import SSHChannel, SSHTarget
from harness.settings import MemoryChange
from tests.requires import needs

REASON = available()
# One worker runs the QEMU tests one at a time (--dist loadgroup): each boots a real kernel
# under TCG, and two at once on a 2-core runner starve each other.
pytestmark = [
    needs("qemu", missing=None if REASON is None else f"QEMU backend unavailable: {REASON}"),
    pytest.mark.xdist_group("qemu"),
]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def host() -> Iterator[EmulatedHost]:
    with EmulatedHost("16GB", guest_os="linux", guest_backend="qemu") as emulated:
        yield emulated


def start_vm(
    host: EmulatedHost, startup: str, minimum: str, maximum: str, *, drive: bool = True
) -> tuple[QemuGuest, HostDriver | None]:
    vm = host.new_vm("real-kernel", startup)
    host.set_memory(vm.id, MemoryChange(dynamic=True, minimum=minimum, maximum=maximum))
    host.start(vm.id)
    guest = host.guest(vm.id)
    assert isinstance(guest, QemuGuest)
    guest.wait_booted()
    driver = HostDriver(host).start() if drive else None
    wait_until(lambda: host.get_vm(vm.id).state is VMState.Running, 10, "Running")
    return guest, driver


def meminfo_mb(guest: QemuGuest) -> dict[str, int]:
    rc, out, err = guest.run(["cat", "/proc/meminfo"])
    assert rc == 0, err
    fields = {}
    for line in out.splitlines():
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) // 1024
    return fields


def runtimes_total_mb(guest: QemuGuest) -> dict[str, int]:
    """MemTotal as three consumers read it inside the guest: /proc/meminfo, sysconf, Node."""
    script = "import os; print(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 20)"
    rc, sysconf, err = guest.run([sys.executable, "-c", script])
    assert rc == 0, err
    seen = {"meminfo": meminfo_mb(guest)["MemTotal"], "sysconf": int(sysconf)}
    node = shutil.which("node")
    if node:
        rc, out, err = guest.run([node, "-e", "console.log(require('os').totalmem() >> 20)"])
        assert rc == 0, err
        seen["node"] = int(out)
    return seen


def test_boot_agent_and_files(host: EmulatedHost) -> None:
    guest, _ = start_vm(host, "1GB", "512MB", "2GB", drive=False)
    vm = guest.vm
    assert vm is not None and vm.running
    assert vm.boot_seconds > 0
    # The agent: exit codes and both streams pass through; stdin reaches the command.
    rc, out, err = guest.run(
        ["sh", "-c", "read x; echo out-$x; echo err >&2; exit 42"], stdin="7\n"
    )
    assert (rc, out, err) == (42, "out-7\n", "err\n")
    # Concurrent requests are answered independently (the slow one does not hold the fast).
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(guest.run, ["sleep", "2"])
        fast = [pool.submit(guest.run, ["echo", str(i)]) for i in range(3)]
        assert [f.result(timeout=20)[1] for f in fast] == ["0\n", "1\n", "2\n"]
        assert not slow.done()
        assert slow.result(timeout=20)[0] == 0
    assert guest.run(["sleep", "5"], timeout=0.5)[0] == 124
    # A real kernel, with the host's root shared read-only and only /dmh writable.
    rc, out, _ = guest.run(["uname", "-r"])
    assert out.strip() == vm.image.kernel_version
    assert guest.run(["touch", "/usr/dmh-probe"])[0] != 0
    guest.copy_in(__file__, "apps/")
    rc, out, _ = guest.run(["wc", "-c", "/dmh/apps/" + Path(__file__).name])
    assert int(out.split()[0]) == Path(__file__).stat().st_size
    # A program's output comes back through the scratch directory; unknown programs fail.
    program = guest.start_process(["sh", "-c", "echo hello; exit 3"])
    assert program.wait(30) == 3
    assert program.output() == "hello\n"
    with pytest.raises(Exception, match="not recognized"):
        guest.start_process(["no-such-program-dmh"])
    check_ssh_sessions_run_through_the_agent(guest)
    # The integration facts a Hyper-V Linux guest shows (§5.1, §5.2, §1.8), as the
    # preflight reads them; switching one off is seen at once.
    facts = (
        "ls /sys/module/hv_balloon/parameters; "
        "cat /sys/devices/system/memory/auto_online_blocks /proc/[0-9]*/comm"
    )
    out = guest.run(["sh", "-c", facts])[1].split()
    assert {"hot_add", "online_movable", "hv_kvp_daemon"} <= set(out)
    off = LinuxIntegration(hv_balloon=False, kvp_daemon=False, auto_online="offline")
    guest.set_integration(off)
    out = guest.run(["sh", "-c", facts])[1].split()
    assert "offline" in out and "hot_add" not in out and "hv_kvp_daemon" not in out
    # Off: QEMU exits and its scratch directory goes.
    scratch, pid = vm.scratch, vm.pid
    host.stop(host.find_vms("real-kernel")[0].id, turn_off=True)
    wait_until(lambda: not scratch.exists(), 15, "the scratch directory removed")
    assert pid is not None and not Path(f"/proc/{pid}").exists()


def check_ssh_sessions_run_through_the_agent(guest: QemuGuest) -> None:
    """The emulator's sshd for a QEMU guest: a command and a shell session run in the real
    kernel, with stdin in order, stdout and stderr apart, the exit code, and bytes exact."""
    ssh = GuestSSH("guest", "pw")
    endpoint = ssh.serve("vm", lambda: guest)

    async def session() -> tuple[asyncssh.SSHCompletedProcess, asyncssh.SSHCompletedProcess]:
        keys = asyncssh.import_known_hosts(f"[127.0.0.1]:{endpoint.port} {endpoint.host_key}")
        async with asyncssh.connect(
            "127.0.0.1", endpoint.port, username="guest", password="pw", known_hosts=keys
        ) as conn:
            payload = bytes(range(256)) * 2000  # 512 kB, every byte value, through stdin
            command = await conn.run(
                "uname -r; wc -c; echo to-stderr >&2; exit 7", input=payload, encoding=None
            )
            shell = await conn.run(input="x=41\necho $((x + 1)) $$\nexit 0\n")
            return command, shell

    try:
        command, shell = asyncio.run(session())
    finally:
        ssh.close()
    vm = guest.vm
    assert vm is not None
    assert command.exit_status == 7
    assert command.stdout.split() == [vm.image.kernel_version.encode(), b"512000"]
    assert command.stderr == b"to-stderr\n"
    answer, pid = str(shell.stdout).split()
    assert answer == "42" and int(pid) < 10000  # a pid of the guest's kernel, not the host's
    assert shell.exit_status == 0


def test_hot_add_seen_by_meminfo_sysconf_and_node(host: EmulatedHost) -> None:
    guest, driver = start_vm(host, "512MB", "512MB", "2GB")
    assert driver is not None
    try:
        before = runtimes_total_mb(guest)
        # Demand rises: 500 MB committed by a real process; the model hot-adds.
        # (in 10 MB pieces: the kernel's overcommit heuristic refuses one piece above its RAM)
        commit = "import time; b = [bytearray(10 << 20) for _ in range(50)]; time.sleep(600)"
        hog = guest.start_process([sys.executable, "-c", commit])
        wait_until(
            lambda: guest.view is not None and guest.view.assigned_mb >= 800, 60, "a hot-add"
        )
        vm = guest.vm
        assert vm is not None and vm.qmp.plugged_mb() > 0
        wait_until(lambda: meminfo_mb(guest)["MemTotal"] - before["meminfo"] >= 250, 10, "MemTotal")
        # The model may still be adding: take readings once all readers agree (one block).
        seen: list[dict[str, int]] = []
        wait_until(
            lambda: (
                seen.append(runtimes_total_mb(guest))
                or max(seen[-1].values()) - min(seen[-1].values()) <= 2
            ),
            60,
            "meminfo, sysconf and Node agreeing",
        )
        after = seen[-1]
        print(json.dumps({"before": before, "after": after}))
        for reader, total in after.items():
            assert total - before[reader] >= 250, (reader, before, after)
        assert hog.running
    finally:
        driver.stop()


def test_balloon_removal_lowers_memtotal(host: EmulatedHost) -> None:
    guest, driver = start_vm(host, "1GB", "512MB", "2GB")
    assert driver is not None
    try:
        start_total = meminfo_mb(guest)["MemTotal"]
        # Idle: the model balloons the VM down towards its minimum, through virtio-balloon.
        # (idle demand: the idle OS's commit plus the balloon floor, §5.3, and the buffer)
        wait_until(
            lambda: guest.view is not None and guest.view.assigned_mb <= 750, 60, "balloon removal"
        )
        wait_until(lambda: meminfo_mb(guest)["MemTotal"] <= start_total - 250, 20, "MemTotal drop")
        view = guest.view
        assert view is not None and view.ballooned_mb >= 250
        assert view.total_mb <= start_total - 250
        # Host and guest agree on how much the VM has (QMP's figure), within a tick's step.
        record = host.get_vm(host.find_vms("real-kernel")[0].id)
        assert abs(record.memory_assigned // (1 << 20) - view.assigned_mb) <= 130
    finally:
        driver.stop()


def test_removal_below_the_hot_added_memory(host: EmulatedHost) -> None:
    """Hot-added memory is removed by the balloon (§3.4), but QEMU's balloon reaches only
    the boot memory: a target below what is plugged must still land, and the VM stay
    watched (a rejected balloon request once ended the watch and froze the view)."""
    guest, _ = start_vm(host, "1GB", "512MB", "2GB", drive=False)
    base = meminfo_mb(guest)["MemTotal"]
    guest.request_memory(1536)
    wait_until(lambda: meminfo_mb(guest)["MemTotal"] >= base + 500, 30, "the hot-add")
    guest.request_memory(512)  # below the 512 MB plugged on top of the 1 GB boot memory
    wait_until(lambda: meminfo_mb(guest)["MemTotal"] <= base - 500, 60, "removal to 512 MB")
    wait_until(lambda: guest.view is not None and guest.view.assigned_mb <= 512 + 4, 10, "the view")
    guest.request_memory(1024)
    wait_until(lambda: meminfo_mb(guest)["MemTotal"] >= base - 12, 30, "memory given back")
    wait_until(
        lambda: guest.view is not None and guest.view.assigned_mb >= 1024 - 4, 10, "the view"
    )


def test_oom_kill_recorded_when_ballooned_below_use(host: EmulatedHost) -> None:
    """The app is started as the suites start it (the client's guest operations over SSH,
    the emulator's sshd, the agent); the kernel's OOM kill reaches both the emulated host's
    record and the client, which reads it from the guest's kernel log."""
    guest, _ = start_vm(host, "1GB", "512MB", "1GB", drive=False)
    ssh = GuestSSH("guest", "pw")
    endpoint = ssh.serve("vm", lambda: guest)
    target = SSHTarget(
        endpoint.address, endpoint.port, "guest", Secret("pw"), host_keys=(endpoint.host_key,)
    )
    channel = SSHChannel(target)
    touch = (
        "import time\nb = [bytearray(b'x' * (10 << 20)) for _ in range(60)]\n"
        "print('held', flush=True)\ntime.sleep(600)"
    )
    try:
        hog = Guest(channel).start_process(sys.executable, ["-c", touch])
        wait_until(lambda: "held" in (hog.poll() and hog.output), 60, "the app holding 600 MB")
        # Below what the app holds: without deflate-on-oom the balloon wins and the kernel kills.
        guest.request_memory(384)
        wait_until(lambda: guest.memory_events(), 60, "an OOM kill")
        event = guest.memory_events()[0]
        assert event.kind == OOM_KILL
        assert event.message == f"the guest OOM-killed {event.process}"
        assert event.process.startswith("python")
        # The app itself, the child of start-process's wrapper (hog.pid, its session)
        assert channel.execute(f"cat {hog.key}/app").stdout.decode().strip() == str(event.pid)
        wait_until(lambda: not hog.poll().running, 10, "the exit")
        result = hog.poll()
        assert result.exit_code == 128 + 9  # SIGKILL, as a POSIX shell reports it
        assert hog.memory_event == event.message
    finally:
        channel.close()
        ssh.close()


def test_boot_failure_carries_the_serial_console() -> None:
    # Too little time to boot: the error names the VM and shows what the console printed,
    # and the VM leaves no process and no files.
    def scratch_dirs() -> set[Path]:  # not the image build another process may be doing
        return {p for p in Path("/tmp").glob("dmh-qemu-*") if "-build-" not in p.name}

    before = scratch_dirs()
    with pytest.raises(QemuBootError) as caught:
        QemuVm(VmSpec("too-slow", 512, 0, boot_timeout=1.5, kvm_timeout=1.5))
    assert "--- last lines of the serial console ---" in str(caught.value)
    assert caught.value.vm == "too-slow"
    assert scratch_dirs() <= before


def test_stale_scratch_directories_are_removed_and_no_other(tmp_path: Path) -> None:
    """Scratch directories carry their owner (pid, start time) in their name: a dead owner's
    is removed, a live one's (another worker's VM being made) and an image build are kept."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = psutil.Process(gone.pid)
    dead_tag = f"{gone.pid}-{int(dead.create_time() * 100)}"  # as owner.tag() names it
    gone.wait()
    made = {
        "stale": Path(tempfile.mkdtemp(prefix=f"dmh-qemu-{dead_tag}-", dir=tmp_path)),
        "live": Path(tempfile.mkdtemp(prefix=f"dmh-qemu-{owner.tag()}-", dir=tmp_path)),
        "build": Path(tempfile.mkdtemp(prefix="dmh-qemu-build-", dir=tmp_path)),
    }
    launcher.reap_stale_scratch(tmp_path)
    assert {name for name, path in made.items() if path.exists()} == {"live", "build"}
