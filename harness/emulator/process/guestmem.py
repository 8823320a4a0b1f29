"""A running guest's memory as a VM has it: measured from its processes (commit from private
writable mappings, not resident memory), held to the guest's size by its memory cgroup, with
the OS's consequences recorded: a Linux guest OOM-kills, a Windows guest refuses commit beyond
its commit limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from harness.emulator.guestface import COMMIT_LIMIT_REACHED, OOM_KILL, GuestMemoryEvent
from harness.emulator.guestview import GuestProfile, GuestView, Memory
from harness.emulator.process.guestproc import LocalProcess, committed_bytes
from harness.emulator.process.sandbox.containment import NOT_ENFORCED, GuestSandbox, support
from harness.units import MB

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _mb(value: int) -> int:
    return -(-value // MB)


class GuestMemory:
    """Containment and accounting of one guest between power-on and power-off."""

    def __init__(self, guest_name: str, profile: GuestProfile) -> None:
        self._name = guest_name
        self._profile = profile
        self._lock = threading.Lock()
        self._sandbox: GuestSandbox | None = None
        self._measured = Memory()
        self._events: list[GuestMemoryEvent] = []
        self._oom_seen: dict[int, int] = {}

    # -- containment --------------------------------------------------------------------
    def sandbox(
        self, overlays: Sequence[tuple[Path, str]], view: GuestView | None, fixed_mb: int
    ) -> GuestSandbox:
        """The guest's sandbox, made when its first process starts."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = GuestSandbox(self._name, overlays)
                if view is not None:
                    self._apply_limit(self._sandbox, view, fixed_mb)
            return self._sandbox

    def release(self) -> GuestSandbox | None:
        """Detach the sandbox (the guest is off); the caller closes it once its processes
        were given their chance to stop."""
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
            self._measured = Memory()
            self._oom_seen.clear()
            return sandbox

    @property
    def warnings(self) -> tuple[str, ...]:
        """What this machine does not let the emulator do ("guest memory not enforced")."""
        with self._lock:
            if self._sandbox is not None:
                return tuple(self._sandbox.warnings)
        return support().warnings

    @property
    def enforced(self) -> bool:
        with self._lock:
            if self._sandbox is not None:
                return self._sandbox.enforced
        return not any(w.startswith(NOT_ENFORCED) for w in support().warnings)

    def pids(self) -> list[int]:
        sandbox = self._sandbox
        return sandbox.pids() if sandbox is not None else []

    def events(self) -> tuple[GuestMemoryEvent, ...]:
        with self._lock:
            return tuple(self._events)

    # -- measurement --------------------------------------------------------------------
    def measure(self, processes: Sequence[LocalProcess]) -> Memory:
        """Commit, resident private memory and page cache of everything the guest runs."""
        sandbox = self._sandbox
        usage = sandbox.usage() if sandbox is not None else None
        if sandbox is not None and usage is not None:
            commit = sum(committed_bytes(pid) for pid in sandbox.pids())
            measured = Memory(_mb(commit), _mb(usage.anon_bytes), usage.file_bytes // MB)
        else:
            commit = anon = 0
            for proc in processes:
                c, a = proc.memory()
                commit, anon = commit + c, anon + a
            measured = Memory(_mb(commit), _mb(anon), 0)
        self._record_kernel_kills(processes)
        self._measured = measured
        return measured

    @property
    def measured(self) -> Memory:
        return self._measured

    def _record_kernel_kills(self, processes: Sequence[LocalProcess]) -> None:
        for proc in processes:
            if proc.cgroup is None:
                continue
            with contextlib.suppress(OSError):
                kills = proc.cgroup.usage().oom_kills
                seen = self._oom_seen.get(proc.pid, 0)
                if kills > seen:
                    self._oom_seen[proc.pid] = kills
                    kind = OOM_KILL if self._profile.os_name == "linux" else COMMIT_LIMIT_REACHED
                    self._record(kind, proc.name, proc.pid)

    def _record(self, kind: str, process: str, pid: int) -> None:
        event = GuestMemoryEvent(kind, process, pid, time.time())
        log.warning("guest %s: %s", self._name, event.message)
        with self._lock:
            self._events.append(event)

    # -- enforcement --------------------------------------------------------------------
    def enforce(self, view: GuestView, fixed_mb: int, processes: Sequence[LocalProcess]) -> None:
        """Keep the cgroup limit on the guest's current size; a Windows guest refuses commit
        past its commit limit: the process holding most commit is the one whose next
        allocation fails, and it is terminated (as an app that cannot handle that is)."""
        sandbox = self._sandbox
        if sandbox is not None:
            self._apply_limit(sandbox, view, fixed_mb)
        if self._profile.os_name != "windows" or view.committed_mb <= view.commit_limit_mb:
            return
        victim = _largest_committer(processes)
        if victim is not None:
            owner, pid, name = victim
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            self._record(COMMIT_LIMIT_REACHED, name, owner.pid)

    def _apply_limit(self, sandbox: GuestSandbox, view: GuestView, fixed_mb: int) -> None:
        group, per_process, soft = self._profile.memory_limit_mb(view, fixed_mb)
        # One page under the guest's total: HotSpot treats a limit ≥ physical memory (which
        # the preload library makes the guest's total) as no limit and falls back to the
        # hierarchical one, the guest's smaller process budget.
        shown = per_process * MB - _PAGE
        if not sandbox.set_limit(group * MB, shown, None if soft is None else soft * MB):
            log.debug("guest %s: lowered memory limit not applied yet (in use)", self._name)


def _largest_committer(
    processes: Sequence[LocalProcess],
) -> tuple[LocalProcess, int, str] | None:
    best: tuple[int, LocalProcess, int, str] | None = None
    for owner in processes:
        for proc in owner.tree():
            commit = committed_bytes(proc.pid)
            if best is None or commit > best[0]:
                with contextlib.suppress(psutil.Error):
                    best = (commit, owner, proc.pid, proc.name())
    return None if best is None else best[1:]
