"""The harness's own tests: a skip for want of a tool that DMH_REQUIRE_TOOLS names fails."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.requires import ENV, named_in, required

_REQUIRED = pytest.StashKey[set[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REQUIRED] = required()  # a misspelt tool is a usage error, before any test


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
