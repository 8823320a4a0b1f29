"""The app's load (`--dm-app-load`): a command run in the guest over and over while the test
runs — a benchmark client (`redis-benchmark`, `pgbench`), a loop of requests — so a program is
judged while it does its work, not while it idles. The guest-side runner
(suites/apps/_repeat.py) starts each run when the one before it ends, at most once a second.

What its runs mean:
- A run that fails before any run succeeded: the program is not serving yet (a server still
  starting). The scenario's first lever waits for the first run to end, then for a first
  success (suites/conftest.py `steady`); a load that has not succeeded by then breaks the
  test, naming its last run: the program would otherwise be judged without the load it was
  asked to carry.
- A run that exits non-zero, or runs past its timeout, after one succeeded: the program
  stopped serving it. That is the app's failure (behaviour `survive`), once a later sample
  shows the app still running (an app that died fails on its exit instead).
- A run ended by SIGKILL (the guest's OOM killer chose the client) is shown, never the
  app's failure: the client is not the subject.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.appview import Runs
from harness.errors import SettingError

if TYPE_CHECKING:
    from harness.hyperv.guest import GuestProcess

RUN_TIMEOUT_S = 120.0  # one run of a load, × the host's patience
KILLED = {"-9", "137"}  # SIGKILL: the process itself, or the shell that ran it (128 + 9)
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class AppLoad:
    """A load, ready to start: `{pid}` is filled in the guest with the app's process id."""

    command: str
    every: float = 1.0  # the least time from one run's start to the next's


def parse_load(text: str) -> AppLoad | None:
    """`--dm-app-load` as given (empty: none). SettingError names the value and the rule."""
    text = text.strip()
    if not text:
        return None
    fields = set(_PLACEHOLDER.findall(text))
    if fields - {"pid"}:
        raise SettingError(
            "--dm-app-load",
            repr(text),
            f"may use only the placeholder {{pid}} (found {', '.join(sorted(fields))})",
        )
    return AppLoad(text)


@dataclass(frozen=True)
class LoadRun:
    """One run of the load: when the harness saw it end (timeline seconds), its exit code
    (`timeout` when it ran too long) and its output's last lines."""

    t: float
    code: str
    tail: str

    @property
    def passed(self) -> bool:
        return self.code == "0"

    @property
    def killed(self) -> bool:
        return self.code in KILLED

    def describe(self) -> str:
        ended = {"timeout": "ran past its timeout"}.get(self.code, f"exited {self.code}")
        if self.killed:
            ended = "was killed (SIGKILL)"
        return f"{ended}: {self.tail or '(no output)'}"


class LoadReader:
    """Reads the load's runs from its process in the guest (the sampler calls `read` each
    tick) and keeps what they mean: whether it served, and the first run that failed after it
    did. Read by the sampler's thread, asked by the test's."""

    def __init__(self, load: AppLoad, process: GuestProcess, clock: Callable[[], float]) -> None:
        self.load = load
        self.process = process
        self.clock = clock
        self.runs: list[LoadRun] = []
        self.served_at: float | None = None  # the first run that succeeded
        self.failed: LoadRun | None = None  # the first run that failed after that
        self.ended: str | None = None  # why no more runs will come (its runner ended)
        self._stopping = False
        self._next = 0.0
        self._runs = Runs()
        self._lock = threading.Lock()

    def read(self) -> list[LoadRun]:
        """The runs completed since the last read ([] if none, or too soon: one round trip to
        the guest at most once per `every`)."""
        now = self.clock()
        if now < self._next:
            return []
        self._next = now + self.load.every
        result = self.process.fetch()
        text = self.process.feed(result)
        new = [
            LoadRun(now, code, " / ".join(output.strip().splitlines()[-3:])[-300:])
            for output, code in self._runs.feed(text)
        ]
        if result.exit_code is not None and self.ended is None and not self._stopping:
            # The runner itself ended: no more runs will come.
            last = " / ".join(self.process.output.strip().splitlines()[-3:])[-300:]
            self.ended = f"its runner ended (exit {result.exit_code}): {last or '(no output)'}"
        with self._lock:
            for run in new:
                self.runs.append(run)
                if run.passed and self.served_at is None:
                    self.served_at = run.t
                elif not run.passed and not run.killed and self.served_at is not None:
                    self.failed = self.failed or run
        return new

    def stop(self) -> None:
        """End the load (the test is over): its runner's end is then no news."""
        self._stopping = True
        self.process.stop()

    def failure(self) -> str | None:
        """The app's failure its runs show, if any: a run failed after one had succeeded."""
        if self.failed is None:
            return None
        return (
            f"the app stopped serving its load: a run of `{self.load.command}` "
            f"{self.failed.describe()} ({self.status()})"
        )

    @property
    def served(self) -> bool:
        return self.served_at is not None

    def status(self) -> str:
        """What the load did, for reports and for a test it broke."""
        with self._lock:
            runs = list(self.runs)
        label = f"the app load `{self.load.command}`"
        ended = f"; {self.ended}" if self.ended else ""
        if not runs:
            return f"{label} completed no run{ended}"
        passed = sum(r.passed for r in runs)
        text = f"{label} ran {len(runs)} times, {passed} succeeded"
        served = next((i for i, r in enumerate(runs) if r.passed), len(runs))
        if served:
            text += f", {served} failed before the first success (the app not serving yet)"
        killed = sum(r.killed for r in runs)
        if killed:
            text += f", {killed} killed by the guest"
        failures = [r for r in runs[served:] if not r.passed and not r.killed]
        if failures:
            text += f", {len(failures)} failed after it"
        last = next((r for r in reversed(runs) if not r.passed), None)
        if last is not None:
            text += f"; the last that did not succeed {last.describe()}"
        return text + ended
