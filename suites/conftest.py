"""Shared steps of the certification suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.timeline import Sample, Timeline


def _steady_since(timeline: Timeline, seconds: float, app: bool) -> bool:
    now = timeline.now()
    window = timeline.samples_between(now - seconds, now)
    if len(window) < 3 or window[0].t > now - seconds + 0.5:
        return False
    assigned = {s.host.assigned_mb for s in window if s.host}
    # The app's process is sampled (its stats, from the guest), whether it reports or not.
    sampled = not app or all(s.app is not None for s in window)
    return len(assigned) == 1 and 0 not in assigned and sampled


@pytest.fixture
def steady(timeline: Timeline, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Wait (with a deadline) until assigned memory has held still: the host's state, never
    the app's reports (metric lines are optional). An app that ends meanwhile fails the test
    at once (the app fixture guards every wait)."""

    app = "guest_app" in request.fixturenames

    def wait(seconds: float = 1.5, timeout: float = 45.0) -> Sample:
        return timeline.wait_for(
            lambda s: _steady_since(timeline, seconds, app),
            timeout,
            f"assigned memory steady for {seconds:g}s" + (" with the app sampled" if app else ""),
        )

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
