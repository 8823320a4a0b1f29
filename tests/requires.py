"""Tests that need a tool of the machine say which, so a CI that installs it can insist.

A test that cannot run without root, QEMU, Chromium, node, java, a C compiler or a program of
the catalogue (redis, memcached, jcmd, postgres; curl for the README's view) skips with a
reason that starts `needs <tool>[, <tool>]: <why>` (`needs` or `skip_without`). Where
DMH_REQUIRE_TOOLS names that tool (`.ci/run` names every tool its install provides), the
skip is turned into a failure by tests/conftest.py: a CI that lost a tool fails instead of
going green on fewer tests.
"""

from __future__ import annotations

import os
import re
from typing import NoReturn

import pytest

TOOLS = (
    "root", "qemu", "chromium", "node", "java", "cc", "redis", "memcached", "jcmd", "postgres",
    "curl",
)  # fmt: skip
ENV = "DMH_REQUIRE_TOOLS"
_NEEDS = re.compile(r"\bneeds ([a-z]+(?:, [a-z]+)*): ")


def _reason(tools: tuple[str, ...], why: str) -> str:
    unknown = [tool for tool in tools if tool not in TOOLS]
    if not tools or unknown:
        raise ValueError(f"needs: {unknown or tools!r} must name tools among {', '.join(TOOLS)}")
    return f"needs {', '.join(tools)}: {why}"


def needs(*tools: str, missing: str | None) -> pytest.MarkDecorator:
    """Skip the test when `missing` (what is missing, said plainly) is not None."""
    return pytest.mark.skipif(missing is not None, reason=_reason(tools, missing or ""))


def skip_without(*tools: str, why: str) -> NoReturn:
    """Skip the running test for want of `tools`."""
    pytest.skip(_reason(tools, why))


def named_in(reason: str) -> set[str]:
    """The tools a skip reason says the test needs."""
    found = _NEEDS.search(reason)
    return set(found[1].split(", ")) if found else set()


def required() -> set[str]:
    """The tools DMH_REQUIRE_TOOLS names (comma-separated); UsageError for an unknown one."""
    names = {name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()}
    unknown = sorted(names - set(TOOLS))
    if unknown:
        raise pytest.UsageError(
            f"{ENV}: {', '.join(unknown)} is not a tool tests can need (one of {', '.join(TOOLS)})"
        )
    return names
