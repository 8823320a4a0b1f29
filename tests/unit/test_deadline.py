"""harness.deadline: conditions waited on with a deadline, and errors that say what was awaited."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from harness.deadline import Deadline, wait_until
from harness.errors import DeadlineError, SettingError


def test_returns_the_first_truthy_value_without_waiting() -> None:
    calls = itertools.count(1)
    started = time.monotonic()
    assert wait_until(lambda: next(calls) >= 1 and "ready", 5.0, what="x") == "ready"
    assert time.monotonic() - started < 1.0


def test_polls_until_the_condition_holds() -> None:
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    seen = []

    def ready() -> bool:
        seen.append(flag.is_set())
        return flag.is_set()

    assert wait_until(ready, 10.0, what="the flag", interval=0.02) is True
    assert seen[-1] is True and seen.count(False) >= 2  # it really polled


def test_timeout_names_what_and_the_state_last_seen() -> None:
    calls = itertools.count()
    started = time.monotonic()
    with pytest.raises(DeadlineError) as info:
        wait_until(
            lambda: next(calls) < 0,
            0.2,
            what="the VM to start",
            interval=0.01,
            detail=lambda: "state Off",
        )
    elapsed = time.monotonic() - started
    assert str(info.value) == "waited 0.2s for the VM to start; state Off"
    assert 0.2 <= elapsed < 2.0
    assert next(calls) >= 3  # called repeatedly, including once after the deadline


def test_a_zero_timeout_still_checks_once() -> None:
    assert wait_until(lambda: 7, 0, what="x") == 7
    with pytest.raises(DeadlineError, match="waited 0s for nothing"):
        wait_until(lambda: None, 0, what="nothing")


def test_backoff_grows_to_the_cap_and_never_sleeps_past_the_deadline() -> None:
    stamps: list[float] = []
    deadline = Deadline(0.5)
    with pytest.raises(DeadlineError):
        wait_until(
            lambda: stamps.append(time.monotonic()), deadline, what="x", interval=0.01,
            max_interval=0.1,
        )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[-2] > gaps[0]  # grew
    assert max(gaps) < 0.1 + 0.05  # capped (with scheduling slack)
    assert stamps[-1] - deadline.end < 0.05  # the last check came at the deadline, not later


def test_deadline_on_another_clock() -> None:
    now = [100.0]
    deadline = Deadline.at(105.0, clock=lambda: now[0])
    assert (deadline.remaining(), deadline.expired) == (5.0, False)
    now[0] = 105.0
    assert (deadline.remaining(), deadline.expired) == (0.0, True)
    passed = Deadline.at(90.0, clock=lambda: now[0])
    assert passed.expired and passed.seconds == 0.0


def test_run_out_lets_the_time_pass() -> None:
    deadline = Deadline(0.1)
    deadline.run_out()
    assert deadline.expired and time.monotonic() >= deadline.end


@pytest.mark.parametrize("bad", [float("nan"), "5", True, None])
def test_a_deadline_that_is_not_a_number_is_refused(bad: object) -> None:
    with pytest.raises(SettingError, match=r"deadline: .* must be a number of seconds"):
        Deadline(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0])
def test_an_interval_must_be_positive(bad: float) -> None:
    with pytest.raises(SettingError, match="interval"):
        wait_until(lambda: True, 1.0, what="x", interval=bad)


def test_a_long_wait_reports_what_it_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HEARTBEAT_S of waiting, the progress callback hears what is awaited (shortened
    here from 10 s so the test stays fast)."""
    from harness import deadline

    monkeypatch.setattr(deadline, "HEARTBEAT_S", 0.2)
    flag = threading.Event()
    threading.Timer(0.75, flag.set).start()
    beats: list[tuple[str, float]] = []
    wait_until(flag.is_set, 5.0, what="the balloon", progress=lambda w, s: beats.append((w, s)))
    assert [w for w, _ in beats] == ["the balloon"] * len(beats)
    assert 2 <= len(beats) <= 4, beats
    assert all(b[1] < a[1] for b, a in itertools.pairwise(beats))  # seconds waited grow
    quick: list[tuple[str, float]] = []
    wait_until(lambda: True, 5.0, what="nothing", progress=lambda w, s: quick.append((w, s)))
    assert quick == []  # a short wait stays quiet


def test_the_installed_heartbeat_hears_every_long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import deadline

    monkeypatch.setattr(deadline, "HEARTBEAT_S", 0.1)
    heard: list[str] = []
    previous = deadline.set_heartbeat(lambda what, _: heard.append(what))
    try:
        with pytest.raises(DeadlineError):
            wait_until(lambda: False, 0.35, what="a hot-add above startup")
    finally:
        deadline.set_heartbeat(previous)
    assert heard and set(heard) == {"a hot-add above startup"}


def test_a_guard_ends_a_wait_early_and_only_in_its_thread() -> None:
    """A guarded wait stops as soon as its guard raises (the app under test ended); waits in
    other threads, and waits after the block, are not guarded."""
    from harness.deadline import guarded

    class Ended(Exception):
        pass

    ended = {"now": False}

    def guard() -> None:
        if ended["now"]:
            raise Ended("the app ended")

    other: list[str] = []

    def wait_elsewhere() -> None:
        ended["now"] = True  # the guard would fire if it applied here
        other.append(wait_until(lambda: "done", 1.0, what="something else"))

    started = time.monotonic()
    with guarded(guard), pytest.raises(Ended):
        threading.Timer(0.2, wait_elsewhere).start()
        Deadline(30.0).run_out()
    assert time.monotonic() - started < 5.0
    assert other == ["done"]
    assert wait_until(lambda: 1, 1.0, what="after the block") == 1
