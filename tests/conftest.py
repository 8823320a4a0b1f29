"""The harness's own tests: a skip for want of a tool that DMH_REQUIRE_TOOLS names fails;
Ctrl-C has its default meaning in the test processes and the runs they start."""

from __future__ import annotations

import os
import signal
from collections.abc import Generator

import pytest

from tests.requires import ENV, named_in, required

_REQUIRED = pytest.StashKey[set[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REQUIRED] = required()  # a misspelt tool is a usage error, before any test
    # A runner that starts the tests in the background of a non-interactive shell leaves
    # SIGINT ignored, and every child inherits that: the tests that press Ctrl-C on a run
    # would find it ignored. Here it means what a terminal's Ctrl-C means, and so in the
    # runs the tests start (a handled signal is reset to its default in a child at exec).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Options for this run (CI's --durations) are not the options of the runs tests start.
    os.environ.pop("PYTEST_ADDOPTS", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        lost = sorted(named_in(reason) & item.config.stash[_REQUIRED])
        if lost:
            report.outcome = "failed"
            report.longrepr = (
                f"{', '.join(lost)} must be here ({ENV} names it), but the test skipped: {reason}"
            )
    return report
