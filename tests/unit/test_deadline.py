"""harness.deadline: conditions waited on with a deadline, and errors that say what was awaited.

Time here is a fake clock that passes only when the code under test sleeps, so every figure is
exact; how late real sleeps come on a busy machine is benchmarks/ci.py's to print."""

from __future__ import annotations

import itertools
import threading

import pytest

from harness import deadline
from harness.deadline import Deadline, Heartbeat, guarded, wait_until
from harness.errors import DeadlineError, SettingError


class FakeClock:
    """A clock that moves only when slept on (by exactly what was asked)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds

    def deadline(self, seconds: float) -> Deadline:
        return Deadline(seconds, clock=self.now, sleep=self.sleep)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_returns_the_first_truthy_value_without_waiting(clock: FakeClock) -> None:
    calls = itertools.count(1)
    found = wait_until(lambda: next(calls) >= 1 and "ready", clock.deadline(5.0), what="x")
    assert found == "ready"
    assert clock.slept == []


def test_polls_until_the_condition_holds(clock: FakeClock) -> None:
    seen: list[float] = []

    def ready() -> bool:
        seen.append(clock.now())
        return clock.now() >= 0.25

    assert wait_until(ready, clock.deadline(10.0), what="the flag", interval=0.0625) is True
    assert seen == [0.0, 0.0625, 0.125, 0.1875, 0.25]  # it really polled, at its interval


def test_timeout_names_what_and_the_state_last_seen(clock: FakeClock) -> None:
    calls = itertools.count()
    with pytest.raises(DeadlineError) as info:
        wait_until(
            lambda: next(calls) < 0,
            clock.deadline(0.25),
            what="the VM to start",
            interval=0.0625,
            detail=lambda: "state Off",
        )
    assert str(info.value) == "waited 0.25s for the VM to start; state Off"
    assert clock.now() == 0.25  # gave up at the deadline, not before or after
    assert next(calls) == 5  # at 0, 1/16, 2/16, 3/16 and once more at the deadline


def test_a_plain_number_is_a_deadline_on_the_monotonic_clock() -> None:
    with pytest.raises(DeadlineError, match=r"waited 0\.05s for nothing"):
        wait_until(lambda: None, 0.05, what="nothing", interval=0.01)


def test_a_zero_timeout_still_checks_once() -> None:
    assert wait_until(lambda: 7, 0, what="x") == 7
    with pytest.raises(DeadlineError, match="waited 0s for nothing"):
        wait_until(lambda: None, 0, what="nothing")


def test_backoff_grows_to_the_cap_and_never_sleeps_past_the_deadline(clock: FakeClock) -> None:
    stamps: list[float] = []
    end = clock.deadline(0.5)
    with pytest.raises(DeadlineError):
        wait_until(
            lambda: stamps.append(clock.now()), end, what="x", interval=0.01, max_interval=0.1
        )
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[1] == pytest.approx(gaps[0] * 1.5)  # grew
    assert max(gaps) == pytest.approx(0.1)  # up to the cap, never beyond
    assert stamps[-1] == pytest.approx(end.end)  # the last check came at the deadline
    assert clock.now() == pytest.approx(0.5)


def test_deadline_on_another_clock() -> None:
    now = [100.0]
    deadline = Deadline.at(105.0, clock=lambda: now[0])
    assert (deadline.remaining(), deadline.expired) == (5.0, False)
    now[0] = 105.0
    assert (deadline.remaining(), deadline.expired) == (0.0, True)
    passed = Deadline.at(90.0, clock=lambda: now[0])
    assert passed.expired and passed.seconds == 0.0


def test_run_out_lets_the_time_pass(clock: FakeClock) -> None:
    deadline = clock.deadline(0.25)
    deadline.run_out()
    assert deadline.expired and clock.now() == 0.25
    assert clock.slept == [0.25]  # one sleep: nothing guards this thread


def test_a_sleep_stops_at_the_deadline(clock: FakeClock) -> None:
    clock.deadline(0.5).sleep(3.0)
    assert clock.slept == [0.5]


@pytest.mark.parametrize("bad", [float("nan"), "5", True, None])
def test_a_deadline_that_is_not_a_number_is_refused(bad: object) -> None:
    with pytest.raises(SettingError, match=r"deadline: .* must be a number of seconds"):
        Deadline(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0])
def test_an_interval_must_be_positive(bad: float) -> None:
    with pytest.raises(SettingError, match="interval"):
        wait_until(lambda: True, 1.0, what="x", interval=bad)


@pytest.mark.parametrize("bad", [0, -0.5])
def test_a_heartbeat_interval_must_be_positive(bad: float) -> None:
    with pytest.raises(SettingError, match=r"heartbeat: .* must be a positive number"):
        Heartbeat(lambda what, seconds: None, every=bad)


def test_a_long_wait_reports_what_it_waits_for(clock: FakeClock) -> None:
    """Every `every` seconds of waiting (HEARTBEAT_S by default), the progress callback hears
    what is awaited and for how long it has waited so far."""
    beats: list[tuple[str, float]] = []
    wait_until(
        lambda: clock.now() >= 0.8,
        clock.deadline(5.0),
        what="the balloon",
        interval=0.0625,
        progress=Heartbeat(lambda w, s: beats.append((w, s)), every=0.25),
    )
    assert beats == [("the balloon", 0.25), ("the balloon", 0.5), ("the balloon", 0.75)]
    quick: list[tuple[str, float]] = []
    wait_until(lambda: True, 5.0, what="nothing", progress=lambda w, s: quick.append((w, s)))
    assert quick == []  # a short wait stays quiet


def test_a_bare_callback_beats_every_heartbeat_s(clock: FakeClock) -> None:
    beats: list[float] = []
    with pytest.raises(DeadlineError):
        wait_until(
            lambda: False,
            clock.deadline(2.5 * deadline.HEARTBEAT_S),
            what="x",
            interval=1.0,
            progress=lambda _, seconds: beats.append(seconds),
        )
    assert beats == [deadline.HEARTBEAT_S, 2 * deadline.HEARTBEAT_S]


def test_the_installed_heartbeat_hears_every_long_wait(clock: FakeClock) -> None:
    heard: list[str] = []
    previous = deadline.set_heartbeat(Heartbeat(lambda what, _: heard.append(what), every=0.125))
    try:
        assert deadline.installed_heartbeat() is not None
        with pytest.raises(DeadlineError):
            wait_until(
                lambda: False,
                clock.deadline(0.375),
                what="a hot-add above startup",
                interval=0.0625,
            )
    finally:
        deadline.set_heartbeat(previous)
    assert heard == ["a hot-add above startup"] * 3


def test_a_guard_ends_a_wait_early(clock: FakeClock) -> None:
    """A guarded wait stops as soon as its guard raises (the app under test ended), checking
    its guards at least every tenth of a second even while it sleeps long."""

    class Ended(Exception):
        pass

    def guard() -> None:
        if clock.now() >= 1.0:
            raise Ended("the app ended")

    with guarded(guard), pytest.raises(Ended):
        clock.deadline(30.0).run_out()
    assert 1.0 <= clock.now() <= 1.1 + 1e-9  # within a guard interval of it, not 30 s later
    assert max(clock.slept) == pytest.approx(0.1)
    assert wait_until(lambda: 1, 1.0, what="after the block") == 1


def test_a_guard_applies_only_in_its_thread() -> None:
    class Ended(Exception):
        pass

    def guard() -> None:
        raise Ended("the app ended")

    other: list[str] = []
    with guarded(guard):
        elsewhere = threading.Thread(
            target=lambda: other.append(wait_until(lambda: "done", 1.0, what="something else"))
        )
        elsewhere.start()
        elsewhere.join()
        with pytest.raises(Ended):
            wait_until(lambda: "never seen", 1.0, what="here")
    assert other == ["done"]
