"""Waiting with a deadline: the one polling loop of the harness and its tests.

Hosts react in seconds, not at once (reference §0, §3.1), so the harness waits on conditions,
never on fixed sleeps. `wait_until` polls a condition and raises DeadlineError naming what it
waited for; `Deadline` is the moment a wait gives up, for loops that need more than that.
A wait longer than a heartbeat's interval (HEARTBEAT_S unless the `Heartbeat` says otherwise)
reports what it waits for to a progress callback (the one given, else the one `set_heartbeat`
installed: the plugin's, on the console). Time is read from the deadline's clock and passed with
its `sleep`, both injectable, so a test of the waiting itself needs no wall clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from harness.errors import DeadlineError, SettingError

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Progress = Callable[[str, float], None]  # (what is awaited, seconds waited so far)

HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class Heartbeat:
    """Who hears about a long wait, and every how many seconds of it."""

    progress: Progress
    every: float = HEARTBEAT_S

    def __post_init__(self) -> None:
        if not (isinstance(self.every, int | float) and self.every > 0):
            raise SettingError("heartbeat", self.every, "must be a positive number of seconds")


_heartbeat: Heartbeat | None = None


def _as_heartbeat(beat: Heartbeat | Progress | None) -> Heartbeat | None:
    return beat if beat is None or isinstance(beat, Heartbeat) else Heartbeat(beat)


def set_heartbeat(heartbeat: Heartbeat | Progress | None) -> Heartbeat | None:
    """Install the heartbeat long waits report to (a bare callback: every HEARTBEAT_S);
    returns the one it replaces."""
    global _heartbeat
    previous, _heartbeat = _heartbeat, _as_heartbeat(heartbeat)
    return previous


def installed_heartbeat() -> Heartbeat | None:
    """The heartbeat `set_heartbeat` installed, if any."""
    return _heartbeat


_GROWTH = 1.5  # how much a backing-off poll stretches its interval each round
_GUARD_INTERVAL = 0.1  # how often a guarded wait that sleeps long looks at its guards

_local = threading.local()


def _guards() -> list[Callable[[], None]]:
    if not hasattr(_local, "guards"):
        _local.guards = []
    found: list[Callable[[], None]] = _local.guards
    return found


@contextmanager
def guarded(check: Callable[[], None]) -> Iterator[None]:
    """While the block runs, every wait in this thread calls `check` each round; `check`
    raises to end the wait early, when nothing it waits for can come true any more (the app
    under test has exited). Waits in other threads (the sampler's) are not affected."""
    guards = _guards()
    guards.append(check)
    try:
        yield
    finally:
        guards.remove(check)


def check_guards() -> None:
    """Run this thread's guards (each may raise)."""
    for check in list(_guards()):
        check()


class Deadline:
    """A moment `seconds` from now on `clock` (time.monotonic unless another clock is given,
    such as a timeline's). Waiting for it goes through `sleep`, which must let `clock` advance
    by what it is asked (a test's fake clock advances itself)."""

    def __init__(
        self, seconds: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or math.isnan(seconds):
            raise SettingError("deadline", seconds, "must be a number of seconds")
        self.seconds = max(0.0, float(seconds))  # as shown in messages; negative: passed
        self.clock = clock
        self._sleep = sleep
        self.end = clock() + float(seconds)

    @classmethod
    def at(
        cls, end: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> Deadline:
        """The deadline at `end` on `clock` (already passed when `end` is)."""
        return cls(end - clock(), clock=clock, sleep=sleep)

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.end

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, but not past the deadline (so the last check comes on time);
        a guarded sleep looks at its guards every tenth of a second."""
        end = self.clock() + max(0.0, min(seconds, self.remaining()))
        while True:
            check_guards()
            left = end - self.clock()
            if left <= 0:
                return
            self._sleep(min(left, _GUARD_INTERVAL) if _guards() else left)

    def run_out(self) -> None:
        """Let the time up to the deadline pass (to observe a window, not to wait for luck)."""
        while not self.expired:
            self.sleep(self.remaining())


def wait_until(
    condition: Callable[[], T | None],
    timeout: float | Deadline,
    *,
    what: str,
    interval: float = 0.05,
    max_interval: float | None = None,
    detail: Callable[[], str] | None = None,
    progress: Heartbeat | Progress | None = None,
) -> T:
    """Call `condition` until it returns something truthy, and return that value.

    It is called once more when the deadline has passed, then DeadlineError says what was
    awaited, for how long, and `detail()` (the state last seen) when given. With `max_interval`
    the interval between calls grows up to it (for conditions that cost a host round trip).
    Every `every` seconds of waiting, `progress` (or the installed heartbeat) hears `what`;
    the time is the deadline's clock.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    if not interval > 0:
        raise SettingError("interval", interval, "must be a positive number of seconds")
    delay = interval
    given = _as_heartbeat(progress)
    heartbeat = given or _heartbeat
    started = deadline.clock()
    beat = started + (heartbeat.every if heartbeat is not None else HEARTBEAT_S)
    while True:
        check_guards()
        value = condition()
        if value:
            return value
        heartbeat = given or _heartbeat
        if heartbeat is not None and deadline.clock() >= beat:
            heartbeat.progress(what, deadline.clock() - started)
            beat += heartbeat.every
        if deadline.expired:
            seen = detail() if detail is not None else ""
            raise DeadlineError(
                f"waited {deadline.seconds:g}s for {what}" + (f"; {seen}" if seen else "")
            )
        deadline.sleep(delay)
        if max_interval is not None:
            delay = min(delay * _GROWTH, max_interval)
