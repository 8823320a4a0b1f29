"""One running guest's containment: its own PID, network and mount namespaces (held by a guest
init that dies with the emulator) and its own memory cgroup, whose limit follows the guest's
memory. Where the machine refuses either, the guest runs uncontained and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import re
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.emulator.errors import GuestError
from harness.emulator.process.sandbox.cgroup import Cgroup, CgroupRoot, CgroupUsage, find_root

log = logging.getLogger(__name__)

NOT_ENFORCED = "guest memory not enforced"
_INIT = Path(__file__).with_name("init.py")  # run as a script: standard library only

# Joins the process's cgroup, then enters the guest's namespaces (nsenter forks, so the
# program is in the guest's PID namespace) in its working directory.
_LAUNCH = (
    'if [ -n "$1" ]; then echo $$ >"$1" || exit 126; fi; p=$2; w=$3; shift 3;'
    ' if [ -n "$p" ]; then exec nsenter --target "$p" --pid --net --mount --wd="$w" -- "$@"; fi;'
    ' exec "$@"'
)


@dataclass(frozen=True)
class Support:
    """What this machine lets the emulator do for its guests (probed once per process)."""

    cgroup: CgroupRoot | None
    namespaces: bool
    warnings: tuple[str, ...]

    @property
    def enforced(self) -> bool:
        return self.cgroup is not None


_support_lock = threading.Lock()
_support: Support | None = None
# PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, and the emulator serves
# requests on short-lived threads: every guest init is started from this one thread.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmh-guest-spawner")
# Only this process holds the write end (not inherited: Popen closes other fds); each guest
# init sees end-of-file on the read end when the emulator is gone, however it died.
_watch_read, _watch_write = os.pipe()
_seq = itertools.count(1)


def support() -> Support:
    global _support
    with _support_lock:
        if _support is None:
            _support = _probe()
            for warning in _support.warnings:
                log.warning("%s", warning)
        return _support


def _probe() -> Support:
    warnings: list[str] = []
    if not sys.platform.startswith("linux"):
        return Support(None, False, (f"{NOT_ENFORCED}: not Linux ({sys.platform})",))
    root = find_root() if os.geteuid() == 0 else None
    if root is None:
        why = "not root" if os.geteuid() != 0 else "no writable memory cgroup"
        warnings.append(f"{NOT_ENFORCED}: {why}; guests run as plain processes")
    else:
        with contextlib.suppress(OSError):
            root.reap_stale()
    namespaces = os.geteuid() == 0 and _probe_namespaces()
    if not namespaces:
        warnings.append(
            "guest namespaces unavailable (needs root and nsenter): guest processes share the"
            " machine's PID and network namespaces and may outlive a killed emulator"
        )
    return Support(root, namespaces, tuple(warnings))


def _probe_namespaces() -> bool:
    if not _which("nsenter"):
        return False
    try:
        init = _GuestInit.start([])
    except (OSError, GuestError) as exc:
        log.debug("guest namespaces unavailable: %s", exc)
        return False
    init.stop()
    return True


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


_registered: set[Path] = set()


def _remove_at_exit(group: Cgroup) -> None:
    """This emulator's cgroups go when it exits normally; after a SIGKILL the next run
    reaps them (CgroupRoot.reap_stale)."""
    with _support_lock:
        if group.path in _registered:
            return
        _registered.add(group.path)

    def remove() -> None:
        with contextlib.suppress(OSError):
            group.destroy(timeout=2.0)

    atexit.register(remove)


class _GuestInit:
    """The guest's pid 1 (harness/emulator/process/sandbox/init.py) and the host pid to enter."""

    def __init__(self, popen: subprocess.Popen[bytes], inner_pid: int) -> None:
        self.popen = popen
        self.inner_pid = inner_pid

    @classmethod
    def start(cls, overlays: Sequence[tuple[Path, str]]) -> _GuestInit:
        return _spawner.submit(cls._start, overlays).result()

    @classmethod
    def _start(cls, overlays: Sequence[tuple[Path, str]]) -> _GuestInit:
        ready_read, ready_write = os.pipe()
        args = [a for source, target in overlays for a in (str(source), target)]
        try:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    str(_INIT),
                    str(_watch_read),
                    str(ready_write),
                    *args,
                ],
                pass_fds=(_watch_read, ready_write),
                env={"DMH_INIT_PARENT": str(os.getpid()), "PATH": os.defpath},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(ready_write)
        try:
            answer = _read_line(ready_read, timeout=15.0)
        finally:
            os.close(ready_read)
        if answer != "ready":
            popen.kill()
            popen.wait(5)
            raise GuestError(f"the guest's init did not start: {answer or 'no answer'}")
        inner = _only_child(popen.pid)
        return cls(popen, inner)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()  # its child, pid 1 of the guest, dies with it (PDEATHSIG)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def _read_line(fd: int, timeout: float) -> str:
    data = b""
    while b"\n" not in data:
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _only_child(pid: int) -> int:
    import psutil

    children = psutil.Process(pid).children()
    if len(children) != 1:
        raise GuestError(f"the guest's init {pid} has {len(children)} children, expected 1")
    return children[0].pid


class GuestSandbox:
    """A running guest's namespaces and memory cgroup; `close()` kills everything in it."""

    def __init__(self, name: str, overlays: Sequence[tuple[Path, str]]) -> None:
        self.support = support()
        self._lock = threading.Lock()
        self._init: _GuestInit | None = None
        self._group: Cgroup | None = None
        self._slots: list[Cgroup] = []
        self._limits: tuple[int, int, int | None] | None = None
        self.warnings: list[str] = list(self.support.warnings)
        root = self.support.cgroup
        if root is not None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "guest"
            owner = Cgroup(root.owner_group(), root.version)
            owner.enable_children()
            _remove_at_exit(owner)
            self._group = owner.child(f"{safe}-{next(_seq)}")
            self._group.enable_children()
        if self.support.namespaces:
            try:
                self._init = _GuestInit.start(overlays)
            except (OSError, GuestError) as exc:
                self.warnings.append(f"guest namespaces unavailable: {exc}")
                log.warning("guest %s: namespaces unavailable: %s", name, exc)

    @property
    def enforced(self) -> bool:
        return self._group is not None

    @property
    def namespaced(self) -> bool:
        return self._init is not None

    def command(self, argv: Sequence[str], workdir: Path) -> tuple[list[str], Cgroup | None]:
        """The command line that runs `argv` inside the guest, and the process's own cgroup."""
        slot: Cgroup | None = None
        if self._group is not None:
            with self._lock:
                slot = self._group.child(f"p{len(self._slots) + 1:04d}")
                if self._limits is not None:
                    slot.set_limit(self._limits[1], self._limits[2])
                self._slots.append(slot)
        init_pid = str(self._init.inner_pid) if self._init is not None else ""
        procs = str(slot.procs_file) if slot is not None else ""
        return ["sh", "-c", _LAUNCH, "dmh-guest", procs, init_pid, str(workdir), *argv], slot

    def set_limit(self, group_bytes: int, process_bytes: int, soft_bytes: int | None) -> bool:
        """What the guest's processes may hold together, and the limit each process's own
        group shows (what a container-aware runtime reads). False when a lowered limit
        cannot be applied yet (the memory is in use); it is tried again next time."""
        if self._group is None:
            return True
        limits = (group_bytes, process_bytes, soft_bytes)
        with self._lock:
            if self._limits == limits:
                return True
            done = True
            current = self._group.limit_bytes()
            if current is None or group_bytes >= current:
                done &= self._group.set_limit(group_bytes, soft_bytes)
            done &= all([s.set_limit(process_bytes, soft_bytes) for s in self._slots])
            if current is not None and group_bytes < current:
                done &= self._group.set_limit(group_bytes, soft_bytes)
            if done:
                self._limits = limits
            return done

    def usage(self) -> CgroupUsage | None:
        return self._group.usage() if self._group is not None else None

    def pids(self) -> list[int]:
        return self._group.pids() if self._group is not None else []

    def close(self) -> None:
        """The guest is off: every process in it dies, then its groups are removed."""
        if self._init is not None:
            self._init.stop()
        if self._group is not None:
            try:
                self._group.destroy()
            except OSError as exc:
                log.warning("cannot remove guest cgroup %s: %s", self._group.path, exc)
