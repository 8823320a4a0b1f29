"""A program running inside a QEMU guest, started by the agent, with the GuestProgram face
(guestface.py) the cmdlets use for every guest's programs (pid, exit code, output files,
stats, stop): its pid is the guest kernel's, its output files are in the VM's shared scratch
directory."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.emulator.guestface import ProgramStats
from harness.emulator.qemu.agent import AgentClient
from harness.emulator.qemu.errors import QemuError, QemuUnsupportedError
from harness.errors import DeadlineError

KILLED = -signal.SIGKILL  # what Popen reports for a process killed with the VM


class QemuProgram:
    """One program started in a QEMU guest. Thread-safe."""

    def __init__(
        self,
        agent: AgentClient,
        pid: int,
        argv: Sequence[str],
        stdout_path: Path,
        stderr_path: Path,
    ) -> None:
        self._agent = agent
        self.pid = pid
        self.argv = tuple(argv)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self._final: int | None = None
        self._ended = False
        self._lock = threading.Lock()
        self._after_stop: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"QemuProgram(pid={self.pid}, argv={self.argv!r})"

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name if self.argv else str(self.pid)

    def vm_stopped(self) -> None:
        """The VM went off: the program died with it (as a process killed by SIGKILL)."""
        with self._lock:
            if not self._ended:
                self._ended, self._final = True, KILLED

    def poll(self) -> int | None:
        with self._lock:
            if self._ended:
                return self._final
        try:
            code = self._agent.request("poll", 10.0, pids=[self.pid])["codes"][str(self.pid)]
        except QemuError:
            self.vm_stopped()
            return KILLED
        if code is not None:
            with self._lock:
                self._ended, self._final = True, int(code)
        return None if code is None else int(code)

    @property
    def exit_code(self) -> int | None:
        return self.poll()

    @property
    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                raise DeadlineError(f"guest process {self.pid} still running after {timeout}s")
            time.sleep(0.05)  # poll interval: each poll is one agent round trip

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.stdout_path.read_text(errors="replace")
        return ""

    def errors(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    def send(self, text: str) -> None:
        raise QemuUnsupportedError(
            "writing to a guest program's stdin", hint="Pass input as files."
        )

    def close_stdin(self) -> None:
        """Started without stdin: nothing to close."""

    def stats(self) -> ProgramStats:
        try:
            found = self._agent.request("stats", 10.0, pid=self.pid)
        except QemuError:
            self.vm_stopped()
            return ProgramStats(self.pid, False, KILLED, 0, 0, 0)
        code = found["rc"]
        return ProgramStats(
            pid=self.pid,
            running=code is None,
            exit_code=None if code is None else int(code),
            working_set_bytes=int(found["rss"]),
            private_bytes=int(found["private"]),
            processes=int(found["count"]),
        )

    def signal(self, sig: int) -> None:
        with contextlib.suppress(QemuError):
            self._agent.request("signal", 10.0, pid=self.pid, sig=int(sig))

    def stop(self, timeout: float = 5.0, *, graceful: bool = True) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` (at once when not graceful), to the program
        and everything in its session."""
        with contextlib.suppress(QemuError):
            gone = False
            if graceful:
                self.signal(signal.SIGTERM)
                self.signal(signal.SIGCONT)
                gone = bool(
                    self._agent.request("wait", timeout + 10, pid=self.pid, timeout=timeout)["gone"]
                )
            if not gone:
                self.signal(signal.SIGKILL)
                self._agent.request("wait", 15.0, pid=self.pid, timeout=5.0)
        code = self.poll()
        with self._lock:
            callbacks, self._after_stop = self._after_stop, []
        for callback in callbacks:
            callback()
        return code

    def after_stop(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._after_stop.append(callback)
