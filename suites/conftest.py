"""Shared steps of the certification suites."""

from __future__ import annotations

import contextlib
import logging
import statistics
from pathlib import Path

import pytest

from harness.appload import RUN_TIMEOUT_S
from harness.errors import DeadlineError
from harness.fixtures.host import DMHost
from harness.timeline import Sample, Timeline

log = logging.getLogger(__name__)

# "Steady" tolerates the balancer's normal motion: assigned memory within one balancer step
# (128 MB, the hot-add block, reference §5.2) over the window. The app's working set has
# stopped trending: the medians of the window's two halves agree within a few percent (a cache
# rebuilding itself swings around its level, holding old and new buffers for a moment).
STEP_MB = 128
APP_STILL_MB = 24.0
APP_STILL_FRACTION = 0.1
MIN_SAMPLES = 4  # a slow guest samples seldom: the window stretches back to this many
# A program with an app view (--dm-app-view) is ready when its view first answers, and with
# a load (--dm-app-load) when a run of it first succeeds: a server that initialises a data
# directory first (PostgreSQL's initdb) may need many seconds on a busy machine. Scenarios
# wait for that, at most this long (× patience; a load's first run is given its whole
# run time, RUN_TIMEOUT_S). A view that never answers does not hold the
# run (its checks then fail *not observed*); a load that never succeeds breaks the test: the
# app was not exercised as asked (harness/appload.py).
READY_S = 30.0


def _steady_since(timeline: Timeline, seconds: float, app: bool) -> bool:
    now = timeline.now()
    samples = timeline.samples
    window = [s for s in samples if s.t >= now - seconds] or samples[-1:]
    if len(window) < MIN_SAMPLES:
        window = samples[-MIN_SAMPLES:]
    if len(window) < MIN_SAMPLES or window[0].t > now - seconds + 0.5:
        return False
    assigned = [s.host.assigned_mb for s in window if s.host]
    if len(assigned) < len(window) or 0 in assigned or max(assigned) - min(assigned) > STEP_MB:
        return False
    if not app:
        return True
    # The app's process is sampled (its stats, from the guest), whether it reports or not.
    held = [s.app.working_set_mb for s in window if s.app is not None]
    if len(held) < len(window):
        return False
    half = len(held) // 2
    before, after = statistics.median(held[:half]), statistics.median(held[-half:])
    return abs(after - before) <= max(APP_STILL_MB, APP_STILL_FRACTION * max(before, after))


def _still_moving(timeline: Timeline, since: float, app: bool) -> str:
    """Why memory did not settle since `since`, in numbers, for the broken test's message."""
    samples = [s for s in timeline.samples_between(since, timeline.now()) if s.host]
    if len(samples) < 2:
        return "no samples of the VM came"
    first, last = samples[0].host, samples[-1].host
    assert first is not None and last is not None
    adds = last.add_operations - first.add_operations
    removals = last.remove_operations - first.remove_operations
    assigned = [s.host.assigned_mb for s in samples if s.host]
    text = (
        f"the host kept moving memory: {adds} adds and {removals} removals in "
        f"{samples[-1].t - samples[0].t:.0f} s (assigned {min(assigned)}–{max(assigned)} MB)"
    )
    held = [s.app.working_set_mb for s in samples[-20:] if s.app]
    if app and held:
        text += f"; the app's working set {min(held):.0f}–{max(held):.0f} MB in its last samples"
    return text


@pytest.fixture
def patience(dm_host: DMHost) -> float:
    """Deadlines in these suites are for the `fast` emulator; × this on slower hosts."""
    return dm_host.patience


@pytest.fixture
def steady(  # type: ignore[no-untyped-def]
    timeline: Timeline, dm_host: DMHost, request: pytest.FixtureRequest
):
    """Wait (with a deadline) until DM acts on the VM and memory has settled: assigned memory
    within one balancer step and the app's working set no longer trending, for `seconds` —
    never the app's reports (metric lines are optional); but first, with an app view or load,
    for the view's first answer and the load's first success (`READY_S`). An app that ends
    meanwhile fails the test at once (the app fixture guards every wait); memory that never
    settles breaks the test, saying how much it moved; a load that never succeeds breaks it."""

    app = "guest_app" in request.fixturenames
    patience = dm_host.patience
    view = request.getfixturevalue("guest_app").view if app else None
    load = request.getfixturevalue("guest_app").load if app else None

    def answered(_: Sample | None = None) -> bool:
        return any(s.app and s.app.reported for s in timeline.samples)

    def wait(seconds: float = 1.5, timeout: float = 45.0) -> Sample:
        if view is not None and not answered():
            try:
                timeline.wait_for(answered, READY_S * patience, "the app view's first answer")
            except DeadlineError:
                log.warning("the app view %s never answered: going on without it", view.view.label)
        if load is not None and not load.served:
            # Its first run may take long (a benchmark on a slow guest): it is given a run's
            # time to end. Then, after runs that failed (the app not serving yet), READY_S.
            for what, done, limit in (
                ("the app load's first run", lambda: bool(load.runs), RUN_TIMEOUT_S),
                ("the app load's first success", lambda: load.served, READY_S),
            ):
                with contextlib.suppress(DeadlineError):
                    timeline.wait_for(
                        lambda _, done=done: done() or load.ended is not None,
                        limit * patience,
                        what,
                    )
            if not load.served:
                raise DeadlineError(
                    "the app load did not succeed before the first lever, so the app was not "
                    f"exercised as asked: {load.status()}"
                )
        since = timeline.now()
        what = f"memory steady for {seconds:g}s" + (" with the app sampled" if app else "")
        try:
            # Not before DM acts on the VM (its quiet period after boot, §3.1; the timeline
            # starts after the VM): a lever pulled earlier would move nothing.
            return timeline.wait_for(
                lambda s: s.t >= dm_host.quiet_s and _steady_since(timeline, seconds, app),
                dm_host.quiet_s + timeout * patience,
                what,
            )
        except DeadlineError as exc:
            raise DeadlineError(f"{exc}: {_still_moving(timeline, since, app)}") from None

    return wait


TOOL_SUITE = "test_management_tools.py"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The management-tool suite certifies a tool, not an app: it runs when a tool is chosen
    (`--dm-tool`, env DMH_TOOL, ini dm_tool) or when its file is named; `pytest suites` alone
    certifies the app."""
    from harness.fixtures import options

    if collection_path.name != TOOL_SUITE or options.of(config).tool:
        return None
    named = any(Path(arg.split("::")[0]).name == TOOL_SUITE for arg in config.args)
    return None if named else True
