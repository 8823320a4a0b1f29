"""The tool checks on their own: which lines break the contract, that a breach fails the
check in which it appears (with the line quoted), and that the diagnosis names the defect
(sentinel and unit before "read once"; "read once" only when the host's value moved).

The tool is a real subprocess printing lines; the host's truth is a list of VMInfo the test
changes (the truth sampler's reader is a parameter, so no host is needed for these rules).
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.hyperv.host import VMInfo
from harness.settings import MemorySettings
from harness.toolcheck import (
    DUPLICATE_RULE,
    Breach,
    HostTruth,
    Report,
    ToolCheckFailed,
    ToolChecks,
    ToolProcess,
    parse_line,
)
from harness.units import MB

VM_ID = "0A1B2C3D-0000-4000-8000-000000000001"
SETTINGS = MemorySettings.build(startup="1GB", minimum="512MB", maximum="4GB")


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("hello", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"vm": "a", "metric": "assigned_mb"}', "keys must be"),
        ('{"vm": "a", "metric": "assigned_mb", "value": 1, "host": "h"}', "keys must be"),
        ('{"vm": "", "metric": "assigned_mb", "value": 1}', '"vm" must be'),
        ('{"vm": "a", "metric": "memory", "value": 1}', "metric must be one of"),
        ('{"vm": "a", "metric": "assigned_mb", "value": "1024"}', "finite number"),
        ('{"vm": "a", "metric": "assigned_mb", "value": true}', "finite number"),
        ('{"vm": "a", "metric": "dynamic_memory", "value": 1}', "true or false"),
        ('{"vm": "a", "metric": "status", "value": 0}', "must be a string"),
    ],
)
def test_lines_outside_the_contract_name_the_rule(line: str, rule: str) -> None:
    parsed = parse_line(line, 1.0)
    assert isinstance(parsed, Breach)
    assert rule in parsed.rule
    assert parsed.line == line


def test_vm_id_is_optional_and_normalised() -> None:
    line = json.dumps(
        {"vm": "a", "metric": "buffer", "value": 20, "vm_id": "{" + VM_ID.lower() + "}"}
    )
    assert parse_line(line, 2.0) == Report(2.0, "a", "buffer", 20, VM_ID)


class Host:
    """The host's truth the test sets: one DM VM, assigned memory in MB."""

    def __init__(self) -> None:
        self.assigned_mb = 1280  # not the startup memory (1024), a diagnosis of its own

    def vms(self) -> list[VMInfo]:
        assigned = self.assigned_mb * MB
        return [
            VMInfo("web1", VM_ID, "Running", "OkApplicationsHealthy", 2, "", assigned,
                   assigned // 2, "OK", SETTINGS)
        ]  # fmt: skip


@pytest.fixture
def host() -> Iterator[tuple[Host, HostTruth]]:
    state = Host()
    truth = HostTruth(state.vms, interval=0.1)
    try:
        yield state, truth
    finally:
        truth.stop()


def tool(tmp_path: Path, body: str) -> ToolProcess:
    """A real tool: a Python script running `body` (its poll loop)."""
    script = tmp_path / "tool.py"
    script.write_text(
        "import json, sys, time\n"
        "def emit(vm, metric, value):\n"
        "    print(json.dumps({'vm': vm, 'metric': metric, 'value': value}), flush=True)\n"
        f"{textwrap.dedent(body)}\n"
    )
    return ToolProcess([sys.executable, str(script)], {})


def run_checks(tool_proc: ToolProcess, truth: HostTruth, within: float = 1.5) -> str:
    checks = ToolChecks(tool_proc, truth, within=within, host_name="HV-HOST")
    try:
        with pytest.raises(ToolCheckFailed) as failed:
            checks.agrees(["web1"], ("assigned_mb",), since=truth.clock())
    finally:
        tool_proc.stop()
    return str(failed.value)


def test_a_tool_started_at_the_startup_memory_is_named_for_both_defects_it_may_have(
    tmp_path: Path, host: tuple[Host, HostTruth]
) -> None:
    """The host shows the startup memory (1024 MB) when the tool first reads, then moves: a
    tool that read once and one that reports the startup setting print the same 1024 from
    then on, so the diagnosis names both (it was "startup memory" or "read once" depending
    on where the balancer had left the VM: a flip between CI runs)."""
    state, truth = host
    state.assigned_mb = 1024
    truth.wait_steady(["web1"], seconds=0.3)
    proc = tool(tmp_path, """
        while True:
            emit("web1", "assigned_mb", 1024)
            time.sleep(0.1)
    """)  # fmt: skip
    time.sleep(0.5)  # its first reports land while the host still shows 1024
    state.assigned_mb = 1536
    first = run_checks(proc, truth).splitlines()[0]
    assert first.startswith("reports the startup memory as the VM's memory, or reads ")
    assert "assigned_mb once and never again (keeps 1024)" in first


def test_a_line_outside_the_contract_fails_where_it_appears_quoted(
    tmp_path: Path, host: tuple[Host, HostTruth]
) -> None:
    _, truth = host
    proc = tool(tmp_path, """
        for n in range(10**6):
            emit("web1", "assigned_mb", 2048)  # wrong: the check would wait 5 s for it
            emit("web1", "demand_mb", 512)
            if n == 5:
                print("poll 5 done", flush=True)
            time.sleep(0.1)
    """)  # fmt: skip
    message = run_checks(proc, truth, within=5.0)
    assert message.splitlines()[0] == "prints a line outside the contract (not JSON): 'poll 5 done'"


def test_the_host_reported_as_a_vm_fails(tmp_path: Path, host: tuple[Host, HostTruth]) -> None:
    _, truth = host
    proc = tool(tmp_path, """
        while True:
            emit("hv-host", "assigned_mb", 65536)
            time.sleep(0.1)
    """)  # fmt: skip
    message = run_checks(proc, truth)
    assert message.startswith("reports the host itself (HV-HOST) as a VM: ")
    assert '"vm": "hv-host"' in message


def test_two_values_for_one_vm_and_metric_in_one_poll_are_a_duplicate(
    tmp_path: Path, host: tuple[Host, HostTruth]
) -> None:
    _, truth = host
    proc = tool(tmp_path, """
        while True:
            emit("web1", "assigned_mb", 1024)
            emit("web1", "assigned_mb", 2048)
            emit("web1", "demand_mb", 512)
            time.sleep(0.1)
    """)  # fmt: skip
    assert DUPLICATE_RULE in run_checks(proc, truth)


@pytest.mark.parametrize(
    ("value", "moves", "reason"),
    [
        (2147483647, True, "reports WMI's no-data value 2147483647 as assigned_mb"),
        (-512, True, "reports a negative assigned_mb (-512)"),
        (1280 * 1048576, False, "reports assigned_mb in the wrong unit"),
        (1280, True, "reads assigned_mb once and never again (keeps 1280)"),
        (1024, True, "reports the startup memory as the VM's memory"),
        (1000, False, "does not track assigned_mb"),
    ],
)
def test_the_diagnosis_names_the_defect(
    tmp_path: Path, host: tuple[Host, HostTruth], value: int, moves: bool, reason: str
) -> None:
    """A tool printing one constant: what it got wrong decides the first line; "read once"
    only when the host's value changed while the tool's did not."""
    state, truth = host
    proc = tool(tmp_path, f"""
        while True:
            emit("web1", "assigned_mb", {value})
            time.sleep(0.1)
    """)  # fmt: skip
    truth.wait_steady(["web1"], seconds=0.3)
    if moves:
        state.assigned_mb = 1536
    assert run_checks(proc, truth).splitlines()[0] == reason
