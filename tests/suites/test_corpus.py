"""Apps the project did not write, through the scenarios that used to misjudge them (issue
#21): a correct cache sized from MemAvailable that resizes by building a new buffer before
freeing the old one is certified; its broken twins (reads memory once, never gives back) are
still caught, each for its own defect. The whole corpus, many times and under a CPU burner,
is `benchmarks/verdict_stability.py`."""

from __future__ import annotations

import pytest

from tests.embedded import REPO
from tests.suites.test_meta import RELEASE, TRACK, failed_expectations, run_suite

CORPUS = f"--dm-app-dir={REPO / 'tests' / 'corpus'}"

pytest_plugins = ["pytester"]


def test_a_correct_cache_written_elsewhere_is_certified(pytester: pytest.Pytester) -> None:
    """A load-forced hot-add (the load gives its memory back), pressure at the ceiling from a
    small cache, and the balancer's own moves between two samples: all passed, both guests."""
    records = run_suite(
        pytester, "python3 avail_cache.py", CORPUS, "-n", "2", "-k", "hot_add or pressure"
    )
    assert len(records) == 4
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad


def test_its_stale_twin_fails_tracking(pytester: pytest.Pytester) -> None:
    """Its view stays at the total it read at start: the balancer's hot-adds after a start
    below demand are memory it never follows."""
    records = run_suite(
        pytester, "python3 avail_cache.py --stale", CORPUS, "--dm-guest-os=linux", "-k",
        "start_below",
    )  # fmt: skip
    record = records["test_start_below_demand[linux]"]
    assert record.outcome == "failed"
    assert TRACK in failed_expectations(record), record.message


def test_its_hogging_twin_fails_to_release(pytester: pytest.Pytester) -> None:
    records = run_suite(
        pytester, "python3 avail_cache.py --hog", CORPUS, "--dm-guest-os=linux", "-k", "pressure"
    )
    record = records["test_pressure_response[linux]"]
    assert record.outcome == "failed"
    assert RELEASE in failed_expectations(record), record.message
