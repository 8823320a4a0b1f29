"""Hyper-V's host, VM, memory and integration-service cmdlets (reference §1)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import Params, bind, object_id
from harness.emulator.cmdlets.registry import cmdlet
from harness.emulator.cmdlets.shapes import (
    NS,
    host_object,
    integration_object,
    memory_object,
    network_adapter_object,
)
from harness.emulator.errors import (
    CheckpointNotFoundError,
    ParameterConversionError,
    SizeNotAlignedError,
)
from harness.emulator.guestface import GuestState
from harness.emulator.host import (
    DEFAULT_STARTUP,
    CheckpointType,
    EmulatedHost,
    VmRecord,
    VMState,
)
from harness.emulator.psrp import Command
from harness.settings import SET_VMMEMORY_PARAMETERS, MemoryChange
from harness.units import MB
from harness.wildcards import like

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

_INTEGRATION_SERVICES = (
    ("Guest Service Interface", False),
    ("Heartbeat", True),
    ("Key-Value Pair Exchange", True),
    ("Shutdown", True),
    ("Time Synchronization", True),
    ("VSS", True),
)
# Set-VM's own names for the memory settings it also sets (its -DynamicMemory and
# -StaticMemory switches set `dynamic`).
_SET_VM_SIZES = {
    "startup": "MemoryStartupBytes",
    "minimum": "MemoryMinimumBytes",
    "maximum": "MemoryMaximumBytes",
}


@cmdlet("Get-VMHost")
def _get_vmhost(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    bind(c, ["ComputerName"])
    return [host_object(h.host)]


@cmdlet("Get-VM")
def _get_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name", "ComputerName", "Id"], {"VMName": "Name"})
    if p.has("Id"):
        return [h.host.get_vm(uuid.UUID(str(p.get("Id"))))]
    return h.vms_for(p, items)  # a wildcard pattern matching nothing is no error


@cmdlet("New-VM")
def _new_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "Name", "MemoryStartupBytes", "Generation", "NoVHD", "VHDPath", "Path",
            "SwitchName", "BootDevice",
        ],
        {"VMName": "Name"},
    )  # fmt: skip
    vhd = p.text("VHDPath") or ""
    startup = p.int64("MemoryStartupBytes")
    vm = h.host.new_vm(
        p.required("Name"),
        memory_startup=DEFAULT_STARTUP if startup is None else startup,
        generation=int(p.get("Generation", 2)),
        guest_os=h.host.disk_os(vhd) if vhd else None,
        vhd_path=vhd,
        switch=p.text("SwitchName") or "",
    )
    return [vm]


@cmdlet("Get-VMNetworkAdapter")
def _get_network_adapter(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    """One adapter per VM; an IPv4 address only for a VM on a switch whose guest is up (the
    guest's integration services report it)."""
    p = bind(c, ["VMName", "VM", "Name", "ComputerName", "All"], {"Name": "VMName"})
    results = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        guest = h.host.guest(vm.id)
        up = vm.state is VMState.Running and guest.state is GuestState.RUNNING
        # A Linux guest reports its address only while its KVP daemon runs (§1.8).
        up = up and (guest.integration is None or guest.integration.kvp_daemon)
        addresses = ["127.0.0.1", "fe80::1"] if vm.switch_name and up else []
        results.append(network_adapter_object(vm, addresses))
    return results


@cmdlet("Set-VM")
def _set_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "Name", "VM", "Notes", "DynamicMemory", "StaticMemory", "MemoryStartupBytes",
            "MemoryMinimumBytes", "MemoryMaximumBytes", "CheckpointType", "SmartPagingFilePath",
            "ProcessorCount", "Passthru",
        ],
        {"VMName": "Name"},
    )  # fmt: skip
    # bound before anything changes, as PowerShell binds parameters before the cmdlet runs
    checkpoint_type = _checkpoint_type(p.get("CheckpointType")) if p.has("CheckpointType") else None
    dynamic = True if p.switch("DynamicMemory") else None
    if p.switch("StaticMemory"):
        dynamic = False
    sizes = {field: p.int64(name) for field, name in _SET_VM_SIZES.items() if p.has(name)}
    change = MemoryChange(dynamic=dynamic, **sizes)
    results = []
    for vm in h.one_or_more_vms(p, items):
        if p.has("Notes"):
            vm = h.host.set_notes(vm.id, p.text("Notes") or "")
        if change.fields():
            h.host.set_memory(vm.id, change)
        if checkpoint_type is not None:
            h.host.set_checkpoint_type(vm.id, checkpoint_type)
        if p.has("SmartPagingFilePath"):
            h.host.set_smart_paging_path(vm.id, p.text("SmartPagingFilePath") or "")
        if p.switch("Passthru"):
            results.append(h.host.get_vm(vm.id))
    return results


def _checkpoint_type(value: Any) -> CheckpointType:
    """Bind -CheckpointType as PowerShell converts to an enum: a name in any case, or its value."""
    for member in CheckpointType:
        if str(value).casefold() in (member.name.casefold(), str(int(member))):
            return member
    names = ", ".join(m.name for m in sorted(CheckpointType, key=lambda m: m.name))
    raise ParameterConversionError(
        "CheckpointType",
        value,
        f"{NS}.CheckpointType",
        f"Unable to match the identifier name {value} to a valid enumerator name. Specify one"
        f" of the following enumerator names and try again: {names}",
    )


@cmdlet("Get-VMMemory")
def _get_vmmemory(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["VMName", "VM", "VMSnapshot", "ComputerName"],
        {"Name": "VMName", "VMCheckpoint": "VMSnapshot"},
    )
    snapshot = p.get("VMSnapshot")
    if snapshot is not None:
        cp_id = uuid.UUID(str(object_id(snapshot)))
        for vm in h.host.find_vms("*"):
            for cp in h.host.checkpoints(vm.id):
                if cp.id == cp_id:
                    return [
                        memory_object(
                            cp.vm_name,
                            cp.vm_id,
                            h.host.name,
                            cp.memory,
                            cp.name,
                            numa_node_mb=h.host.total_memory >> 20,
                        )
                    ]
        raise CheckpointNotFoundError()
    return [
        memory_object(
            vm.name, vm.id, vm.computer_name, vm.memory, numa_node_mb=h.host.total_memory >> 20
        )
        for vm in h.one_or_more_vms(p, items, "VMName")
    ]


@cmdlet("Set-VMMemory")
def _set_vmmemory(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName", "VM", *SET_VMMEMORY_PARAMETERS.values(), "MaximumAmountPerNumaNodeBytes",
            "ResourcePoolName", "Passthru", "ComputerName",
        ],
        {"Name": "VMName"},
    )  # fmt: skip
    numa = p.int64("MaximumAmountPerNumaNodeBytes")
    if numa is not None and numa % (2 * MB):
        raise SizeNotAlignedError("MaximumAmountPerNumaNodeBytes")
    enabled = p.get(SET_VMMEMORY_PARAMETERS["dynamic"])
    numbers = {f: p.int64(name) for f, name in SET_VMMEMORY_PARAMETERS.items() if f != "dynamic"}
    change = MemoryChange(dynamic=None if enabled is None else bool(enabled), **numbers)
    results = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        updated = h.host.set_memory(vm.id, change)
        if p.switch("Passthru"):
            results.append(
                memory_object(
                    updated.name,
                    updated.id,
                    updated.computer_name,
                    updated.memory,
                    numa_node_mb=h.host.total_memory >> 20,
                )
            )
    return results


# The lifecycle cmdlets: what each does to one VM, and the parameters it adds to the common ones.
_LIFECYCLE: dict[
    str, tuple[Callable[[EmulatedHost, VmRecord, Params], VmRecord], tuple[str, ...]]
] = {
    "Start-VM": (lambda host, vm, p: host.start(vm.id), ()),
    "Stop-VM": (
        lambda host, vm, p: host.stop(vm.id, turn_off=p.switch("TurnOff")),
        ("TurnOff", "Save"),
    ),
    "Save-VM": (lambda host, vm, p: host.save(vm.id), ()),
    "Suspend-VM": (lambda host, vm, p: host.pause(vm.id), ()),
    "Resume-VM": (lambda host, vm, p: host.resume(vm.id), ()),
    "Restart-VM": (lambda host, vm, p: host.restart(vm.id), ()),
}
_LIFECYCLE_BY_NAME = {name.casefold(): entry for name, entry in _LIFECYCLE.items()}


@cmdlet(*_LIFECYCLE)
def _lifecycle(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    """Each VM named or piped through the cmdlet's action; the results with -Passthru."""
    action, extra = _LIFECYCLE_BY_NAME[c.name.casefold()]
    p = bind(
        c,
        ["Name", "VM", *extra, "Passthru", "Force", "Confirm", "AsJob", "ComputerName"],
        {"VMName": "Name"},
    )
    results = []
    for vm in h.one_or_more_vms(p, items):
        after = action(h.host, vm, p)
        if p.switch("Passthru"):
            results.append(after)
    return results


@cmdlet("Remove-VM")
def _remove_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name", "VM", "Force", "Confirm", "ComputerName"], {"VMName": "Name"})
    for vm in h.one_or_more_vms(p, items):
        h.host.remove(vm.id)
    return []


@cmdlet("Get-VMIntegrationService")
def _get_integration(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "Name", "VM", "ComputerName"])
    pattern = p.text("Name") or "*"
    results = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        running = vm.state is VMState.Running
        for name, enabled in _INTEGRATION_SERVICES:
            if not like(name, pattern):
                continue
            status = "OK" if enabled and running else ""
            if (
                name == "Heartbeat"
                and running
                and vm.heartbeat is not None
                and vm.heartbeat.value < 5
            ):
                status = "No Contact"
            results.append(integration_object(vm, name, enabled, status))
    return results
