"""The harness's named scripts (harness/hyperv/scripts), recognised by their
`# dmh-script: <name>` line: the emulator runs what each script does, not PowerShell.
"""

from __future__ import annotations

import uuid
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.counters import perf_instance_name
from harness.emulator.cmdlets.guest_ops import run_guest_operation
from harness.emulator.cmdlets.handler import SCRIPT_LINE
from harness.emulator.cmdlets.params import Params, bind
from harness.emulator.cmdlets.realhost import (
    POWERSHELL,
    check_powershell,
    check_received,
    code,
    perf_by_plain_name,
)
from harness.emulator.cmdlets.registry import script
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import (
    CommandNotFoundError,
    EmulatorError,
    InvalidParameterError,
    NamedParameterError,
    ObjectNotFoundError,
    ResourceExistsError,
)
from harness.emulator.guestface import GuestState
from harness.emulator.host import DEFAULT_STARTUP, VmRecord, VMState
from harness.emulator.psobjects import int64
from harness.emulator.psrp import Command
from harness.settings import HostVersion

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

_OS = {
    HostVersion.V2008R2SP1: ("Microsoft Windows Server 2008 R2 Datacenter", "6.1.7601"),
    HostVersion.V2012: ("Microsoft Windows Server 2012 Datacenter", "6.2.9200"),
    HostVersion.V2012R2: ("Microsoft Windows Server 2012 R2 Datacenter", "6.3.9600"),
    HostVersion.V2016: ("Microsoft Windows Server 2016 Datacenter", "10.0.14393"),
    HostVersion.V2019: ("Microsoft Windows Server 2019 Datacenter", "10.0.17763"),
    HostVersion.V2022: ("Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
}
_GUEST_OPS = "guest-ops"


def _vm_named(h: HyperVHandler, name: str) -> VmRecord:
    return h.vm_named(name)


@script("host-facts")
def _host_facts(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    caption, version = _OS[h.host.version]
    # A PowerShell 2.0 host fails at the first 3.0 command the script runs unguarded.
    check_powershell(c.name, h.host.version)
    powershell = POWERSHELL[h.host.version]
    if powershell < 3:  # the script's 2.0 branch: what Get-WmiObject and 2.0 can say
        return [
            custom(ComputerName=h.host.name, OSCaption=caption, OSVersion=version,
                   PSVersion=int64(powershell), HyperVModule=False, CheckpointCmdlets=False)
        ]  # fmt: skip
    # 2008 R2 SP1 has no Hyper-V module, 2012 no *-VMCheckpoint cmdlets (real-host facts).
    module = h.host.version is not HostVersion.V2008R2SP1
    checkpoints = module and h.host.version is not HostVersion.V2012
    # The "System Balancer" instance of the balancer's CIM performance class, by name.
    balancer = h.host.balancer_counters()
    return [
        custom(
            ComputerName=h.host.name,
            PSVersion=int64(powershell),
            OSCaption=caption,
            OSVersion=version,
            HyperVModule=module,
            CheckpointCmdlets=checkpoints,
            MemoryCapacity=int64(h.host.total_memory) if checkpoints else None,
            AvailableMemoryMB=int64(int(balancer.get("Available Memory", 0))),
            AveragePressure=int64(int(balancer.get("Average Pressure", 0))),
        )
    ]


@script("new-vm-from-template")
def _new_vm_from_template(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Name", "TemplatePath", "DiskDirectory", "StartupBytes", "Generation", "Notes",
         "SwitchName"],
    )  # fmt: skip
    name = p.required("Name")
    if any(vm.name.casefold() == name.casefold() for vm in h.host.find_vms("*")):
        raise ResourceExistsError(
            f'A virtual machine named "{name}" already exists; the harness needs one VM per name.',
            target=name,
        )
    template = p.text("TemplatePath")
    vhd = ""
    guest_os = None
    if template:
        guest_os = h.host.disk_os(template)
        if guest_os is None:
            raise ObjectNotFoundError(
                f"The system cannot find the file specified: '{template}'.", target=template
            )
        extension = PureWindowsPath(template).suffix or ".vhdx"
        directory = p.text("DiskDirectory") or str(PureWindowsPath(template).parent)
        vhd = str(PureWindowsPath(directory) / f"dmh-{uuid.uuid4().hex}{extension}")
        h.host.add_disk(vhd, guest_os, parent=template)
    try:
        vm = h.host.new_vm(
            name,
            memory_startup=p.int64("StartupBytes") or DEFAULT_STARTUP,
            generation=int(p.get("Generation", 2)),
            guest_os=guest_os,
            vhd_path=vhd,
            notes=p.text("Notes") or "",
            switch=p.text("SwitchName") or "",
        )
    except BaseException:
        if vhd:  # the script deletes the differencing disk a failed New-VM leaves behind
            h.host.remove_disk(vhd)
        raise
    return [vm]


@script("remove-vm")
def _remove_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name"])
    vm = _vm_named(h, p.required("Name"))
    if vm.state is not VMState.Off:
        h.host.stop(vm.id, turn_off=True)
    # The disk chain from HardDrives.Path (the newest .avhdx after a checkpoint) up through
    # the harness's own disks (dmh-*), as the script walks it with Get-VHD.
    disks: list[str] = []
    for start in [vm.vhd_path, *h.host.checkpoint_disks(vm.id)]:
        path: str | None = start
        while path and PureWindowsPath(path).name.lower().startswith("dmh-"):
            if path not in disks:
                disks.append(path)
            path = h.host.disk_parent(path)
    h.host.remove(vm.id)
    left = [d for d in disks if _in_use(h, d)]
    for disk in disks:
        if disk not in left:
            h.host.remove_disk(disk)
    if "LeftDisks" not in code(c.name):
        # The script before its deletions were checked: Remove-Item -ErrorAction
        # SilentlyContinue, and the disks it tried counted as removed.
        return [custom(Name=vm.name, RemovedDisks=len(disks))]
    reason = "The process cannot access the file because it is being used by another process."
    return [
        custom(
            Name=vm.name,
            RemovedDisks=len(disks) - len(left),
            LeftDisks=[f"{d} ({reason})" for d in left],
        )
    ]


def _in_use(h: HyperVHandler, disk: str) -> bool:
    """Whether a VM that is not off holds `disk` open: its disk or one of that disk's parents
    (a differencing chain keeps every parent open)."""
    for other in h.host.find_vms("*"):
        if other.state is VMState.Off:
            continue
        path: str | None = other.vhd_path
        while path:
            if path.casefold() == disk.casefold():
                return True
            path = h.host.disk_parent(path)
    return False


@script("vm-address")
def _vm_address(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName"])
    vm = _vm_named(h, p.required("VMName"))
    up = vm.state is VMState.Running and h.host.guest(vm.id).state is GuestState.RUNNING
    if not vm.switch_name or not up or h.guest_endpoint is None:
        why = (
            "its adapters are on no virtual switch (create it with a switch for the WinRM channel)"
            if not vm.switch_name
            else "the guest reports none yet (is it up, with integration services?)"
        )
        raise ObjectNotFoundError(
            f"The virtual machine '{vm.name}' has no IPv4 address: {why}.", target=vm.name
        )
    endpoint = h.guest_endpoint(vm)
    # The script answers the address only. The emulator's guest listeners are, like a stock
    # guest's (Enable-PSRemoting), HTTP only, so TLS is never said here: the client's default
    # must be right. What must differ is said: each listener's own loopback port (it stands in
    # for the guest's address on 5985) and basic auth (no SPNEGO here, psrp-emulator-notes
    # "Auth"); the client takes these over its defaults.
    return [custom(Address=endpoint.address, Port=endpoint.port, Path=endpoint.path, Auth="basic")]


@script(_GUEST_OPS)
def _guest_ops(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    if h.bound_vm is None:
        raise CommandNotFoundError(_GUEST_OPS)
    p = bind(c, ["Operation", "Arguments"])
    vm = h.host.get_vm(h.bound_vm)
    return [run_guest_operation(h, vm, p.required("Operation"), p.get("Arguments") or {}, c.name)]


@script("vm-invoke")
def _vm_invoke(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "GuestScript", "Operation", "Arguments", "GuestUser", "GuestPassword"])
    vm = _vm_named(h, p.required("VMName"))
    guest_script = p.required("GuestScript")
    _check_guest_script(guest_script)
    arguments = p.get("Arguments") or {}
    # New-PSSession -VMId: the guest must be up (and Windows) before credentials count
    _direct_session(h, vm, p)
    # Invoke-Command sends the script block and its arguments to the guest's endpoint, which
    # has its own 10 MB limit per received object (real-host facts).
    check_received([[guest_script, p.required("Operation"), arguments]], "the guest's endpoint")
    return [run_guest_operation(h, vm, p.required("Operation"), arguments, guest_script)]


def _direct_session(h: HyperVHandler, vm: VmRecord, p: Params) -> None:
    """New-PSSession -VMId: a 2016+ host (PowerShell Direct), the guest up and Windows, and the
    guest's credentials (real-host facts, "PowerShell Direct needs a 2016+ host too")."""
    if not h.host.version.is_2016_or_later:
        raise NamedParameterError("VMId")
    h.guest_of(vm, direct=True)
    h.check_guest_credentials(vm.name, p.get("GuestUser"), p.get("GuestPassword"))


def _check_guest_script(text: str) -> None:
    match = SCRIPT_LINE.search(text)
    if match is None or match.group(1) != _GUEST_OPS:
        raise InvalidParameterError("GuestScript must be the harness's guest-ops script.")


@script("sample-vm")
def _sample_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["VMName", "Key", "OutputOffset", "GuestScript", "GuestUser", "GuestPassword"],
    )
    vm = _vm_named(h, p.required("VMName"))
    counters: dict[str, Any] = {}
    guest = app = output = guest_error = None
    if vm.state is VMState.Running:
        counters = _vm_counters(h, vm)
        if perf_by_plain_name(c.name) and perf_instance_name(vm.name) != vm.name:
            counters = {}  # `$_.Name -eq $vm.Name` meets the escaped instance name: no match
        guest_script = p.text("GuestScript") or ""
        if guest_script:
            _check_guest_script(guest_script)
            key = p.text("Key") or ""
            try:  # a guest part that fails is reported beside the host part
                _direct_session(h, vm, p)
                guest = run_guest_operation(h, vm, "Counters", {}, guest_script)
                if key:
                    app = run_guest_operation(h, vm, "ProcessStats", {"Key": key}, guest_script)
                    offset = p.int64("OutputOffset") or 0
                    output = run_guest_operation(
                        h, vm, "ProcessResult", {"Key": key, "Offset": offset}, guest_script
                    )
            except EmulatorError as exc:
                guest, app, output, guest_error = None, None, None, exc.message
    part = _memory_part(vm, counters)
    return [custom(**part, Guest=guest, App=app, Output=output, GuestError=guest_error)]


def _vm_counters(h: HyperVHandler, vm: VmRecord) -> dict[str, Any]:
    """The VM's instance of Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM: the
    counter names without spaces are its property names."""
    return {
        name.replace(" ", ""): int64(int(value))
        for name, value in h.host.vm_counters(vm.id).items()
        if name.replace(" ", "") in _VM_PERF_PROPERTIES
    }


def _memory_part(vm: VmRecord, counters: dict[str, Any]) -> dict[str, Any]:
    """sample-vm's and sample-vms' properties of a VM's memory state."""
    return {
        "State": vm.state.name,
        "Heartbeat": "" if vm.heartbeat is None else vm.heartbeat.name,
        "MemoryAssigned": int64(vm.memory_assigned),
        "MemoryDemand": int64(vm.memory_demand),
        "MemoryStatus": vm.memory_status,
        "Minimum": int64(vm.memory.minimum),
        "Maximum": int64(vm.memory.maximum),
        "Buffer": vm.memory.buffer,
        "Counters": counters,
    }


@script("sample-vms")
def _sample_vms(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    """Each named VM's host part of sample-vm, in one answer; a VM not found (or whose name
    two VMs have) is an `Error` beside the others, as the script does."""
    p = bind(c, ["VMNames"])
    names = p.get("VMNames")
    if names is None:
        raise InvalidParameterError("VMNames is mandatory.")
    answers: list[Any] = []
    every = h.host.find_vms("*")  # Get-VM, once
    for name in [str(n) for n in (names if isinstance(names, list) else [names])]:
        found = [vm for vm in every if vm.name.casefold() == name.casefold()]
        if len(found) != 1:
            problem = (
                f'{len(found)} virtual machines are named "{name}".'
                if found
                else f'Hyper-V was unable to find a virtual machine with name "{name}".'
            )
            answers.append(custom(Name=name, Error=problem))
            continue
        vm = found[0]
        counters = _vm_counters(h, vm) if vm.state is VMState.Running else {}
        answers.append(custom(Name=name, Error=None, **_memory_part(vm, counters)))
    return answers


# sample-vm's properties of the VM's DM counter instance (reference/real-host-and-runtime-facts.md)
_VM_PERF_PROPERTIES = frozenset(
    {
        "AddedMemory", "RemovedMemory", "MemoryAddOperations", "MemoryRemoveOperations",
        "GuestVisiblePhysicalMemory", "PhysicalMemory", "CurrentPressure", "AveragePressure",
    }
)  # fmt: skip
