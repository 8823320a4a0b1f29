"""The fallback for machines without the guest sandbox's namespaces: each guest process gets
the guest's meminfo as its /proc/meminfo through its own mount namespace, as root or through
an unprivileged user namespace where the machine allows one.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

ENV_MEMINFO = "DMH_GUEST_MEMINFO"
ENV_COUNTERS = "DMH_GUEST_COUNTERS"


# -- /proc/meminfo overlay ----------------------------------------------------------------
class Overlay(enum.Enum):
    """How processes in a guest get their own /proc/meminfo."""

    NONE = "none"  # files and environment variables only
    ROOT = "root"  # unshare --mount as root
    USER_NAMESPACE = "userns"  # unshare --user --map-root-user --mount (unprivileged)


_OVERLAY_SCRIPT = (
    'm=$1; shift; mount --bind "$m" /proc/meminfo'
    ' || echo "dmh-guest: cannot overlay /proc/meminfo" >&2; exec "$@"'
)
_OVERLAY_PREFIX: dict[Overlay, tuple[str, ...]] = {
    Overlay.ROOT: ("unshare", "--mount", "--propagation", "private", "--"),
    Overlay.USER_NAMESPACE: (
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
    ),
}
_overlay_lock = threading.Lock()
_overlay_mode: Overlay | None = None


def meminfo_overlay() -> Overlay:
    """Whether this OS lets a guest's processes see its meminfo as /proc/meminfo: found out
    once per process by trying it; logged once when it cannot be done."""
    global _overlay_mode
    with _overlay_lock:
        if _overlay_mode is None:
            _overlay_mode = _probe_overlay()
            if _overlay_mode is Overlay.NONE:
                log.warning(
                    "cannot overlay /proc/meminfo in emulated guests (needs Linux with"
                    " unshare and root or unprivileged user namespaces); guest programs read"
                    " the guest's memory from $%s and $%s instead",
                    ENV_MEMINFO,
                    ENV_COUNTERS,
                )
            else:
                log.info("emulated guests get their own /proc/meminfo (%s)", _overlay_mode.value)
        return _overlay_mode


def _probe_overlay() -> Overlay:
    if not sys.platform.startswith("linux") or not (shutil.which("unshare") and shutil.which("sh")):
        return Overlay.NONE
    modes = [Overlay.ROOT] if os.geteuid() == 0 else []
    modes.append(Overlay.USER_NAMESPACE)
    marker = "DmhOverlayProbe:   1 kB"
    with tempfile.TemporaryDirectory(prefix="dmh-probe-") as tmp:
        probe = Path(tmp, "meminfo")
        probe.write_text(f"MemTotal: 1 kB\n{marker}\n")
        for mode in modes:
            argv = [*overlay_command(mode, probe), "cat", "/proc/meminfo"]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError) as exc:
                log.debug("overlay probe %s failed: %s", mode.value, exc)
                continue
            if done.returncode == 0 and marker in done.stdout and not done.stderr:
                return mode
            log.debug("overlay probe %s: rc=%s %s", mode.value, done.returncode, done.stderr)
    return Overlay.NONE


def overlay_command(mode: Overlay, meminfo: Path) -> list[str]:
    return [*_OVERLAY_PREFIX[mode], "sh", "-c", _OVERLAY_SCRIPT, "dmh-guest", str(meminfo)]
