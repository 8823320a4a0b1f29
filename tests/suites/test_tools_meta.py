"""Meta-tests: the management-tool suite gives each reference tool the verdict it deserves.

Each tool runs through the suite in a real pytest subprocess on the embedded emulator; the
result records and summary.json must show the right tests failing for the right reason,
and both good tools (WMI and cmdlets) must be certified.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.report.model import TestRecord, load_records
from harness.toolcheck import ToolCheckFailed
from tests.embedded import REPO, use_plugin_env

SUITE = REPO / "suites" / "test_management_tools.py"
STALE_REASON = "reports the startup memory as the VM's memory"

pytest_plugins = ["pytester"]


def run_tools_suite(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tool: str,
    *args: str,
    option: bool = False,
) -> tuple[dict[str, TestRecord], dict[str, Any]]:
    """The tool suite for `tool`, named in DMH_TOOL; with `option`, named by --dm-tool while
    DMH_TOOL names the stale tool (the command line wins)."""
    out = pytester.path / "out"
    use_plugin_env(monkeypatch, DMH_TOOL="stale_tool.py" if option else tool)
    if option:
        args = (f"--dm-tool={tool}", *args)
    result = pytester.runpytest_subprocess(
        str(SUITE), f"--rootdir={REPO}", "-p", "no:cacheprovider", f"--dm-report-dir={out}",
        "--dm-guest-os=linux", *args, timeout=600,
    )  # fmt: skip
    records = {r.nodeid.split("::")[-1]: r for r in load_records(out / "records")}
    assert records, result.stdout.str()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return records, summary


@pytest.mark.parametrize(
    ("tool", "option"),
    [("wmi_tool.py", False), ("cmdlet_tool.py", True), ("counters_tool.py", False)],
)
def test_good_tools_are_certified(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tool: str, option: bool
) -> None:
    records, summary = run_tools_suite(pytester, monkeypatch, tool, "-n", "2", option=option)
    assert len(records) == 7
    bad = {name: (r.outcome, r.message) for name, r in records.items() if r.outcome != "passed"}
    assert not bad
    assert summary["verdict"]["status"] == "certified"
    assert all(r.app == f"tool: {tool}" for r in records.values())


def test_stale_tool_is_not_certified_because_it_reports_startup_memory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, summary = run_tools_suite(
        pytester, monkeypatch, "stale_tool.py", "-n", "2", "-k", "hot_add or settings"
    )
    for name in ("test_tracks_hot_add", "test_reports_memory_and_settings_of_every_vm"):
        assert records[name].outcome == "failed", name  # the tool's fault, not "broken"
        assert STALE_REASON in records[name].message, records[name].message
    assert summary["verdict"]["status"] == "not certified"
    assert any(STALE_REASON in reason for reason in summary["verdict"]["reasons"])


def test_tool_that_reads_counters_once_fails_where_memory_moves(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, summary = run_tools_suite(
        pytester, monkeypatch, "once_tool.py", "-n", "2", "-k", "hot_add or runtime"
    )
    hot_add = records["test_tracks_hot_add"]
    assert hot_add.outcome == "failed"
    assert "once and never again" in hot_add.message, hot_add.message
    assert records["test_tracks_runtime_setting_changes"].outcome == "failed"
    assert summary["verdict"]["status"] == "not certified"


def test_a_tool_that_dies_fails_and_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = pytester.path / "crash_tool.py"
    crash.write_text("import sys\nprint('starting', file=sys.stderr)\nsys.exit(3)\n")
    records, _ = run_tools_suite(pytester, monkeypatch, f"python3 {crash}", "-k", "runtime")
    record = records["test_tracks_runtime_setting_changes"]
    assert record.outcome == "failed"
    assert "the tool exited (code 3)" in record.message, record.message


@pytest.mark.parametrize(
    ("tool", "select", "test", "first_line"),
    [
        ("bytes_tool.py", "every_vm", "test_reports_memory_and_settings_of_every_vm",
         "reports demand_mb in the wrong unit"),
        ("sentinel_tool.py", "every_vm", "test_reports_memory_and_settings_of_every_vm",
         "reports WMI's no-data value 2147483647 as demand_mb"),
        ("host_tool.py", "every_vm", "test_reports_memory_and_settings_of_every_vm",
         "reports the host itself ("),
        ("sticky_tool.py", "coming_and_going", "test_survives_vms_coming_and_going",
         "keeps reporting a removed VM"),
        ("related_tool.py", "checkpoint", "test_reports_a_vm_with_a_checkpoint_once_with_its_own_settings",
         "does not track maximum_mb"),
        ("chatty_tool.py", "balloon", "test_tracks_balloon_removal",
         "prints a line outside the contract (not JSON): 'poll 5: "),
    ],
)  # fmt: skip
def test_each_defect_is_named_by_the_first_line(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tool: str,
    select: str,
    test: str,
    first_line: str,
) -> None:
    """Each message in the README's list, from a twin of the good WMI tool with exactly that
    defect, in the test where the defect shows (the chatty tool's line comes after its
    first polls: the contract is held in every test, not only the first)."""
    records, summary = run_tools_suite(pytester, monkeypatch, tool, "-k", select)
    record = records[test]
    assert record.outcome == "failed", (record.outcome, record.message)
    reason = record.message.removeprefix(f"{ToolCheckFailed.__module__}.ToolCheckFailed: ")
    assert reason.startswith(first_line), record.message
    assert summary["verdict"]["status"] == "not certified"


def test_a_tool_that_cannot_start_is_broken_not_failed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under pytest (no `dmh certify` preflight), a tool whose script does not exist breaks
    the test in setup, before any VM: never a verdict on the tool."""
    records, summary = run_tools_suite(pytester, monkeypatch, "python3 missing.py", "-k", "runtime")
    record = records["test_tracks_runtime_setting_changes"]
    assert record.outcome == "broken", (record.outcome, record.message)
    assert "the script 'missing.py' does not exist" in record.message
    assert summary["verdict"]["status"] == "inconclusive"
