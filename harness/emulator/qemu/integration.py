"""What a QEMU guest's Hyper-V integration services publish, where the preflight looks
(reference §5.1, §5.2, §1.8): the facts /sys/module/hv_balloon would hold are mounted over
/sys/module (this kernel balloons with virtio instead); the onlining policy is the kernel's own
file, written for real (the kernel boots with memhp_default_state=online_movable, which the
default reports); the KVP daemon is a process named hv_kvp_daemon.
"""

from __future__ import annotations

import signal

from harness.emulator.integration import KVP_DAEMON, LinuxIntegration
from harness.emulator.qemu.errors import QemuError
from harness.emulator.qemu.launcher import GUEST_SCRATCH, QemuVm

PUBLISH = """
grep -q ' /sys/module ' /proc/mounts || mount --bind "$1" /sys/module || exit 1
echo "$2" > /sys/devices/system/memory/auto_online_blocks
"""


def publish_integration(
    vm: QemuVm, integration: LinuxIntegration, kvp_pid: int | None
) -> int | None:
    """Make the guest show `integration` (files rewritten in place on the scratch share, seen
    at once through the mount) and start or stop its KVP daemon; the daemon's pid."""
    integration.publish(vm.share_dir / ".dmh" / "integration")
    root = f"{GUEST_SCRATCH}/.dmh/integration"
    done = vm.agent.exec(
        ["sh", "-c", PUBLISH, "sh", f"{root}/module", integration.auto_online], timeout=10.0
    )
    if done.rc != 0:
        raise QemuError(f"publishing failed: {done.stderr.strip()}", vm=vm.spec.name)
    if integration.kvp_daemon and kvp_pid is None:
        answer = vm.agent.request(
            "spawn", 10.0, argv=[f"{root}/bin/{KVP_DAEMON}", "infinity"], env={}, cwd="/",
            stdout="/dev/null", stderr="/dev/null",
        )  # fmt: skip
        return int(answer["pid"]) if "pid" in answer else None
    if not integration.kvp_daemon and kvp_pid is not None:
        vm.agent.request("signal", 10.0, pid=kvp_pid, sig=signal.SIGKILL)
        vm.agent.request("wait", 10.0, pid=kvp_pid, timeout=5)  # reaped: gone from /proc
        return None
    return kvp_pid
