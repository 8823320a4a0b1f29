"""Memory cgroups for emulated guests (cgroup v1 and v2): a limit that follows the guest's
memory, usage and OOM events read back, and the whole group killed at once.

Layout: `<base>/dmh-<emulator pid>-<its start time>/<guest>/<process>`. `<base>` is the
emulator's own memory cgroup (v1) so a guest never escapes the limits the machine put on the
emulator; on v2, where a cgroup holding processes cannot also enable controllers for its
children, it is the parent of the emulator's cgroup when that one cannot be used. One child
per started process lets teardown stop an app's whole tree (daemons that double-fork and
setsid included) and lets an OOM kill be attributed to the app whose tree it hit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.emulator import owner

log = logging.getLogger(__name__)

_UNLIMITED_V1 = "9223372036854771712"
_PREFIX = "dmh-"


@dataclass(frozen=True)
class CgroupUsage:
    """What a memory cgroup holds (bytes) and how often its processes were OOM-killed."""

    anon_bytes: int  # private, swap-backed pages (process heaps and stacks)
    file_bytes: int  # page cache charged to the group
    oom_kills: int


@dataclass(frozen=True)
class CgroupRoot:
    """Where guest cgroups can be created on this machine."""

    version: int  # 1 or 2
    base: Path  # the directory under which `dmh-<pid>-<start>` groups go

    def owner_group(self) -> Path:
        """This process's group of guest cgroups (created on first use)."""
        path = self.base / f"{_PREFIX}{owner.tag()}"
        path.mkdir(exist_ok=True)
        if self.version == 2:
            _enable_memory(path)
        return path

    def reap_stale(self) -> int:
        """Kill and remove the guest cgroups of emulators that died without cleaning up
        (SIGKILL); returns how many were removed."""
        removed = 0
        with contextlib.suppress(OSError):
            for entry in self.base.iterdir():
                if not (entry.is_dir() and entry.name.startswith(_PREFIX)):
                    continue
                if owner.alive(entry.name[len(_PREFIX) :]):
                    continue
                try:
                    Cgroup(entry, self.version).destroy()
                    removed += 1
                except OSError as exc:
                    log.warning("cannot remove the stale guest cgroup %s: %s", entry, exc)
        return removed


def _enable_memory(path: Path) -> None:
    control = path / "cgroup.subtree_control"
    if "memory" not in control.read_text().split():
        control.write_text("+memory")


def find_root() -> CgroupRoot | None:
    """The memory cgroup hierarchy this process may create guest groups in, or None."""
    mounts = _cgroup_mounts()
    own = _own_paths()
    if "memory" in mounts and "memory" in own:
        mount_point, mount_root = mounts["memory"]
        candidate = _join(mount_point, mount_root, own["memory"])
        if _writable_dir(candidate):
            return CgroupRoot(1, candidate)
    if "" in mounts and "" in own:
        mount_point, mount_root = mounts[""]
        mine = _join(mount_point, mount_root, own[""])
        for candidate in (mine, mine.parent):
            if _v2_usable(candidate, is_own=candidate == mine):
                return CgroupRoot(2, candidate)
    return None


def _cgroup_mounts() -> dict[str, tuple[Path, str]]:
    """Controller ("memory", or "" for the v2 hierarchy) → (mount point, mount root)."""
    found: dict[str, tuple[Path, str]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            head, _, tail = line.partition(" - ")
            fields, tail_fields = head.split(), tail.split()
            if len(fields) < 5 or len(tail_fields) < 3:
                continue
            fstype, options = tail_fields[0], tail_fields[2].split(",")
            if fstype == "cgroup2":
                found.setdefault("", (Path(fields[4]), fields[3]))
            elif fstype == "cgroup" and "memory" in options:
                found.setdefault("memory", (Path(fields[4]), fields[3]))
    return found


def _own_paths() -> dict[str, str]:
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                found[""] = path
            elif "memory" in controllers.split(","):
                found["memory"] = path
    return found


def _join(mount_point: Path, mount_root: str, path: str) -> Path:
    rel = os.path.relpath(path, mount_root) if path.startswith(mount_root) else path
    return (mount_point / rel.lstrip("/")).resolve() if rel != "." else mount_point


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _v2_usable(path: Path, *, is_own: bool) -> bool:
    if not _writable_dir(path):
        return False
    with contextlib.suppress(OSError):
        if "memory" in (path / "cgroup.subtree_control").read_text().split():
            return True
        if "memory" in (path / "cgroup.controllers").read_text().split() and not is_own:
            (path / "cgroup.subtree_control").write_text("+memory")
            return True
    return False


class Cgroup:
    """One memory cgroup directory."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    def child(self, name: str) -> Cgroup:
        path = self.path / name
        path.mkdir(exist_ok=True)
        if self.version == 1:
            with contextlib.suppress(OSError):  # charges stay with the group a process left
                (path / "memory.move_charge_at_immigrate").write_text("0")
        return Cgroup(path, self.version)

    def enable_children(self) -> None:
        if self.version == 2:
            _enable_memory(self.path)

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    # -- limits -----------------------------------------------------------------------
    def set_limit(self, limit_bytes: int, soft_bytes: int | None = None) -> bool:
        """Hard limit (no swap) and, where the kernel has one, a soft one. False when the
        kernel cannot bring usage under a lowered v1 limit yet (EBUSY); it is retried."""
        try:
            if self.version == 1:
                self._set_v1(limit_bytes)
                if soft_bytes is not None:
                    (self.path / "memory.soft_limit_in_bytes").write_text(str(soft_bytes))
            else:
                (self.path / "memory.max").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (self.path / "memory.swap.max").write_text("0")
                high = "max" if soft_bytes is None else str(soft_bytes)
                (self.path / "memory.high").write_text(high)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            raise
        return True

    def _set_v1(self, limit: int) -> None:
        mem, memsw = self.path / "memory.limit_in_bytes", self.path / "memory.memsw.limit_in_bytes"
        has_memsw = memsw.exists()
        current = int(mem.read_text())
        # memsw must stay ≥ the memory limit: raise it first when growing, last when shrinking
        order = [memsw, mem] if limit > current else [mem, memsw]
        for path in order:
            if path is memsw and not has_memsw:
                continue
            path.write_text(str(limit))

    def limit_bytes(self) -> int | None:
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        text = (self.path / name).read_text().strip()
        return None if text in ("max", _UNLIMITED_V1) else int(text)

    # -- what it holds ----------------------------------------------------------------
    def usage(self) -> CgroupUsage:
        stat = _stat(self.path / "memory.stat")
        if self.version == 1:
            anon = stat.get("total_rss", stat.get("rss", 0))
            file = stat.get("total_cache", stat.get("cache", 0))
            oom = _stat(self.path / "memory.oom_control").get("oom_kill", 0)
        else:
            anon, file = stat.get("anon", 0), stat.get("file", 0)
            oom = _stat(self.path / "memory.events").get("oom_kill", 0)
        return CgroupUsage(anon_bytes=anon, file_bytes=file, oom_kills=oom)

    def pids(self) -> list[int]:
        """Every process in this group and its children."""
        found: list[int] = []
        for group in self._walk():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(x) for x in (group / "cgroup.procs").read_text().split())
        return found

    def _walk(self) -> Iterator[Path]:
        """This group and its descendants, deepest first."""
        with contextlib.suppress(OSError):
            for entry in self.path.iterdir():
                if entry.is_dir():
                    yield from Cgroup(entry, self.version)._walk()
        yield self.path

    # -- teardown ---------------------------------------------------------------------
    def kill(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group and its children; True once none is left."""
        deadline = time.monotonic() + timeout
        kill_file = self.path / "cgroup.kill"
        while True:
            pids = self.pids()
            if not pids:
                return True
            if self.version == 2 and kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)  # poll interval while the kernel tears the processes down

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill everything in it and remove the group with its children."""
        self.kill(timeout)
        deadline = time.monotonic() + timeout
        for group in list(self._walk()):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY until the last dying task has left
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)  # poll interval while the kernel releases the group


def _stat(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values
