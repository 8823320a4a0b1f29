"""The Hyper-V WMI classes the emulator serves, built from the SAME EmulatedHost the cmdlets
read, in one pass per request (so a WMI answer and a Get-VM at the same instant agree).

Namespaces per host version: root\\virtualization (v1) on 2008 R2 SP1 and 2012, v2 from 2012
on (§6.1, [S73]); the DM performance classes live in root\\cimv2 (§4.1, §4.2). Properties a
version did not have yet are left out of its instances (Smart Paging and NUMA spanning
arrived with 2012, huge pages and SGX later).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness.emulator.countersets import balancer_counters_on
from harness.emulator.errors import VmNotFoundError
from harness.emulator.host import CheckpointInfo, EmulatedHost, Heartbeat, VmRecord, VMState
from harness.emulator.wmi.cim import Instance
from harness.emulator.wmi.wql import Value
from harness.settings import HostVersion, MemorySettings
from harness.units import MB

V1 = "root/virtualization"
V2 = "root/virtualization/v2"
CIMV2 = "root/cimv2"
MEMORY_DEVICE = "4764334d-e001-4176-82ee-5594ec9b530e"  # the memory RASD's fixed device id
CS_KEYS = ("CreationClassName", "Name")
SERVICE_KEYS = ("CreationClassName", "Name", "SystemCreationClassName", "SystemName")
_HOLDS_MEMORY = (VMState.Starting, VMState.Running, VMState.Paused)
# v1 numbered some EnabledState values in the vendor range (2008 R2 SDK)
_V1_STATE = {
    VMState.Paused: 32768,
    VMState.Saved: 32769,
    VMState.Starting: 32770,
    VMState.Stopping: 32774,
}
# Msvm_SummaryInformation.Heartbeat (§1.8): OK 2, No Contact 12
_HEARTBEAT = {
    Heartbeat.OkApplicationsUnknown: 2,
    Heartbeat.OkApplicationsHealthy: 2,
    Heartbeat.OkApplicationsCritical: 2,
    Heartbeat.Paused: 2,
    Heartbeat.NoContact: 12,
    Heartbeat.LostCommunication: 13,
    Heartbeat.Error: 6,
}
VM_PERF = "BalancerStats_HyperVDynamicMemoryVM"
BALANCER_PERF = "BalancerStats_HyperVDynamicMemoryBalancer"
PERF_CLASSES = tuple(
    f"Win32_Perf{kind}Data_{name}"
    for kind in ("Raw", "Formatted")
    for name in (VM_PERF, BALANCER_PERF)
)
BALANCER_INSTANCE = "System Balancer"


def namespaces(version: HostVersion) -> tuple[str, ...]:
    """The WMI namespaces a Hyper-V host of this version has."""
    if version is HostVersion.V2008R2SP1:
        return (V1, CIMV2)
    if version is HostVersion.V2012:
        return (V1, V2, CIMV2)
    return (V2, CIMV2)


def memory_instance_id(vm_id: uuid.UUID) -> str:
    return f"Microsoft:{str(vm_id).upper()}\\{MEMORY_DEVICE}"


@dataclass(frozen=True)
class Snapshot:
    """What one request sees: the host's VMs and counters, read once."""

    host_name: str
    version: HostVersion
    vms: tuple[VmRecord, ...]
    vm_counters: Mapping[uuid.UUID, Mapping[str, float]]
    balancer: Mapping[str, float]
    checkpoints: tuple[CheckpointInfo, ...] = ()

    @classmethod
    def take(cls, host: EmulatedHost, with_counters: bool = False) -> Snapshot:
        vms = tuple(host.find_vms("*"))
        counters: dict[uuid.UUID, Mapping[str, float]] = {}
        balancer: Mapping[str, float] = {}
        if with_counters:
            for vm in vms:
                if vm.state in _HOLDS_MEMORY:
                    counters[vm.id] = host.vm_counters(vm.id)
            balancer = balancer_counters_on(host.version, host.balancer_counters())
        checkpoints: list[CheckpointInfo] = []
        for vm in vms:
            try:
                checkpoints.extend(host.checkpoints(vm.id))
            except VmNotFoundError:  # removed since find_vms: its settings went with it
                continue
        return cls(host.name, host.version, vms, counters, balancer, tuple(checkpoints))

    def since(self, version: HostVersion) -> bool:
        order = list(HostVersion)
        return order.index(self.version) >= order.index(version)


def _state(vm: VmRecord, namespace: str) -> int:
    if namespace == V1:
        return _V1_STATE.get(vm.state, int(vm.state))
    return int(vm.state)


def computer_systems(snap: Snapshot, ns: str) -> list[Instance]:
    host = Instance(
        ns,
        "Msvm_ComputerSystem",
        CS_KEYS,
        {
            "Caption": "Hosting Computer System",
            "CreationClassName": "Msvm_ComputerSystem",
            "Description": "Microsoft Hosting Computer System",
            "ElementName": snap.host_name,
            "EnabledState": 2,
            "HealthState": 5,
            "Name": snap.host_name,
            "OnTimeInMilliseconds": None,
            "OperationalStatus": (2,),
        },
    )
    out = [host]
    for vm in snap.vms:
        out.append(
            Instance(
                ns,
                "Msvm_ComputerSystem",
                CS_KEYS,
                {
                    "Caption": "Virtual Machine",
                    "CreationClassName": "Msvm_ComputerSystem",
                    "Description": "Microsoft Virtual Machine",
                    "ElementName": vm.name,
                    "EnabledState": _state(vm, ns),
                    "HealthState": 5,
                    "Name": str(vm.id).upper(),
                    "OnTimeInMilliseconds": int(vm.uptime.total_seconds() * 1000),
                    "OperationalStatus": (2,),
                },
            )
        )
    return out


REALIZED = "Microsoft:Hyper-V:System:Realized"
SNAPSHOT = "Microsoft:Hyper-V:Snapshot:Realized"


@dataclass(frozen=True)
class _Settings:
    """One set of settings: a VM's own (realized) or a checkpoint's, which a real host
    serves alongside (VirtualSystemType / v1 SettingType and the InstanceID's GUID tell
    them apart; a tool that takes every Msvm_MemorySettingData counts a VM once per
    checkpoint too)."""

    id: uuid.UUID  # the VM's, or the checkpoint's
    vm_id: uuid.UUID
    name: str
    generation: int
    version: str
    notes: str
    memory: MemorySettings
    swap_in_use: bool
    checkpoint: bool


def _all_settings(snap: Snapshot) -> list[_Settings]:
    vms = {vm.id: vm for vm in snap.vms}
    out = [
        _Settings(vm.id, vm.id, vm.name, vm.generation, vm.version, vm.notes, vm.memory,
                  vm.smart_paging_file_in_use, False)
        for vm in snap.vms
    ]  # fmt: skip
    for c in snap.checkpoints:
        vm = vms.get(c.vm_id)
        if vm is not None:
            out.append(
                _Settings(c.id, vm.id, c.name, vm.generation, vm.version, vm.notes, c.memory,
                          False, True)
            )  # fmt: skip
    return out


def system_settings(snap: Snapshot, ns: str) -> list[Instance]:
    out = []
    for st in _all_settings(snap):
        props: dict[str, Value] = {
            "Caption": "Virtual Machine Settings",
            "ElementName": st.name,
            "InstanceID": f"Microsoft:{str(st.id).upper()}",
            "VirtualSystemIdentifier": str(st.vm_id).upper(),
        }
        if ns == V2:
            props.update(
                VirtualSystemType=SNAPSHOT if st.checkpoint else REALIZED,
                VirtualSystemSubType=f"Microsoft:Hyper-V:SubType:{st.generation}",
                Version=st.version,
                Notes=(st.notes,),
                VirtualNumaEnabled=not st.memory.dynamic,  # DM turns vNUMA off (§1.1)
            )
        else:  # v1: SettingType 3 = the realized settings, 5 = a snapshot's
            props.update(SettingType=5 if st.checkpoint else 3, Notes=st.notes)
        out.append(Instance(ns, "Msvm_VirtualSystemSettingData", ("InstanceID",), props))
    return out


def memory_settings(snap: Snapshot, ns: str) -> list[Instance]:
    """Msvm_MemorySettingData (§6.1): MB on the wire, Weight = Priority × 100; a
    checkpoint's have the checkpoint's GUID in their InstanceID."""
    out = []
    for st in _all_settings(snap):
        m = st.memory
        props: dict[str, Value] = {
            "Address": None,
            "AllocationUnits": "byte * 2^20" if ns == V2 else "MB",
            "AutomaticAllocation": True,
            "AutomaticDeallocation": True,
            "Caption": "Memory",
            "Description": "Settings for Microsoft Virtual Machine Memory.",
            "DynamicMemoryEnabled": m.dynamic,
            "ElementName": "Memory",
            "InstanceID": memory_instance_id(st.id),
            "IsVirtualized": True,
            "Limit": m.maximum // MB,
            "PoolID": "",
            "Reservation": m.minimum // MB,
            "ResourceSubType": "Microsoft:Hyper-V:Memory"
            if ns == V2
            else "Microsoft Virtual Machine Memory",
            "ResourceType": 4,
            "TargetMemoryBuffer": m.buffer,
            "VirtualQuantity": m.startup // MB,
            "Weight": m.priority * 100,
        }
        if ns == V2:
            props["VirtualQuantityUnits"] = "byte * 2^20"
        if snap.since(HostVersion.V2012):  # Smart Paging and NUMA spanning came with 2012
            props["SwapFilesInUse"] = st.swap_in_use
            props["MaxMemoryBlocksPerNumaNode"] = m.maximum // MB
        if ns == V2 and snap.since(HostVersion.V2016):
            props["HugePagesEnabled"] = False
        if ns == V2 and snap.since(HostVersion.V2019):
            props["SgxEnabled"] = False
            props["SgxSize"] = 0
        out.append(Instance(ns, "Msvm_MemorySettingData", ("InstanceID",), props))
    return out


def runtime_memory(snap: Snapshot, ns: str) -> list[Instance]:
    """Msvm_Memory (§6.4): the memory a running VM holds, in 1 MiB blocks."""
    out = []
    for vm in snap.vms:
        if vm.state not in _HOLDS_MEMORY:
            continue
        blocks = vm.memory_assigned // MB
        out.append(
            Instance(
                ns,
                "Msvm_Memory",
                ("CreationClassName", "DeviceID", "SystemCreationClassName", "SystemName"),
                {
                    "BlockSize": 1048576,
                    "ConsumableBlocks": blocks,
                    "CreationClassName": "Msvm_Memory",
                    "DeviceID": f"Microsoft:{MEMORY_DEVICE.upper()}",
                    "ElementName": "Memory",
                    "EnabledState": 2,
                    "NumberOfBlocks": blocks,
                    "SystemCreationClassName": "Msvm_ComputerSystem",
                    "SystemName": str(vm.id).upper(),
                },
            )
        )
    return out


def management_service(snap: Snapshot, ns: str) -> Instance:
    return Instance(
        ns,
        "Msvm_VirtualSystemManagementService",
        SERVICE_KEYS,
        {
            "Caption": "Hyper-V Virtual System Management Service",
            "CreationClassName": "Msvm_VirtualSystemManagementService",
            "ElementName": "Hyper-V Virtual System Management Service",
            "EnabledState": 2,
            "Name": "vmms",
            "Started": True,
            "SystemCreationClassName": "Msvm_ComputerSystem",
            "SystemName": snap.host_name,
        },
    )


# GetSummaryInformation RequestedInformation codes (§6.3) → property
SUMMARY_CODES: dict[int, str] = {
    0: "Name",
    1: "ElementName",
    3: "Notes",
    4: "NumberOfProcessors",
    100: "EnabledState",
    101: "ProcessorLoad",
    103: "MemoryUsage",
    104: "Heartbeat",
    105: "UpTime",
    109: "HealthState",
    112: "MemoryAvailable",
    113: "AvailableMemoryBuffer",
    120: "SwapFilesInUse",
    123: "MemorySpansPhysicalNumaNodes",
}
_SINCE_2012 = ("SwapFilesInUse", "MemorySpansPhysicalNumaNodes")


def summary(snap: Snapshot, ns: str, vm: VmRecord) -> Instance:
    """Msvm_SummaryInformation: MemoryUsage = assigned MB; MemoryAvailable and
    AvailableMemoryBuffer carry int.MaxValue when there is no DM data (§6.3, §1.3)."""
    props: dict[str, Value] = {
        "CreationClassName": "Msvm_SummaryInformation",
        "ElementName": vm.name,
        "EnabledState": _state(vm, ns),
        "HealthState": 5,
        "Heartbeat": None if vm.heartbeat is None else _HEARTBEAT.get(vm.heartbeat, 12),
        "MemoryAvailable": vm.memory_available,
        "AvailableMemoryBuffer": vm.available_memory_buffer,
        "MemoryUsage": vm.memory_assigned // MB,
        "Name": str(vm.id).upper(),
        "Notes": vm.notes,
        "NumberOfProcessors": vm.processor_count,
        "ProcessorLoad": 0 if vm.state in _HOLDS_MEMORY else None,
        "UpTime": int(vm.uptime.total_seconds() * 1000),
        "MemorySpansPhysicalNumaNodes": vm.memory_status == "Spanning",
        "SwapFilesInUse": vm.smart_paging_file_in_use,
    }
    if not snap.since(HostVersion.V2012):
        for name in _SINCE_2012:
            del props[name]
    return Instance(ns, "Msvm_SummaryInformation", CS_KEYS, props)


def empty_summary(ns: str) -> Instance:
    """The entry GetSummaryInformation gives a SettingData that names no VM: every property
    nil."""
    props: dict[str, Value] = {"CreationClassName": "Msvm_SummaryInformation", "Name": None}
    props.update({name: None for name in SUMMARY_CODES.values() if name != "Name"})
    return Instance(ns, "Msvm_SummaryInformation", CS_KEYS, props)


def summaries(snap: Snapshot, ns: str) -> list[Instance]:
    return [summary(snap, ns, vm) for vm in snap.vms]


def _perf_time() -> dict[str, Value]:
    import time

    now_100ns = int(time.time() * 10_000_000) + 116444736000000000  # FILETIME epoch
    ticks = time.perf_counter_ns()
    return {
        "Frequency_Object": 0,
        "Frequency_PerfTime": 1_000_000_000,
        "Frequency_Sys100NS": 10_000_000,
        "Timestamp_Object": 0,
        "Timestamp_PerfTime": ticks,
        "Timestamp_Sys100NS": now_100ns,
    }


def _perf_props(counters: Mapping[str, float]) -> dict[str, Value]:
    """Counter names as WMI property names ("Physical Memory" → PhysicalMemory)."""
    return {name.replace(" ", ""): int(value) for name, value in counters.items()}


def vm_perf(snap: Snapshot, class_name: str) -> list[Instance]:
    """One instance per VM whose partition holds memory, named after the VM (§4.1)."""
    out = []
    stamp = _perf_time()
    for vm in snap.vms:
        counters = snap.vm_counters.get(vm.id)
        if counters is None:
            continue
        props: dict[str, Value] = {"Caption": None, "Description": None, "Name": vm.name}
        props.update(stamp)
        props.update(_perf_props(counters))
        out.append(Instance(CIMV2, class_name, ("Name",), props))
    return out


def balancer_perf(snap: Snapshot, class_name: str) -> list[Instance]:
    props: dict[str, Value] = {"Caption": None, "Description": None, "Name": BALANCER_INSTANCE}
    props.update(_perf_time())
    props.update(_perf_props(snap.balancer))
    return [Instance(CIMV2, class_name, ("Name",), props)]


Builder = Callable[[Snapshot, str], list[Instance]]
VIRTUALIZATION_CLASSES: dict[str, Builder] = {
    "Msvm_ComputerSystem": computer_systems,
    "Msvm_VirtualSystemSettingData": system_settings,
    "Msvm_MemorySettingData": memory_settings,
    "Msvm_Memory": runtime_memory,
    "Msvm_SummaryInformation": summaries,
    "Msvm_VirtualSystemManagementService": lambda snap, ns: [management_service(snap, ns)],
}


# The associations real tools walk from a VM (MicrosoftDocs/win32 HyperV_v2: "Msvm_
# SettingsDefineState", "Msvm_SnapshotOfVirtualSystem", "Msvm_SystemDevice",
# "Msvm_VirtualSystemSettingDataComponent"; the Hyper-V module reaches the summary through
# Msvm_ComputerSystemSummaryInformation, wmi-over-wsman.md). PowerShell's
# `$vm.GetRelated("Msvm_VirtualSystemSettingData")` is ASSOCIATORS OF with that ResultClass:
# it returns the VM's settings AND every checkpoint's.
def associated(source: Instance, target: Instance) -> str | None:
    """The association class linking `source` to `target`, None when they are not linked."""
    src, dst = source.properties, target.properties
    pair = (source.class_name, target.class_name)
    if pair == ("Msvm_ComputerSystem", "Msvm_VirtualSystemSettingData"):
        if src.get("Caption") != "Virtual Machine":
            return None
        if dst.get("VirtualSystemIdentifier") != src.get("Name"):
            return None
        own = dst.get("InstanceID") == f"Microsoft:{src.get('Name')}"
        return "Msvm_SettingsDefineState" if own else "Msvm_SnapshotOfVirtualSystem"
    if pair == ("Msvm_VirtualSystemSettingData", "Msvm_ComputerSystem"):
        back = associated(target, source)
        return back
    if pair == ("Msvm_ComputerSystem", "Msvm_SummaryInformation"):
        linked = src.get("Caption") == "Virtual Machine" and dst.get("Name") == src.get("Name")
        return "Msvm_ComputerSystemSummaryInformation" if linked else None
    if pair == ("Msvm_ComputerSystem", "Msvm_Memory"):
        linked = src.get("Caption") == "Virtual Machine" and dst.get("SystemName") == src.get(
            "Name"
        )
        return "Msvm_SystemDevice" if linked else None
    if pair == ("Msvm_VirtualSystemSettingData", "Msvm_MemorySettingData"):
        prefix = f"{src.get('InstanceID')}\\"
        linked = str(dst.get("InstanceID", "")).startswith(prefix)
        return "Msvm_VirtualSystemSettingDataComponent" if linked else None
    if pair == ("Msvm_MemorySettingData", "Msvm_VirtualSystemSettingData"):
        return associated(target, source)
    return None


def class_names(namespace: str) -> tuple[str, ...]:
    if namespace == CIMV2:
        return PERF_CLASSES
    return (*VIRTUALIZATION_CLASSES, "Msvm_ConcreteJob")


def needs_counters(class_name: str) -> bool:
    return class_name in PERF_CLASSES


def build(snap: Snapshot, namespace: str, class_name: str) -> list[Instance]:
    """Every instance of a (known) class; jobs are the provider's, not built here."""
    if namespace == CIMV2:
        if VM_PERF in class_name:
            return vm_perf(snap, class_name)
        return balancer_perf(snap, class_name)
    return VIRTUALIZATION_CLASSES[class_name](snap, namespace)


def canonical_class(namespace: str, name: str) -> str | None:
    """The class's own spelling (WMI class names are case-blind), None if not there."""
    folded = name.casefold()
    return next((c for c in class_names(namespace) if c.casefold() == folded), None)
