"""`dmh certify` refuses a subject it cannot start before anything is built (issue 22): a
tool or app whose program or script does not exist, and `--tool` with `--app`, exit 4 with
one line naming the value, and no run directory (so no VM) exists afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.subject import check_app, check_subjects, check_tool, tool_argv
from tests.embedded import REPO, plugin_env

DMH = str(Path(sys.executable).parent / "dmh")
TOOLS = REPO / "suites" / "tools"
APPS = REPO / "suites" / "apps"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tool", "python3 missing.py"], "--tool: the script 'missing.py' does not exist"),
        (["--tool", "no-such-monitor --poll 1"], "--tool: the program 'no-such-monitor' is not"),
        (["--tool", "wmi_tool.py", "--app", "cache_good.py"], "--app and --tool"),
        (["--app", "python3 missing.py"], "--app: the script 'missing.py' does not exist"),
        (["--app", "missing_app.py"], "--app: 'missing_app.py' is neither a file"),
    ],
)
def test_a_subject_that_cannot_start_is_a_usage_error_and_nothing_runs(
    tmp_path: Path, args: list[str], says: str
) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [DMH, "certify", "--out", str(out), *args],
        cwd=REPO, env=plugin_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert says in done.stderr, done.stderr
    assert not out.exists()  # no run directory: pytest never started, no VM was built


def test_the_reference_tools_and_apps_pass_the_preflight() -> None:
    for tool in ("wmi_tool.py", "python suites/tools/stale_tool.py", "python3 -m json.tool"):
        check_tool(tool, TOOLS, REPO)
    for app in ("cache_good.py", "python3 suites/apps/cache_good.py", "/opt/app/run --x"):
        check_app(app, REPO, APPS)
    check_subjects("cache_good.py", None)


def test_tool_argv_runs_python_as_the_harness_python() -> None:
    assert tool_argv("python x.py --a", TOOLS) == [sys.executable, "x.py", "--a"]
    assert tool_argv("once_tool.py", TOOLS) == [sys.executable, str(TOOLS / "once_tool.py")]
    with pytest.raises(ConfigError, match="not executable"):
        check_tool("./README.md --poll 1", TOOLS, REPO)
