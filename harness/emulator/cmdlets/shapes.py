"""The objects the cmdlets and scripts write, in the real shapes: type names most derived first,
adapted properties, enums, Int64 byte counts (reference §1.2, §1.3, §1.5).
"""

from __future__ import annotations

import uuid
from typing import Any

from harness.emulator.host import CheckpointInfo, EmulatedHost, VmRecord, VMState
from harness.emulator.psobjects import ObjectShape, Serialized, int64, make_enum, make_object
from harness.settings import MemorySettings

NS = "Microsoft.HyperV.PowerShell"
TEMPLATE_DIR = "C:\\DMH\\Templates"  # where the emulated host keeps its template disks
DISK_DIR = "C:\\DMH\\Disks"
_VM_TYPES = (f"{NS}.VirtualMachine", f"{NS}.VirtualizationObject")
_CUSTOM = ("System.Management.Automation.PSCustomObject",)


def custom(**values: Any) -> Any:
    """A [pscustomobject] as the harness's scripts return them (note properties)."""
    return make_object(_CUSTOM, {}, extended=values)


# Get-VM writes VMs by the hundred: their shape is laid out once (psobjects.ObjectShape).
VM_SHAPE = ObjectShape(_VM_TYPES)


def vm_object(vm: VmRecord) -> Serialized:
    return VM_SHAPE.render(
        vm_properties(vm), to_string=f"VirtualMachine (Name = '{vm.name}') [Id = '{vm.id}']"
    )


def vm_properties(vm: VmRecord) -> dict[str, Any]:
    """What Get-VM shows of a VM (§1.2, §1.3), as remote output carries it: serialized one
    level deep, so a property whose value is not a primitive type (an enum such as State, a
    collection of objects such as HardDrives) arrives as its ToString() (real-host facts,
    "Depth-1 serialisation"; decompiled InternalSerializer.WriteOneObject, unconfirmed by a
    capture)."""
    return {
        "Name": vm.name,
        "Id": vm.id,
        "VMName": vm.name,
        "VMId": vm.id,
        "ComputerName": vm.computer_name,
        "State": vm.state.name,
        "Status": "Operating normally" if vm.state is VMState.Running else "",
        "Heartbeat": None if vm.heartbeat is None else vm.heartbeat.name,
        "Uptime": vm.uptime,
        "Generation": vm.generation,
        "Version": vm.version,
        "Notes": vm.notes,
        "ProcessorCount": int64(vm.processor_count),
        "DynamicMemoryEnabled": vm.memory.dynamic,
        "MemoryAssigned": int64(vm.memory_assigned),
        "MemoryDemand": int64(vm.memory_demand),
        "MemoryStatus": vm.memory_status,
        "MemoryStartup": int64(vm.memory.startup),
        "MemoryMinimum": int64(vm.memory.minimum),
        "MemoryMaximum": int64(vm.memory.maximum),
        "SmartPagingFileInUse": vm.smart_paging_file_in_use,
        "SmartPagingFilePath": vm.smart_paging_file_path,
        "CheckpointType": vm.checkpoint_type.name,
        "ParentCheckpointId": vm.parent_checkpoint_id,
        "CreationTime": vm.creation_time,
        # The drives' ToString(), not their paths (a script reads .Path on the host, where the
        # objects are live; after a checkpoint it is the newest .avhdx, real-host facts).
        "HardDrives": [_drive_string(vm)] if vm.vhd_path else [],
    }


def _drive_string(vm: VmRecord) -> str:
    """A HardDiskDrive's ToString(): VirtualizationObject's "Type (Name = ..., VMName = ...)
    [Id = ..., VMId = ...]" form, the first drive of SCSI controller 0 (Generation 2) or IDE
    controller 0 (Generation 1)."""
    bus = "SCSI" if vm.generation == 2 else "IDE"
    vm_id = str(vm.id).upper()
    return (
        f"HardDiskDrive (Name = 'Hard Drive on {bus} controller number 0 at location 0',"
        f" VMName = '{vm.name}') [Id = 'Microsoft:{vm_id}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4"
        f"\\0\\0\\D', VMId = '{vm_id}']"
    )


def memory_object(
    vm_name: str,
    vm_id: uuid.UUID,
    computer: str,
    settings: MemorySettings,
    snapshot: str = "",
    *,
    numa_node_mb: int,
) -> Any:
    """Get-VMMemory's object. MaximumPerNumaNode is what one of the host's NUMA nodes holds,
    in MB (the emulated host has one node: all its memory), not the VM's Maximum."""
    return make_object(
        (f"{NS}.VMMemory", f"{NS}.VMDevice", f"{NS}.VirtualizationObject"),
        {
            "Name": "Memory",
            "Id": f"Microsoft:{str(vm_id).upper()}\\4764334d-e001-4176-82ee-5594ec9b530e",
            "VMName": vm_name,
            "VMId": vm_id,
            "VMSnapshotName": snapshot,
            "ComputerName": computer,
            "IsDeleted": False,
            "DynamicMemoryEnabled": settings.dynamic,
            "Startup": int64(settings.startup),
            "Minimum": int64(settings.minimum),
            "Maximum": int64(settings.maximum),
            "Buffer": settings.buffer,
            "Priority": settings.priority,
            "MaximumPerNumaNode": int64(numa_node_mb),
            "ResourcePoolName": "Primordial",
        },
        to_string="VMMemory",
    )


def checkpoint_object(cp: CheckpointInfo, computer: str) -> Any:
    return make_object(
        (f"{NS}.VMSnapshot", f"{NS}.VirtualMachineBase", f"{NS}.VirtualizationObject"),
        {
            "Name": cp.name,
            "Id": cp.id,
            "VMName": cp.vm_name,
            "VMId": cp.vm_id,
            "ComputerName": computer,
            "CreationTime": cp.creation_time,
            # Enums at depth 1: their names (see vm_properties).
            "SnapshotType": "Standard",
            "CheckpointType": cp.checkpoint_type.name,
            "State": cp.vm_state.name,
            "ParentSnapshotId": cp.parent_checkpoint_id,
            "MemoryStartup": int64(cp.memory.startup),
            "DynamicMemoryEnabled": cp.memory.dynamic,
        },
        to_string=f"VMSnapshot (Name = '{cp.name}', VMName = '{cp.vm_name}') [Id = '{cp.id}']",
    )


def host_object(host: EmulatedHost) -> Any:
    return make_object(
        (f"{NS}.VMHost", f"{NS}.VirtualizationObject"),
        {
            "Name": host.name,
            "ComputerName": host.name,
            "FullyQualifiedDomainName": host.name,
            "LogicalProcessorCount": 16,
            "MemoryCapacity": int64(host.total_memory),
            "NumaSpanningEnabled": True,
            "VirtualMachinePath": "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V",
            "VirtualHardDiskPath": DISK_DIR,
        },
        to_string=f"VMHost (Name = '{host.name}')",
    )


def integration_object(vm: VmRecord, name: str, enabled: bool, status: str) -> Any:
    return make_object(
        (f"{NS}.VMIntegrationComponent", f"{NS}.VMDevice", f"{NS}.VirtualizationObject"),
        {
            "Name": name,
            "VMName": vm.name,
            "VMId": vm.id,
            "Enabled": enabled,
            "PrimaryStatusDescription": status,
            "SecondaryStatusDescription": "",
        },
        to_string=f"VMIntegrationComponent (Name = '{name}', VMName = '{vm.name}')",
    )


def network_adapter_object(vm: VmRecord, addresses: list[str]) -> Any:
    return make_object(
        (f"{NS}.VMNetworkAdapter", f"{NS}.VMDevice", f"{NS}.VirtualizationObject"),
        {
            "Name": "Network Adapter",
            "VMName": vm.name,
            "VMId": vm.id,
            "SwitchName": vm.switch_name or None,
            "Connected": bool(vm.switch_name),
            "IPAddresses": addresses,
            "Status": ["Ok"] if vm.switch_name else [],
        },
        to_string=f"VMNetworkAdapter (Name = 'Network Adapter', VMName = '{vm.name}')",
    )


def vhd_object(path: str, parent: str) -> Any:
    return make_object(
        (f"{NS}.VirtualHardDisk",),
        {
            "Path": path,
            "ParentPath": parent or None,
            "VhdFormat": make_enum(f"{NS}.VhdFormat", "VHDX", 3),
            "VhdType": make_enum(
                f"{NS}.VhdType", "Differencing" if parent else "Dynamic", 4 if parent else 3
            ),
            "Attached": False,
        },
        to_string=path,
    )
