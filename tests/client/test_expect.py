"""Expectations over a timeline: growth and release after a memory event, passed or failed with
the window that shows why, on a window already over and on one still running."""

from __future__ import annotations

import threading
import time

import pytest

from harness.errors import ExpectationFailed
from harness.expect import Expectations
from harness.timeline import AppSample, Timeline


def _app(ws_mb: float) -> AppSample:
    return AppSample(pid=1, running=True, working_set_mb=ws_mb, private_mb=ws_mb)


def _past_timeline(working_sets: dict[float, float]) -> Timeline:
    """A timeline 100 s old whose app samples are the given {t: working set MB}."""
    timeline = Timeline(start=time.monotonic() - 100)
    for t, ws in working_sets.items():
        timeline.add_sample(None, app=_app(ws), t=t)
    return timeline


@pytest.mark.parametrize(
    ("after_mb", "passed", "detail"),
    [
        (700.0, True, "working set 1000 → 700 MB in 2.0s"),
        (
            900.0,
            False,
            "working set stayed at 900 MB or more (was 1000 MB) for 10s after the event",
        ),
    ],
)
def test_releases_after(after_mb: float, passed: bool, detail: str) -> None:
    timeline = _past_timeline({5.0: 1000.0, 12.0: after_mb})
    event = timeline.add_event("balloon", "balloon 2048→1024 MB", t=10.0)
    expect = Expectations(timeline)
    if passed:
        expect.releases_after(event, within=10.0, fraction=0.2)
    else:
        with pytest.raises(ExpectationFailed) as failed:
            expect.releases_after(event, within=10.0, fraction=0.2)
        assert "samples in the failing window" in str(failed.value)
    [outcome] = expect.outcomes
    assert outcome.name == "app releases memory after balloon 2048→1024 MB"
    assert (outcome.passed, outcome.detail) == (passed, detail)


@pytest.mark.parametrize(
    ("after_mb", "passed", "detail"),
    [
        (1040.0, True, "working set 1000 → 1040 MB in 2.0s"),
        (1020.0, False, "working set grew only 20 MB (< 32) in 10s"),
    ],
)
def test_grows_after(after_mb: float, passed: bool, detail: str) -> None:
    timeline = _past_timeline({5.0: 1000.0, 12.0: after_mb})
    event = timeline.add_event("hot-add", "hot-add 1024→2048 MB", t=10.0)
    expect = Expectations(timeline)
    with expect.together() if passed else pytest.raises(ExpectationFailed):
        expect.grows_after(event, within=10.0)
    [outcome] = expect.outcomes
    assert outcome.name == "app grows into memory after hot-add 1024→2048 MB"
    assert (outcome.passed, outcome.detail) == (passed, detail)


def test_no_sample_before_the_event_fails_plainly() -> None:
    timeline = _past_timeline({12.0: 500.0})
    event = timeline.add_event("balloon", "balloon", t=10.0)
    expect = Expectations(timeline)
    with pytest.raises(ExpectationFailed, match="no sample of the app before the event"):
        expect.releases_after(event)


def test_a_live_window_waits_for_the_sample_that_shows_it() -> None:
    """The window is still open: the check waits until a later sample shows the growth."""
    timeline = Timeline()
    timeline.add_sample(None, app=_app(1000.0))
    event = timeline.add_event("hot-add", "hot-add")
    grown = threading.Timer(0.3, lambda: timeline.add_sample(None, app=_app(1100.0)))
    grown.start()
    expect = Expectations(timeline)
    expect.grows_after(event, within=20.0)
    grown.join()
    [outcome] = expect.outcomes
    assert outcome.passed and outcome.detail.startswith("working set 1000 → 1100 MB in 0.")
    assert timeline.now() < 10.0  # passed as soon as it showed, not at the end of the window
