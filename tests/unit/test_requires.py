"""A test that skips for want of a tool CI installs fails there (DMH_REQUIRE_TOOLS), saying
which tool; elsewhere it stays a skip that says so."""

from __future__ import annotations

import pytest

from tests.embedded import REPO

pytest_plugins = ["pytester"]
QUIET = ("-p", "no:cacheprovider", "-p", "no:harness.fixtures.plugin")  # the hook alone

TESTS = """
import pytest
from tests.requires import needs, skip_without

@needs("node", missing="node is not on PATH")
def test_marked():
    pass

def test_called():
    skip_without("root", "cc", why="no root and no compiler here")

def test_not_a_tool():
    pytest.skip("set DMH_TEST_HOST to test a lab host")
"""


@pytest.fixture
def gated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]')
    pytester.makepyfile(test_gated=TESTS)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("DMH_REQUIRE_TOOLS", raising=False)
    return pytester


def test_without_the_variable_they_are_skips_naming_the_tool(gated: pytest.Pytester) -> None:
    result = gated.runpytest_subprocess(*QUIET, "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*needs node: node is not on PATH*"])
    result.stdout.fnmatch_lines(["*needs root, cc: no root and no compiler here*"])


def test_a_required_tool_turns_its_skip_into_a_failure(
    gated: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMH_REQUIRE_TOOLS", "node,cc")
    result = gated.runpytest_subprocess(*QUIET)
    # The mark skips in setup (an error once turned), the call skips in the test (a failure);
    # a skip that names no tool stays a skip.
    result.assert_outcomes(errors=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*node must be here (DMH_REQUIRE_TOOLS names it)*"])
    result.stdout.fnmatch_lines(["*cc must be here (DMH_REQUIRE_TOOLS names it)*"])


def test_an_unknown_tool_is_a_usage_error(
    gated: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMH_REQUIRE_TOOLS", "node,chromum")
    result = gated.runpytest_subprocess(*QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*DMH_REQUIRE_TOOLS: chromum is not a tool tests can need*"])
