"""Management-tool certification: does a host-side tool report Dynamic Memory right?

The tool under test (`--dm-tool`, ini dm_tool, env DMH_TOOL; default the good reference WMI
tool) runs on the controller
with the contract's environment (README "Certify a management tool"), discovers VMs itself
and prints JSON lines `{"vm", "metric", "value"}`. While DM VMs run, hot-add, balloon,
change settings at runtime, and come and go, each metric must match what the host shows
(Get-VM / Get-VMMemory) within TRACK_WITHIN seconds (15 s), the tool must keep running, and
the DM settings it shows must be the VM's, not defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import allure
import pytest

from harness.errors import LeverError
from harness.levers import MemoryLevers
from harness.settings import MemorySettings
from harness.subject import check_tool
from harness.subject import tool_argv as subject_argv
from harness.timeline import Timeline
from harness.toolcheck import (
    METRICS,
    TRACK_WITHIN,
    HostTruth,
    ToolChecks,
    ToolProcess,
    contract_env,
)

EPIC = "Hyper-V Dynamic Memory certification"
TOOLS_DIR = Path(__file__).resolve().parent / "tools"
DEFAULT_TOOL = "wmi_tool.py"
pytestmark = [allure.epic(EPIC), allure.feature("Management tool")]

DM_A = MemorySettings.build(startup="1GB", minimum="512MB", maximum="4GB", buffer=20, priority=50)
DM_B = MemorySettings.build(
    startup="1536MB", minimum="768MB", maximum="3GB", buffer=35, priority=80
)
STATIC = MemorySettings.build(dynamic=False, startup="768MB", priority=30)


def tool_command(config: pytest.Config) -> str:
    """The tool under test: `--dm-tool` (or DMH_TOOL, or ini dm_tool), else the reference."""
    from harness.fixtures import options

    return options.of(config).tool or DEFAULT_TOOL


def tool_argv(command: str) -> list[str]:
    """The argv the tool command runs as (`harness.subject.tool_argv`: `python` is this
    Python; a bare `name.py` is a reference tool in suites/tools)."""
    return subject_argv(command, TOOLS_DIR)


@pytest.fixture
def guest_os(pytestconfig: pytest.Config) -> str:
    """One guest profile is enough: the tool reads the host, not the guest."""
    from harness.fixtures import options

    return options.of(pytestconfig).guest_profiles[0]


@pytest.fixture
def host_truth(dm_host) -> Iterator[HostTruth]:  # type: ignore[no-untyped-def]
    truth = HostTruth(dm_host.host.vms)
    try:
        yield truth
    finally:
        truth.stop()


@pytest.fixture
def start_tool(dm_host, host_truth: HostTruth, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Start the tool under test (once per test, when the test says); stopped afterwards.
    Its stderr and the reports it made are attached to the test."""
    command = tool_command(request.config)
    # A tool that cannot start is the run's setup problem (broken, before any VM is built),
    # never the tool's verdict; `dmh certify` refuses it before pytest starts (exit 4).
    check_tool(command, TOOLS_DIR, Path.cwd())
    env = contract_env(dm_host.host.session.target)
    host_name = dm_host.host.facts().computer_name
    started: list[ToolProcess] = []

    def start() -> ToolChecks:
        with allure.step(f"start the tool under test: {command}"):
            tool = ToolProcess(tool_argv(command), env)
        started.append(tool)
        return ToolChecks(tool, host_truth, host_name=host_name)

    _label_record(request, command)
    yield start
    for tool in started:
        code = tool.stop()
        lines = [
            f"{r.t - tool.started:7.2f}s {r.vm} {r.metric}={r.value!r}" for r in tool.snapshot()
        ]
        allure.attach("\n".join(lines[-400:]) or "(none)", "tool reports", "text/plain", "txt")
        allure.attach(
            "\n".join(tool.stderr_tail) or "(empty)",
            f"tool stderr (exit {code})",
            "text/plain",
            "txt",
        )


def _label_record(request: pytest.FixtureRequest, command: str) -> None:
    """The result record names the tool where app certification names the app."""
    from harness.fixtures.state import data_of

    data_of(request.node).app = f"tool: {command}"


def _levers(dm_host, name: str) -> MemoryLevers:  # type: ignore[no-untyped-def]
    return MemoryLevers(dm_host.host, name, Timeline(name=name))


def _move(dm_host, truth: HostTruth, name: str, buffer: int, step_mb: int = 128) -> float:  # type: ignore[no-untyped-def]
    """Make DM move a VM's memory by changing its buffer (a runtime change every version
    from 2012 allows, §2.3): a high buffer hot-adds, a low one balloons. Waits until the
    host shows the move and holds it; returns then. No move is the harness's problem
    (LeverError: broken, not failed)."""
    before = int(truth.latest()[name]["assigned_mb"])
    up = buffer > int(truth.latest()[name]["buffer"])
    with allure.step(f"{'hot-add' if up else 'balloon'}: buffer → {buffer}% (from {before} MB)"):
        _levers(dm_host, name).set_bounds(buffer=buffer)
        end = time.monotonic() + 60
        while True:
            now = int(truth.latest()[name]["assigned_mb"])
            if (now >= before + step_mb) if up else (now <= before - step_mb):
                break
            if time.monotonic() > end:
                raise LeverError(f"memory of {name!r} did not move from {before} MB ({now} MB)")
            time.sleep(0.2)
        since = truth.wait_steady([name])
    allure.dynamic.parameter("hot-add" if up else "balloon", f"{before}→{now} MB")
    return since


@allure.story("Memory and DM settings of several VMs")
@allure.severity(allure.severity_level.CRITICAL)
def test_reports_memory_and_settings_of_every_vm(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """Two DM VMs with different settings, a static VM and a DM VM that is off: every metric
    of every VM as the host shows it (settings read, not assumed; no 'no data' sentinels)."""
    vms = [
        dm_vm_factory.create(DM_A, guest_os),
        dm_vm_factory.create(DM_B, guest_os),
        dm_vm_factory.create(STATIC, guest_os),
        dm_vm_factory.create(DM_B.with_changes(priority=10, buffer=50), guest_os, start=False),
    ]
    names = [vm.name for vm in vms]
    host_truth.wait_steady(names)
    checks = start_tool()
    with allure.step("the tool reports every metric of every VM as the host shows it"):
        checks.agrees(names, METRICS)
    checks.check_contract()


@allure.story("Hot-add")
@allure.severity(allure.severity_level.CRITICAL)
def test_tracks_hot_add(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """The host hot-adds memory to a VM: the tool shows the new assigned memory, demand
    and status within the stated time."""
    vm = dm_vm_factory.create(DM_A, guest_os)
    other = dm_vm_factory.create(DM_B, guest_os)
    host_truth.wait_steady([vm.name, other.name])
    checks = start_tool()
    checks.agrees([vm.name, other.name], ("assigned_mb", "demand_mb"))
    since = _move(dm_host, host_truth, vm.name, buffer=400)
    with allure.step(f"the tool shows the hot-add within {TRACK_WITHIN:g}s"):
        checks.agrees([vm.name], ("assigned_mb", "demand_mb", "buffer", "status"), since=since)
    checks.check_contract()


@allure.story("Balloon removal")
@allure.severity(allure.severity_level.CRITICAL)
def test_tracks_balloon_removal(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """Memory is hot-added, then ballooned away: the tool follows it down."""
    vm = dm_vm_factory.create(DM_A, guest_os)
    host_truth.wait_steady([vm.name])
    _move(dm_host, host_truth, vm.name, buffer=400)
    checks = start_tool()
    checks.agrees([vm.name], ("assigned_mb",))
    since = _move(dm_host, host_truth, vm.name, buffer=5)
    with allure.step(f"the tool shows the balloon removal within {TRACK_WITHIN:g}s"):
        checks.agrees([vm.name], ("assigned_mb", "demand_mb", "buffer", "status"), since=since)
    checks.check_contract()


@allure.story("Runtime setting changes")
@allure.severity(allure.severity_level.NORMAL)
def test_tracks_runtime_setting_changes(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """Maximum raised, minimum lowered, priority and buffer changed while the VM runs (what
    the host version allows, §2.3): the tool shows the new settings."""
    vm = dm_vm_factory.create(DM_B, guest_os)
    host_truth.wait_steady([vm.name])
    checks = start_tool()
    checks.agrees([vm.name], ("maximum_mb", "minimum_mb", "priority", "buffer"))
    _levers(dm_host, vm.name).set_bounds(maximum="4GB", minimum="512MB", priority=65, buffer=25)
    since = host_truth.clock()
    with allure.step(f"the tool shows the new settings within {TRACK_WITHIN:g}s"):
        checks.agrees([vm.name], ("maximum_mb", "minimum_mb", "priority", "buffer"), since=since)
    checks.check_contract()


@allure.story("VMs coming and going")
@allure.severity(allure.severity_level.CRITICAL)
def test_survives_vms_coming_and_going(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """A VM is started while the tool runs and another is removed: the tool finds the new
    one, forgets the removed one, and keeps reporting the rest."""
    stays = dm_vm_factory.create(DM_A, guest_os)
    goes = dm_vm_factory.create(DM_B, guest_os)
    host_truth.wait_steady([stays.name, goes.name])
    checks = start_tool()
    checks.agrees([stays.name, goes.name], ("assigned_mb",))
    with allure.step("a VM is created and started while the tool runs"):
        arrives = dm_vm_factory.create(DM_B.with_changes(priority=90), guest_os)
    since = host_truth.wait_steady([arrives.name])
    checks.agrees([arrives.name], METRICS, since=since)
    with allure.step("a VM is removed while the tool runs"):
        removed_at = time.monotonic()
        dm_host.host.remove_vm(goes.name)
    checks.forgets(goes.name, since=removed_at)
    checks.agrees([stays.name, arrives.name], ("assigned_mb", "demand_mb"), since=removed_at)
    checks.check_contract()


@allure.story("All VMs stopped and started again")
@allure.severity(allure.severity_level.CRITICAL)
def test_survives_all_vms_stopped_and_started(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """Every VM is turned off while the tool runs, then started again. With no VM running
    the DM counter instances are gone (a tool that errors then, as telegraf's did —
    influxdata/telegraf#16086 — fails); the tool shows the VMs off (0 MB, status "") and
    follows them back."""
    vms = [dm_vm_factory.create(DM_A, guest_os), dm_vm_factory.create(DM_B, guest_os)]
    names = [vm.name for vm in vms]
    host_truth.wait_steady(names)
    # Memory away from the startup memory first: a tool that read the VM once is then told
    # apart from one that reports the startup memory (the same value otherwise).
    for name in names:
        _move(dm_host, host_truth, name, buffer=400)
    checks = start_tool()
    checks.agrees(names, ("assigned_mb", "demand_mb"))
    with allure.step("every VM is turned off"):
        for name in names:
            dm_host.host.stop_vm(name)
    since = host_truth.wait_steady(names)
    checks.agrees(names, ("assigned_mb", "demand_mb", "status"), since=since)
    with allure.step("every VM is started again"):
        for name in names:
            dm_host.host.start_vm(name)
    since = host_truth.wait_steady(names)
    checks.agrees(names, ("assigned_mb", "demand_mb", "status"), since=since)
    checks.check_contract()


@allure.story("A VM with checkpoints")
@allure.severity(allure.severity_level.NORMAL)
def test_reports_a_vm_with_a_checkpoint_once_with_its_own_settings(
    dm_vm_factory,
    dm_host,
    host_truth: HostTruth,
    start_tool: Callable[[], ToolChecks],
    guest_os: str,
) -> None:
    """A checkpoint keeps the settings the VM had, served beside the VM's own (as on a
    host: another Msvm_VirtualSystemSettingData, VirtualSystemType ...:Snapshot:Realized):
    after the VM's settings change, the tool shows the VM once, with its current settings
    (a tool that takes every settings object it walks to shows the checkpoint's)."""
    vm = dm_vm_factory.create(DM_A, guest_os)
    host_truth.wait_steady([vm.name])
    with allure.step("checkpoint the VM, then raise its maximum and change buffer and priority"):
        dm_host.host.checkpoint(vm.name, "before-change")
        _levers(dm_host, vm.name).set_bounds(maximum="6GB", buffer=30, priority=70)
    since = host_truth.wait_steady([vm.name])
    checks = start_tool()
    checks.agrees([vm.name], METRICS, since=since)
    checks.check_contract()
