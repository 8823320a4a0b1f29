"""Fixtures for the report tests: result-record directories built with real timelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from .synthetic import (
    HOSTILE,
    dm_timeline,
    make_record,
    passing_expectations,
    stale_view_failure,
)


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five tests: two passed, one failed (stale app view), one broken (lever), one
    skipped with a hostile scenario name. Returns the records directory (read-only)."""
    records = tmp_path_factory.mktemp("mixed") / "records"
    make_record(
        records,
        "hot-add-grows-cache",
        "ubuntu-22.04",
        "passed",
        timeline=dm_timeline(),
        expectations=passing_expectations(),
    )
    make_record(
        records,
        "hot-add-grows-cache",
        "windows-2022",
        "failed",
        timeline=dm_timeline(windows_guest=True, app_reacts=False),
        expectations=(passing_expectations()[0], stale_view_failure()),
        message="harness.errors.ExpectationFailed: app sees hot-added memory within 10 s",
    )
    make_record(
        records,
        "balloon-shrinks-cache",
        "ubuntu-22.04",
        "passed",
        timeline=dm_timeline(),
        expectations=passing_expectations(),
    )
    make_record(
        records,
        "balloon-shrinks-cache",
        "windows-2022",
        "broken",
        message="harness.errors.LeverError: lowering maximum to 2048 MB did not move memory",
    )
    make_record(
        records,
        HOSTILE,
        "ubuntu-22.04",
        "skipped",
        timeline=dm_timeline(name=HOSTILE, seconds=5),
        message="not applicable <b>here</b>",
    )
    return records
