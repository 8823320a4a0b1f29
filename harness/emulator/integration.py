"""What a Linux guest's integration services publish where its programs (and the harness's
preflight) look: /sys/module/hv_balloon with its parameters (reference §5.1), the hot-add
onlining policy in /sys/devices/system/memory/auto_online_blocks (§5.2), and a running KVP
daemon (§1.8). A test switches one off to see a guest that cannot do Dynamic Memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SettingError

KVP_DAEMON = "hv_kvp_daemon"
_ONLINE_POLICIES = ("online", "online_kernel", "online_movable", "offline")
# The Hyper-V modules a Linux guest has loaded (hv_utils carries KVP, shutdown, timesync).
_MODULES = ("hv_vmbus", "hv_utils", "hv_netvsc", "hv_storvsc")


@dataclass(frozen=True)
class LinuxIntegration:
    """The integration-services facts of one emulated Linux guest."""

    hv_balloon: bool = True
    hot_add: bool = True
    pressure_report_delay: int = 45
    auto_online: str = "online"
    kvp_daemon: bool = True

    def __post_init__(self) -> None:
        if self.auto_online not in _ONLINE_POLICIES:
            raise SettingError("auto_online", self.auto_online, f"one of {_ONLINE_POLICIES}")

    def publish(self, root: Path) -> list[tuple[Path, str]]:
        """Write the facts under `root` (rewritten in place, so bind mounts see changes) and
        return (host path, guest path) pairs to mount over the guest's own."""
        modules = root / "module"
        modules.mkdir(parents=True, exist_ok=True)
        for name in _MODULES:
            (modules / name).mkdir(exist_ok=True)
        balloon = modules / "hv_balloon"
        if self.hv_balloon:
            params = balloon / "parameters"
            params.mkdir(parents=True, exist_ok=True)
            (params / "hot_add").write_text("Y\n" if self.hot_add else "N\n")
            (params / "pressure_report_delay").write_text(f"{self.pressure_report_delay}\n")
        else:
            shutil.rmtree(balloon, ignore_errors=True)
        online = root / "auto_online_blocks"
        _rewrite(online, f"{self.auto_online}\n")
        daemon = root / "bin" / KVP_DAEMON
        daemon.parent.mkdir(exist_ok=True)
        if not daemon.exists():
            # Its name is what `ps` and /proc/PID/comm show: a long sleep named as the daemon.
            os.symlink(shutil.which("sleep") or "/bin/sleep", daemon)
        return [
            (modules, "/sys/module"),
            (online, "/sys/devices/system/memory/auto_online_blocks"),
        ]


def _rewrite(path: Path, text: str) -> None:
    """Rewrite in place (same inode: a file bind-mounted into a guest keeps showing it)."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return
    with open(path, "w") as stream:
        stream.write(text)
