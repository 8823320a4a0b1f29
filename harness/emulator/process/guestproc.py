"""Real local processes started in an emulated guest: their tree (a daemon that
double-forked included, through the process's own cgroup), their memory and their commit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from harness.emulator.errors import GuestError
from harness.emulator.guestface import ProgramStats
from harness.emulator.process.sandbox.cgroup import Cgroup
from harness.errors import DeadlineError

_live: weakref.WeakSet[LocalProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """No orphans even if nobody closed the host: kill what guests still run at exit."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=1.0)


class LocalProcess:
    """A real local process started in an emulated guest (its own session/process group)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        argv: Sequence[str],
        stdout_path: Path,
        stderr_path: Path,
        cgroup: Cgroup | None = None,
        *,
        launcher: bool = False,
    ) -> None:
        self._popen = popen
        self.cgroup = cgroup  # its own group: every process it started, however detached
        # The Popen process only enters the guest's namespaces and waits for the program (its
        # one child): it is signalled and gives the exit code, but is not measured.
        self.launcher = launcher
        self.argv = tuple(argv)
        self.pid = popen.pid
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self._lock = threading.Lock()
        self._known: dict[int, psutil.Process] = {}
        self._after_stop: list[Callable[[], None]] = []
        with contextlib.suppress(psutil.Error):  # already gone: poll() will say so
            self._known[self.pid] = psutil.Process(self.pid)
        _live.add(self)

    def __repr__(self) -> str:
        return f"LocalProcess(pid={self.pid}, argv={self.argv!r}, exit_code={self.poll()})"

    def poll(self) -> int | None:
        return self._popen.poll()

    @property
    def exit_code(self) -> int | None:
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeadlineError(f"guest process {self.pid} still running after {timeout}s") from exc

    def output(self) -> str:
        """Everything the process wrote to stdout so far (kept in the guest's directory)."""
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send(self, text: str) -> None:
        """Write to the process's stdin (started with stdin=True)."""
        stream = self._popen.stdin
        if stream is None:
            raise GuestError(f"process {self.pid} was started without stdin", target=str(self.pid))
        try:
            stream.write(text.encode())
            stream.flush()
        except OSError as exc:
            raise GuestError(
                f"process {self.pid} no longer reads its input ({exc})", target=str(self.pid)
            ) from exc

    def close_stdin(self) -> None:
        if self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name if self.argv else str(self.pid)

    def _tree(self) -> list[psutil.Process]:
        """The process and every descendant seen so far that still lives (pid reuse is
        ruled out by psutil's creation-time check), and everything in its cgroup (daemons
        that left the tree). The root is checked through Popen, so that Popen, not psutil,
        reaps it and keeps its exit code."""
        with self._lock:
            running = self._popen.poll() is None
            root = self._known.get(self.pid)
            if running and root is not None:
                with contextlib.suppress(psutil.Error):
                    for child in root.children(recursive=True):
                        self._known.setdefault(child.pid, child)
            if self.cgroup is not None:
                for pid in self.cgroup.pids():
                    if pid not in self._known and pid != self.pid:
                        with contextlib.suppress(psutil.Error):
                            self._known[pid] = psutil.Process(pid)
            self._known = {
                pid: proc
                for pid, proc in self._known.items()
                if (running if pid == self.pid else _alive(proc))
            }
            return list(self._known.values())

    def tree(self) -> list[psutil.Process]:
        """The program and everything it started that still lives."""
        return self._measured_tree()

    def _measured_tree(self) -> list[psutil.Process]:
        tree = self._tree()
        return [p for p in tree if p.pid != self.pid] if self.launcher else tree

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._tree():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)  # poll interval while processes exit
        return True

    def stats(self) -> ProgramStats:
        rss = private = count = 0
        for proc in self._measured_tree():
            try:
                info = proc.memory_info()
            except psutil.Error:
                continue
            count += 1
            rss += info.rss
            private += committed_bytes(proc.pid)
        return ProgramStats(
            pid=self.pid,
            running=self.running,
            exit_code=self.poll(),
            working_set_bytes=rss,
            private_bytes=private,
            processes=count,
        )

    def resident_bytes(self) -> int:
        total = 0
        for proc in self._measured_tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def memory(self) -> tuple[int, int]:
        """(committed, resident private) bytes of the whole tree."""
        commit = anon = 0
        for proc in self._measured_tree():
            commit += committed_bytes(proc.pid)
            with contextlib.suppress(psutil.Error):
                anon += _private_bytes(proc.memory_info())
        return commit, anon

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group and to every known descendant."""
        tree = self._tree()
        if self.running or tree:  # else the group is gone and its id may be reused
            with contextlib.suppress(OSError):
                os.killpg(self.pid, sig)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        if sig == signal.SIGCONT and self.launcher:
            self._continue_launcher(tree)

    def _continue_launcher(self, tree: list[psutil.Process]) -> None:
        """nsenter mirrors job control: when it learns (late, after its own SIGCONT) that its
        child had stopped, it stops itself again. Continue it until it stays running."""
        root = next((p for p in tree if p.pid == self.pid), None)
        deadline, running_checks = time.monotonic() + 0.5, 0
        while root is not None and running_checks < 5 and time.monotonic() < deadline:
            try:
                running_checks += 1
                if root.status() == psutil.STATUS_STOPPED:
                    root.send_signal(signal.SIGCONT)
                    running_checks = 0
            except psutil.Error:
                return
            time.sleep(0.01)  # poll interval: the launcher acts on the stale event at once

    def stop(self, timeout: float = 5.0, *, graceful: bool = True) -> int | None:
        """Stop the process and all its descendants: SIGTERM, then SIGKILL after `timeout`
        (at once when not graceful). Returns the exit code."""
        self.close_stdin()
        if graceful and self._tree():
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a frozen (saved/paused) process must wake to die
            self._wait_gone(timeout)
        if self._tree():
            self.signal(signal.SIGKILL)
            self._wait_gone(5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(5)
        _live.discard(self)
        with self._lock:
            callbacks, self._after_stop = self._after_stop, []
        for callback in callbacks:
            callback()
        return self.poll()

    def after_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, after the next stop()."""
        with self._lock:
            self._after_stop.append(callback)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def committed_bytes(pid: int) -> int:
    """What a process has committed: its private writable mappings (heap, stacks, anonymous
    mmap, written data), touched or not; Linux charges Committed_AS for these and Windows'
    commit charge counts the same. Reserved address space (PROT_NONE) is not counted."""
    total = 0
    try:
        with open(f"/proc/{pid}/maps", "rb") as maps:
            for line in maps:
                perms = line[line.index(b" ") + 1 :][:4]
                if perms[1:2] == b"w" and perms[3:4] == b"p":
                    start, _, end = line[: line.index(b" ")].partition(b"-")
                    total += int(end, 16) - int(start, 16)
    except (OSError, ValueError):
        return 0
    return total


def _private_bytes(info: object) -> int:
    private = getattr(info, "private", None)  # Windows
    if isinstance(private, int):
        return private
    rss = int(getattr(info, "rss", 0))
    return max(0, rss - int(getattr(info, "shared", 0)))  # Linux: anonymous resident
