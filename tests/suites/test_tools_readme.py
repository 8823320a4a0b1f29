"""The README's `dmh certify --tool` examples print the verdicts they claim, run verbatim from
the checkout with the default options (issue 22: under `--dm-guest-os both`, the default,
the reference tool's run was INCONCLUSIVE although the README said CERTIFIED)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.embedded import REPO, plugin_env

# `.venv/bin/dmh certify --tool "python suites/tools/wmi_tool.py"     # CERTIFIED`
EXAMPLE = re.compile(r"^(\.venv/bin/dmh certify --tool .+?)\s+# ((?:NOT )?CERTIFIED)(?::\s*(.+))?$")
EXIT = {"CERTIFIED": 0, "NOT CERTIFIED": 1}


def readme_examples() -> list[tuple[str, str, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = [m.groups("") for m in map(EXAMPLE.match, text.splitlines()) if m]
    return [(str(a), str(b), str(c)) for a, b, c in found]


def test_the_readme_has_tool_examples() -> None:
    claims = {claim for _, claim, _ in readme_examples()}
    assert claims == {"CERTIFIED", "NOT CERTIFIED"}


@pytest.mark.parametrize(("command", "claim", "why"), readme_examples())
def test_a_readme_tool_example_prints_the_verdict_it_claims(
    command: str, claim: str, why: str
) -> None:
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).parent / "dmh")  # the checkout's .venv when run from it
    done = subprocess.run(
        argv, cwd=REPO, env=plugin_env(), capture_output=True, text=True, timeout=600
    )
    out = done.stdout
    assert f"VERDICT: {claim}\n" in out, out[-3000:] + done.stderr[-2000:]
    assert done.returncode == EXIT[claim], out[-3000:]
    first_reason = out.split(f"VERDICT: {claim}\n", 1)[1].split("\n  - ", 1)[1]
    # The README's words after the claim are the gist of the first reason.
    for word in why.split():
        assert word in first_reason, first_reason
