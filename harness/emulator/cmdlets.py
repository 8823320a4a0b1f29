"""Hyper-V's cmdlets and the harness's named scripts, served over the emulated host.

Objects carry the real shapes (type names, adapted properties, enums, Int64 byte counts) and
failures come back as Hyper-V's error records (reference §1). Scripts are recognised by their
`# dmh-script: <name>` line: the emulator runs the harness's own scripts, not PowerShell.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hmac
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PureWindowsPath
from typing import Any

from harness.emulator.errors import EmulatorError, VmNotFoundError
from harness.emulator.guest import (
    AVAILABLE_MBYTES,
    COMMITTED_BYTES,
    MAXIMUM_MEMORY,
    TOTAL_PHYSICAL,
    EmulatedGuest,
    LocalProcess,
)
from harness.emulator.host import (
    CheckpointInfo,
    CheckpointType,
    EmulatedHost,
    VmRecord,
    VMState,
    has_wildcards,
    like,
)
from harness.emulator.psobjects import int64, make_enum, make_object
from harness.emulator.psrp import Command, ErrorRecord, PipelineOutput, TerminatingError
from harness.errors import SettingError
from harness.settings import HostVersion

log = logging.getLogger(__name__)

_NS = "Microsoft.HyperV.PowerShell"
_VM_TYPES = (f"{_NS}.VirtualMachine", f"{_NS}.VirtualizationObject")
_OS = {
    HostVersion.V2008R2SP1: ("Microsoft Windows Server 2008 R2 Datacenter", "6.1.7601"),
    HostVersion.V2012: ("Microsoft Windows Server 2012 Datacenter", "6.2.9200"),
    HostVersion.V2012R2: ("Microsoft Windows Server 2012 R2 Datacenter", "6.3.9600"),
    HostVersion.V2016: ("Microsoft Windows Server 2016 Datacenter", "10.0.14393"),
    HostVersion.V2019: ("Microsoft Windows Server 2019 Datacenter", "10.0.17763"),
    HostVersion.V2022: ("Microsoft Windows Server 2022 Datacenter", "10.0.20348"),
}
_INTEGRATION_SERVICES = (
    ("Guest Service Interface", False),
    ("Heartbeat", True),
    ("Key-Value Pair Exchange", True),
    ("Shutdown", True),
    ("Time Synchronization", True),
    ("VSS", True),
)
_SCRIPT_LINE = re.compile(r"^#\s*dmh-script:\s*([a-z0-9-]+)\s*$", re.MULTILINE)
TEMPLATE_DIR = "C:\\DMH\\Templates"
DISK_DIR = "C:\\DMH\\Disks"


# -- errors ------------------------------------------------------------------------------


def _cmdlet_class(cmdlet: str) -> str:
    return f"{_NS}.Commands.{cmdlet.replace('-', '')}"


def hyperv_error(exc: EmulatorError, cmdlet: str) -> ErrorRecord:
    """A Hyper-V error record (§1.9) from an emulator failure."""
    return ErrorRecord(
        message=exc.message,
        error_id=f"{exc.error_id},{_cmdlet_class(cmdlet)}",
        category=exc.category,
        target_object=exc.target or None,
        exception_type=f"{_NS}.VirtualizationException",
        activity=cmdlet,
    )


def _argument_error(
    cmdlet: str, message: str, target: str = "", error_id: str = "InvalidParameter"
) -> TerminatingError:
    return TerminatingError(
        ErrorRecord(
            message=message,
            error_id=f"{error_id},{_cmdlet_class(cmdlet)}",
            category="InvalidArgument",
            target_object=target or None,
            exception_type="System.Management.Automation.ParameterBindingException",
            activity=cmdlet,
        )
    )


def command_not_found(name: str) -> TerminatingError:
    return TerminatingError(
        ErrorRecord(
            message=(
                f"The term '{name}' is not recognized as the name of a cmdlet, function, script "
                "file, or operable program. Check the spelling of the name, or if a path was "
                "included, verify that the path is correct and try again."
            ),
            error_id="CommandNotFoundException",
            category="ObjectNotFound",
            target_object=name,
            exception_type="System.Management.Automation.CommandNotFoundException",
        )
    )


_EVALUATORS = frozenset({"invoke-expression", "iex"})


def script_not_supported(via: str = "") -> TerminatingError:
    """The refusal of arbitrary PowerShell (a script, or Invoke-Expression of one)."""
    return TerminatingError(
        ErrorRecord(
            message=(
                "The DM Harness emulator runs only the harness's named scripts "
                "(a '# dmh-script: <name>' line) and Hyper-V cmdlets, not arbitrary PowerShell"
                + (f" (here through {via})." if via else ".")
            ),
            error_id="ScriptNotSupported",
            category="NotImplemented",
            target_object=via or None,
            exception_type="System.NotSupportedException",
            activity=via,
        )
    )


# -- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """A command's parameters bound by name (case-insensitive, aliases) and position."""

    cmdlet: str
    values: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name.lower(), default)

    def has(self, name: str) -> bool:
        return name.lower() in self.values

    def switch(self, name: str) -> bool:
        return bool(self.values.get(name.lower(), False))

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name.lower())
        if value is None:
            if required:
                raise _argument_error(
                    self.cmdlet,
                    f"Cannot process command because of one or more missing mandatory parameters: {name}.",
                    error_id="MissingMandatoryParameter",
                )
            return None
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else value
        return str(value)

    def size(self, name: str) -> int | None:
        value = self.values.get(name.lower())
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _argument_error(
                self.cmdlet,
                f'Cannot bind parameter \'{name}\'. Cannot convert value "{value}" to type "System.Int64".',
                str(value),
                error_id="CannotConvertArgumentNoMessage",
            )
        return int(value)

    def integer(self, name: str) -> int | None:
        return self.size(name)


def bind(command: Command, spec: Sequence[str], aliases: Mapping[str, str] | None = None) -> Params:
    """Bind named and positional parameters to `spec` (names in positional order)."""
    known = {name.lower(): name for name in spec}
    alias = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
    values: dict[str, Any] = {}
    position = 0
    for name, value in command.parameters:
        if name is None:
            if position >= len(spec):
                raise _argument_error(
                    command.name,
                    f"A positional parameter cannot be found that accepts argument '{value}'.",
                    str(value),
                    error_id="PositionalParameterNotFound",
                )
            values[spec[position].lower()] = value
            position += 1
            continue
        key = name.lstrip("-").lower()
        key = alias.get(key, key)
        if key not in known:
            raise _argument_error(
                command.name,
                f"A parameter cannot be found that matches parameter name '{name}'.",
                name,
                error_id="NamedParameterNotFound",
            )
        values[key] = value
    return Params(command.name, values)


# -- object shapes -----------------------------------------------------------------------


def vm_object(vm: VmRecord) -> Any:
    heartbeat = (
        None
        if vm.heartbeat is None
        else make_enum(f"{_NS}.VMHeartbeatStatus", vm.heartbeat.name, int(vm.heartbeat))
    )
    return make_object(
        _VM_TYPES,
        {
            "Name": vm.name,
            "Id": vm.id,
            "VMName": vm.name,
            "VMId": vm.id,
            "ComputerName": vm.computer_name,
            "State": make_enum(f"{_NS}.VMState", vm.state.name, int(vm.state)),
            "Status": "Operating normally" if vm.state is VMState.Running else "",
            "Heartbeat": heartbeat,
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
            "CheckpointType": make_enum(
                f"{_NS}.CheckpointType", vm.checkpoint_type.name, int(vm.checkpoint_type)
            ),
            "ParentCheckpointId": vm.parent_checkpoint_id,
            "CreationTime": vm.creation_time,
            "HardDrives": [vm.vhd_path] if vm.vhd_path else [],
        },
        to_string=f"VirtualMachine (Name = '{vm.name}') [Id = '{vm.id}']",
    )


def memory_object(
    vm_name: str, vm_id: uuid.UUID, computer: str, settings: Any, snapshot: str = ""
) -> Any:
    return make_object(
        (f"{_NS}.VMMemory", f"{_NS}.VMDevice", f"{_NS}.VirtualizationObject"),
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
            "MaximumPerNumaNode": int64(settings.maximum >> 20),
            "ResourcePoolName": "Primordial",
        },
        to_string="VMMemory",
    )


def checkpoint_object(cp: CheckpointInfo, computer: str) -> Any:
    return make_object(
        (f"{_NS}.VMSnapshot", f"{_NS}.VirtualMachineBase", f"{_NS}.VirtualizationObject"),
        {
            "Name": cp.name,
            "Id": cp.id,
            "VMName": cp.vm_name,
            "VMId": cp.vm_id,
            "ComputerName": computer,
            "CreationTime": cp.creation_time,
            "SnapshotType": make_enum(f"{_NS}.SnapshotType", "Standard", 0),
            "CheckpointType": make_enum(
                f"{_NS}.CheckpointType", cp.checkpoint_type.name, int(cp.checkpoint_type)
            ),
            "State": make_enum(f"{_NS}.VMState", cp.vm_state.name, int(cp.vm_state)),
            "ParentSnapshotId": cp.parent_checkpoint_id,
            "MemoryStartup": int64(cp.memory.startup),
            "DynamicMemoryEnabled": cp.memory.dynamic,
        },
        to_string=f"VMSnapshot (Name = '{cp.name}', VMName = '{cp.vm_name}') [Id = '{cp.id}']",
    )


# -- the handler -------------------------------------------------------------------------

Cmdlet = Callable[["HyperVHandler", Command, list[Any]], list[Any]]
_CMDLETS: dict[str, Cmdlet] = {}
_SCRIPTS: dict[str, Cmdlet] = {}


def cmdlet(*names: str) -> Callable[[Cmdlet], Cmdlet]:
    def register(func: Cmdlet) -> Cmdlet:
        for name in names:
            _CMDLETS[name.lower()] = func
        return func

    return register


def script(name: str) -> Callable[[Cmdlet], Cmdlet]:
    def register(func: Cmdlet) -> Cmdlet:
        _SCRIPTS[name] = func
        return func

    return register


def script_handlers() -> frozenset[str]:
    """Names of the harness scripts the emulator implements (a test checks each has one)."""
    return frozenset(_SCRIPTS)


@dataclass(frozen=True)
class GuestEndpoint:
    """Where a guest's own WinRM listener is (for the WinRM guest channel)."""

    address: str
    port: int
    path: str
    ssl: bool


class HyperVHandler:
    """Runs received pipelines against an EmulatedHost, as a Hyper-V host would."""

    def __init__(
        self,
        host: EmulatedHost,
        *,
        guest_username: str = "guest",
        guest_password: str = "",
        guest_endpoint: Callable[[VmRecord], GuestEndpoint] | None = None,
        bound_vm: uuid.UUID | None = None,
    ) -> None:
        self.host = host
        self.guest_username = guest_username
        self._guest_password = guest_password.encode()
        self.guest_endpoint = guest_endpoint
        self.bound_vm = bound_vm  # set: this handler is one guest's own WinRM endpoint
        self._outputs: dict[tuple[str, int], LocalProcess] = {}
        self._lock = threading.Lock()

    # PipelineHandler
    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        items: list[Any] = list(pipeline_input)
        for command in commands:
            items = self._run_one(command, items)
            if command.end_of_statement:
                self._emit(items, out)
                items = []
        self._emit(items, out)

    def _emit(self, items: Iterable[Any], out: PipelineOutput) -> None:
        for item in items:
            out.write(self._shape(item))

    def _shape(self, item: Any) -> Any:
        if isinstance(item, VmRecord):
            return vm_object(item)
        if isinstance(item, CheckpointInfo):
            return checkpoint_object(item, self.host.name)
        return item

    def _run_one(self, command: Command, items: list[Any]) -> list[Any]:
        if command.name.lower() in _EVALUATORS:
            # What pypsrp's Client.execute_ps sends: a script by another door.
            raise script_not_supported(command.name)
        if command.is_script:
            match = _SCRIPT_LINE.search(command.name)
            if match is None or match.group(1) not in _SCRIPTS:
                raise script_not_supported()
            name = match.group(1)
            if self.bound_vm is not None and name != "guest-ops":
                raise command_not_found(name)
            return self._guarded(_SCRIPTS[name], command, items, name)
        func = _CMDLETS.get(command.name.lower())
        if func is None or (self.bound_vm is not None and command.name.lower() != "get-counter"):
            raise command_not_found(command.name)
        return self._guarded(func, command, items, command.name)

    def _guarded(self, func: Cmdlet, command: Command, items: list[Any], label: str) -> list[Any]:
        try:
            return func(self, command, items)
        except EmulatorError as exc:
            raise TerminatingError(hyperv_error(exc, label)) from None
        except SettingError as exc:
            raise TerminatingError(
                ErrorRecord(
                    message=str(exc),
                    error_id=f"InvalidParameter,{_cmdlet_class(label)}",
                    category="InvalidArgument",
                    target_object=str(exc.value),
                    exception_type=f"{_NS}.VirtualizationException",
                    activity=label,
                )
            ) from None

    # -- shared helpers ----------------------------------------------------------------
    def vms_for(self, params: Params, items: Sequence[Any], key: str = "Name") -> list[VmRecord]:
        """VMs named by parameter (wildcards allowed) or piped in as VM objects."""
        vm_objects = params.get("VM")
        if vm_objects is not None:
            refs = vm_objects if isinstance(vm_objects, list) else [vm_objects]
            return [self.host.get_vm(uuid.UUID(str(_field(r, "Id")))) for r in refs]
        names = params.get(key)
        if names is None:
            piped = [i for i in items if isinstance(i, VmRecord)]
            if piped:
                return [self.host.get_vm(v.id) for v in piped]
            return self.host.find_vms("*")
        found: list[VmRecord] = []
        for name in names if isinstance(names, list) else [names]:
            # -Name is a wildcard pattern even without wildcards: `vm``1` is the VM "vm`1", as
            # clients escape names (WildcardPattern.Escape). Only a plain name that matches
            # nothing is an error.
            pattern = str(name)
            matches = self.host.find_vms(pattern)
            if not matches and not has_wildcards(pattern):
                raise VmNotFoundError(pattern)
            found.extend(matches)
        return found

    def check_guest_credentials(self, user: Any, password: Any) -> None:
        ok_user = hmac.compare_digest(str(user or "").encode(), self.guest_username.encode())
        ok_password = hmac.compare_digest(str(password or "").encode(), self._guest_password)
        if not (ok_user and ok_password):
            raise EmulatorError(
                "The credential is invalid.",
                category="InvalidArgument",
                error_id="InvalidCredential",
            )

    def guest_of(self, vm: VmRecord) -> EmulatedGuest:
        if vm.state is not VMState.Running:
            raise EmulatorError(
                "An error has occurred which Windows PowerShell cannot handle. A remote session might have ended.",
                target=vm.name,
                category="OpenError",
                error_id="PSSessionOpenFailed",
            )
        return self.host.guest(vm.id)

    def remember(self, vm: VmRecord, process: LocalProcess) -> None:
        with self._lock:
            self._outputs[(str(vm.id), process.pid)] = process

    def process(self, vm: VmRecord, pid: int) -> LocalProcess | None:
        with self._lock:
            known = self._outputs.get((str(vm.id), pid))
        if known is not None:
            return known
        guest = self.host.guest(vm.id)
        return next((p for p in guest.processes() if p.pid == pid), None)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name.lower(), None)


def _one_vm(
    handler: HyperVHandler, params: Params, items: Sequence[Any], key: str = "Name"
) -> list[VmRecord]:
    vms = handler.vms_for(params, items, key)
    if not vms:
        name = params.text(key) or "*"
        raise EmulatorError(
            f'Hyper-V was unable to find a virtual machine with name "{name}".',
            target=name,
            category="InvalidArgument",
            error_id="InvalidParameter",
        )
    return vms


# -- host and VM cmdlets (§1) ------------------------------------------------------------


@cmdlet("Get-VMHost")
def _get_vmhost(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    bind(c, ["ComputerName"])
    host = h.host
    return [
        make_object(
            (f"{_NS}.VMHost", f"{_NS}.VirtualizationObject"),
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
    ]


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
            "Name",
            "MemoryStartupBytes",
            "Generation",
            "NoVHD",
            "VHDPath",
            "Path",
            "SwitchName",
            "BootDevice",
        ],
        {"VMName": "Name"},
    )
    vhd = p.text("VHDPath") or ""
    guest_os = h.host.disk_os(vhd) if vhd else None
    startup = p.size("MemoryStartupBytes")
    vm = h.host.new_vm(
        p.text("Name", required=True) or "",
        memory_startup=512 << 20 if startup is None else startup,  # New-VM's default (§1.4)
        generation=int(p.get("Generation", 2)),
        guest_os=guest_os,
        vhd_path=vhd,
    )
    return [vm]


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
    results = []
    for vm in _one_vm(h, p, items):
        if p.has("Notes"):
            vm = h.host.set_notes(vm.id, p.text("Notes") or "")
        changes: dict[str, Any] = {}
        if p.switch("DynamicMemory"):
            changes["dynamic"] = True
        if p.switch("StaticMemory"):
            changes["dynamic"] = False
        for param, key in (
            ("MemoryStartupBytes", "startup"),
            ("MemoryMinimumBytes", "minimum"),
            ("MemoryMaximumBytes", "maximum"),
        ):
            if p.has(param):
                changes[key] = p.size(param)
        if changes:
            h.host.set_memory(vm.id, **changes)
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
    raise _argument_error(
        "Set-VM",
        f"Cannot bind parameter 'CheckpointType'. Cannot convert value \"{value}\" to type "
        f'"{_NS}.CheckpointType". Error: "Unable to match the identifier name {value} to a valid '
        f'enumerator name. Specify one of the following enumerator names and try again: {names}"',
        str(value),
        error_id="CannotConvertArgumentNoMessage",
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
        cp_id = uuid.UUID(str(_field(snapshot, "Id")))
        for vm in h.host.find_vms("*"):
            for cp in h.host.checkpoints(vm.id):
                if cp.id == cp_id:
                    return [memory_object(cp.vm_name, cp.vm_id, h.host.name, cp.memory, cp.name)]
        raise EmulatorError(
            "Unable to find the checkpoint.", category="ObjectNotFound", error_id="ObjectNotFound"
        )
    return [
        memory_object(vm.name, vm.id, vm.computer_name, vm.memory)
        for vm in _one_vm(h, p, items, "VMName")
    ]


@cmdlet("Set-VMMemory")
def _set_vmmemory(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName", "VM", "DynamicMemoryEnabled", "StartupBytes", "MinimumBytes", "MaximumBytes",
            "Buffer", "Priority", "MaximumAmountPerNumaNodeBytes", "ResourcePoolName", "Passthru",
            "ComputerName",
        ],
        {"Name": "VMName"},
    )  # fmt: skip
    numa = p.size("MaximumAmountPerNumaNodeBytes")
    if numa is not None and numa % (2 << 20):
        # The one alignment check the cmdlet makes itself (§1.1).
        raise EmulatorError(
            "The value for MaximumAmountPerNumaNodeBytes must be a multiple of 2 MB.",
            category="InvalidArgument",
            error_id="SetVMMemory_SizeNotAligned",
        )
    results = []
    for vm in _one_vm(h, p, items, "VMName"):
        dynamic = p.get("DynamicMemoryEnabled")
        updated = h.host.set_memory(
            vm.id,
            dynamic=None if dynamic is None else bool(dynamic),
            startup=p.size("StartupBytes"),
            minimum=p.size("MinimumBytes"),
            maximum=p.size("MaximumBytes"),
            buffer=p.integer("Buffer"),
            priority=p.integer("Priority"),
        )
        if p.switch("Passthru"):
            results.append(
                memory_object(updated.name, updated.id, updated.computer_name, updated.memory)
            )
    return results


def _lifecycle(
    action: Callable[[HyperVHandler, VmRecord, Params], VmRecord | None],
    extra: Sequence[str] = (),
) -> Cmdlet:
    def run(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
        p = bind(
            c,
            ["Name", "VM", *extra, "Passthru", "Force", "Confirm", "AsJob", "ComputerName"],
            {"VMName": "Name"},
        )
        results = []
        for vm in _one_vm(h, p, items):
            after = action(h, vm, p)
            if p.switch("Passthru") and after is not None:
                results.append(after)
        return results

    return run


_CMDLETS["start-vm"] = _lifecycle(lambda h, vm, p: h.host.start(vm.id))
_CMDLETS["stop-vm"] = _lifecycle(
    lambda h, vm, p: h.host.stop(vm.id, turn_off=p.switch("TurnOff")), ["TurnOff", "Save"]
)
_CMDLETS["save-vm"] = _lifecycle(lambda h, vm, p: h.host.save(vm.id))
_CMDLETS["suspend-vm"] = _lifecycle(lambda h, vm, p: h.host.pause(vm.id))
_CMDLETS["resume-vm"] = _lifecycle(lambda h, vm, p: h.host.resume(vm.id))
_CMDLETS["restart-vm"] = _lifecycle(lambda h, vm, p: h.host.restart(vm.id))


@cmdlet("Remove-VM")
def _remove_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name", "VM", "Force", "Confirm", "ComputerName"], {"VMName": "Name"})
    for vm in _one_vm(h, p, items):
        h.host.remove(vm.id)
    return []


@cmdlet("Checkpoint-VM")
def _checkpoint_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Name", "SnapshotName", "VM", "Passthru", "AsJob", "ComputerName"],
        {"VMName": "Name", "CheckpointName": "SnapshotName"},
    )
    results = []
    for vm in _one_vm(h, p, items):
        cp = h.host.checkpoint(vm.id, p.text("SnapshotName"))
        if p.switch("Passthru"):
            results.append(cp)
    return results


@cmdlet("Get-VMCheckpoint", "Get-VMSnapshot")
def _get_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "Name", "VM", "ComputerName"])
    pattern = p.text("Name") or "*"
    found: list[Any] = []
    for vm in _one_vm(h, p, items, "VMName"):
        found.extend(h.host.checkpoints(vm.id, pattern))
    if not found and not has_wildcards(pattern):
        raise EmulatorError(
            f'Hyper-V was unable to find a checkpoint with name "{pattern}".',
            target=pattern,
            category="ObjectNotFound",
            error_id="ObjectNotFound",
        )
    return found


def _checkpoint_targets(
    h: HyperVHandler, p: Params, items: Sequence[Any]
) -> list[tuple[VmRecord, CheckpointInfo]]:
    snapshot = p.get("VMSnapshot")
    pairs: list[tuple[VmRecord, CheckpointInfo]] = []
    for vm in _one_vm(h, p, items, "VMName"):
        for cp in h.host.checkpoints(vm.id, p.text("Name") or "*"):
            if snapshot is None or str(_field(snapshot, "Id")) == str(cp.id):
                pairs.append((vm, cp))
    if not pairs:
        name = p.text("Name") or ""
        raise EmulatorError(
            f'Hyper-V was unable to find a checkpoint with name "{name}".',
            target=name,
            category="ObjectNotFound",
            error_id="ObjectNotFound",
        )
    return pairs


@cmdlet("Restore-VMCheckpoint", "Restore-VMSnapshot")
def _restore_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Name", "VMName", "VMSnapshot", "Confirm", "Passthru", "AsJob", "ComputerName"],
        {"VMCheckpoint": "VMSnapshot"},
    )
    for vm, cp in _checkpoint_targets(h, p, items)[:1]:
        h.host.restore_checkpoint(vm.id, cp.id)
    return []


@cmdlet("Remove-VMCheckpoint", "Remove-VMSnapshot")
def _remove_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName",
            "Name",
            "VMSnapshot",
            "IncludeAllChildSnapshots",
            "Confirm",
            "AsJob",
            "ComputerName",
        ],
        {"VMCheckpoint": "VMSnapshot"},
    )
    for vm, cp in _checkpoint_targets(h, p, items):
        h.host.remove_checkpoint(vm.id, cp.id)
    return []


@cmdlet("Get-VMIntegrationService")
def _get_integration(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "Name", "VM", "ComputerName"])
    pattern = p.text("Name") or "*"
    results = []
    for vm in _one_vm(h, p, items, "VMName"):
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
            results.append(
                make_object(
                    (
                        f"{_NS}.VMIntegrationComponent",
                        f"{_NS}.VMDevice",
                        f"{_NS}.VirtualizationObject",
                    ),
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
            )
    return results


# -- Get-Counter (§4.1, §4.2) ------------------------------------------------------------

_COUNTER_PATH = re.compile(
    r"^\\(?:\\[^\\]+\\)?(?P<set>[^\\(]+)(?:\((?P<instance>.*)\))?\\(?P<counter>.+)$"
)


_VM_SET = "hyper-v dynamic memory vm"
_BALANCER_SET = "hyper-v dynamic memory balancer"
_GUEST_SETS = ("memory", "hyper-v dynamic memory integration service")
# A VM's counter instance exists while its partition holds memory, booting or paused too.
_HAS_COUNTERS = (VMState.Starting, VMState.Running, VMState.Paused)


def _counter_error(message: str) -> TerminatingError:
    """Get-Counter's own failure (a PDH error): not a Hyper-V error record."""
    return TerminatingError(
        ErrorRecord(
            message=message,
            error_id="CounterApiError,Microsoft.PowerShell.Commands.GetCounterCommand",
            category="InvalidResult",
            exception_type="System.Exception",
            activity="Get-Counter",
        )
    )


@cmdlet("Get-Counter")
def _get_counter(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Counter", "SampleInterval", "MaxSamples", "ComputerName", "ErrorAction"])
    paths = p.get("Counter")
    if paths is None:
        raise _argument_error(
            "Get-Counter",
            "Cannot process command because of one or more missing mandatory parameters: Counter.",
            error_id="MissingMandatoryParameter",
        )
    now = datetime.now(timezone.utc)
    samples: list[tuple[str, str, float]] = []
    for path in paths if isinstance(paths, list) else [paths]:
        samples.extend(_counter_samples(h, str(path)))
    if not samples:
        raise _counter_error("The specified object was not found on the computer.")
    shaped = [
        make_object(
            ("Microsoft.PowerShell.Commands.GetCounter.PerformanceCounterSample",),
            {
                "Path": shown,
                "InstanceName": instance,
                "CookedValue": value,
                "RawValue": int64(int(value)),
                "Timestamp": now,
            },
            to_string="Microsoft.PowerShell.Commands.GetCounter.PerformanceCounterSample",
        )
        for shown, instance, value in samples
    ]
    return [
        make_object(
            ("Microsoft.PowerShell.Commands.GetCounter.PerformanceCounterSampleSet",),
            {
                "Timestamp": now,
                "CounterSamples": shaped,
                # PerformanceCounterSampleSet.Readings: "<path> :\n<value>\n\n" per sample
                "Readings": "".join(f"{shown} :\n{value:.15g}\n\n" for shown, _, value in samples),
            },
            to_string="Microsoft.PowerShell.Commands.GetCounter.PerformanceCounterSampleSet",
        )
    ]


def _counter_samples(h: HyperVHandler, path: str) -> list[tuple[str, str, float]]:
    """(path as Get-Counter shows it, instance, value) for each counter `path` names, wildcards expanded;
    PDH's errors for a set, an instance or a counter that does not exist."""
    match = _COUNTER_PATH.match(path)
    if match is None:
        raise _counter_error("The specified counter path could not be interpreted.")
    counter_set, instance, counter = (
        match["set"].strip().lower(),
        match["instance"],
        match["counter"],
    )
    sources: list[tuple[str, Mapping[str, float]]] = []
    if counter_set == _VM_SET and h.bound_vm is None:
        for vm in h.host.find_vms("*"):
            if vm.state in _HAS_COUNTERS and like(vm.name, instance or "*"):
                sources.append((vm.name, h.host.vm_counters(vm.id)))
    elif counter_set == _BALANCER_SET and h.bound_vm is None:
        if like("system balancer", instance or "*"):
            sources.append(("system balancer", h.host.balancer_counters()))
    elif h.bound_vm is not None and counter_set in _GUEST_SETS:
        view = h.host.guest_view(h.bound_vm)
        if view is not None:
            prefix = "\\" + counter_set + "\\"
            sources.append(
                (
                    "",
                    {
                        k.split("\\")[-1]: v
                        for k, v in view.counters().items()
                        if k.lower().startswith(prefix)
                    },
                )
            )
    else:
        raise _counter_error("The specified object was not found on the computer.")
    if not sources and instance is not None and not has_wildcards(instance):
        raise _counter_error("The specified instance is not present.")
    result: list[tuple[str, str, float]] = []
    for inst, values in sources:
        for name, value in values.items():
            if counter != "*" and not like(name, counter):
                continue
            shown = (
                f"\\\\{h.host.name.lower()}\\{counter_set}"
                + (f"({inst.lower()})" if inst else "")
                + f"\\{name.lower()}"
            )
            result.append((shown, inst.lower(), float(value)))
    if sources and not result and not has_wildcards(counter):
        raise _counter_error("The specified counter could not be found.")
    return result


# -- the harness's named scripts (harness/hyperv/scripts) -----------------------------------


@script("host-facts")
def _host_facts(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    caption, version = _OS[h.host.version]
    balancer = h.host.balancer_counters()
    return [
        make_object(
            ("System.Management.Automation.PSCustomObject",),
            {},
            extended={
                "ComputerName": h.host.name,
                "OSCaption": caption,
                "OSVersion": version,
                "MemoryCapacity": int64(h.host.total_memory),
                "AvailableMemoryMB": int64(int(balancer.get("Available Memory", 0))),
                "AveragePressure": int64(int(balancer.get("Average Pressure", 0))),
            },
        )
    ]


def _custom(**values: Any) -> Any:
    return make_object(("System.Management.Automation.PSCustomObject",), {}, extended=values)


@script("new-vm-from-template")
def _new_vm_from_template(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name", "TemplatePath", "DiskDirectory", "StartupBytes", "Generation", "Notes"])
    template = p.text("TemplatePath")
    vhd = ""
    guest_os = None
    if template:
        guest_os = h.host.disk_os(template)
        if guest_os is None:
            raise EmulatorError(
                f"The system cannot find the file specified: '{template}'.",
                target=template,
                category="ObjectNotFound",
                error_id="ObjectNotFound",
            )
        extension = PureWindowsPath(template).suffix or ".vhdx"
        directory = p.text("DiskDirectory") or str(PureWindowsPath(template).parent)
        vhd = str(PureWindowsPath(directory) / f"dmh-{uuid.uuid4().hex}{extension}")
        h.host.add_disk(vhd, guest_os)
    try:
        vm = h.host.new_vm(
            p.text("Name", required=True) or "",
            memory_startup=p.size("StartupBytes") or 512 << 20,
            generation=int(p.get("Generation", 2)),
            guest_os=guest_os,
            vhd_path=vhd,
            notes=p.text("Notes") or "",
        )
    except BaseException:
        if vhd:
            h.host.remove_disk(vhd)
        raise
    return [vm]


@script("remove-vm")
def _remove_vm_script(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name"])
    vm = h.host.get_vm(p.text("Name", required=True) or "")
    if vm.state is not VMState.Off:
        h.host.stop(vm.id, turn_off=True)
    h.host.remove(vm.id)
    removed = 0
    if vm.vhd_path and PureWindowsPath(vm.vhd_path).name.startswith("dmh-"):
        h.host.remove_disk(vm.vhd_path)
        removed = 1
    return [_custom(Name=vm.name, RemovedDisks=removed)]


@script("vm-address")
def _vm_address(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName"])
    vm = h.host.get_vm(p.text("VMName", required=True) or "")
    if h.guest_endpoint is None or vm.state is not VMState.Running:
        raise EmulatorError(
            f"The virtual machine '{vm.name}' has no IP address.",
            target=vm.name,
            category="ObjectNotFound",
            error_id="ObjectNotFound",
        )
    endpoint = h.guest_endpoint(vm)
    return [
        _custom(
            Address=endpoint.address,
            Port=endpoint.port,
            Path=endpoint.path,
            Ssl=endpoint.ssl,
            Auth="basic",
        )
    ]


_GUEST_OPS_PARAMS = ["Operation", "Arguments"]


@script("guest-ops")
def _guest_ops_script(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    if h.bound_vm is None:
        raise command_not_found("guest-ops")
    p = bind(c, _GUEST_OPS_PARAMS)
    vm = h.host.get_vm(h.bound_vm)
    return [
        guest_operation(h, vm, p.text("Operation", required=True) or "", p.get("Arguments") or {})
    ]


@script("vm-invoke")
def _vm_invoke(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "GuestScript", "Operation", "Arguments", "GuestUser", "GuestPassword"])
    vm = h.host.get_vm(p.text("VMName", required=True) or "")
    _check_guest_script(p.text("GuestScript", required=True) or "")
    h.check_guest_credentials(p.get("GuestUser"), p.get("GuestPassword"))
    return [
        guest_operation(h, vm, p.text("Operation", required=True) or "", p.get("Arguments") or {})
    ]


def _check_guest_script(text: str) -> None:
    match = _SCRIPT_LINE.search(text)
    if match is None or match.group(1) != "guest-ops":
        raise EmulatorError(
            "GuestScript must be the harness's guest-ops script.",
            category="InvalidArgument",
            error_id="InvalidParameter",
        )


@script("sample-vm")
def _sample_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName",
            "ProcessId",
            "OutputPath",
            "OutputOffset",
            "GuestScript",
            "GuestUser",
            "GuestPassword",
        ],
    )
    vm = h.host.get_vm(p.text("VMName", required=True) or "")
    counters: dict[str, Any] = {}
    guest = app = output = None
    if vm.state is VMState.Running:
        counters = {
            name.lower(): int64(int(value)) for name, value in h.host.vm_counters(vm.id).items()
        }
        if p.text("GuestScript"):
            _check_guest_script(p.text("GuestScript") or "")
            h.check_guest_credentials(p.get("GuestUser"), p.get("GuestPassword"))
            guest = guest_operation(h, vm, "Counters", {})
            pid = p.integer("ProcessId") or 0
            if pid:
                app = guest_operation(h, vm, "ProcessStats", {"ProcessId": pid})
                output = guest_operation(
                    h,
                    vm,
                    "ProcessResult",
                    {
                        "ProcessId": pid,
                        "OutputPath": p.text("OutputPath") or "",
                        "Offset": p.integer("OutputOffset") or 0,
                    },
                )
    return [
        _custom(
            State=vm.state.name,
            MemoryAssigned=int64(vm.memory_assigned),
            MemoryDemand=int64(vm.memory_demand),
            MemoryStatus=vm.memory_status,
            Minimum=int64(vm.memory.minimum),
            Maximum=int64(vm.memory.maximum),
            Buffer=vm.memory.buffer,
            Counters=counters,
            Guest=guest,
            App=app,
            Output=output,
        )
    ]


# -- guest operations (the guest-ops script's operations, §1.6) --------------------------


def guest_operation(
    h: HyperVHandler, vm: VmRecord, operation: str, arguments: Mapping[str, Any]
) -> Any:
    guest = h.guest_of(vm)
    args = {str(k).lower(): v for k, v in dict(arguments).items()}
    if operation == "StartProcess":
        argv = [
            str(args.get("filepath") or ""),
            *[str(a) for a in (args.get("argumentlist") or [])],
        ]
        env = {str(k): str(v) for k, v in dict(args.get("environment") or {}).items()}
        process = guest.start_process(
            argv, env, args.get("workingdirectory") or None, merge_output=True
        )
        h.remember(vm, process)
        return _custom(ProcessId=process.pid, OutputPath=str(process.stdout_path))
    if operation == "ProcessStats":
        found = h.process(vm, int(args.get("processid") or 0))
        if found is None:
            return _custom(
                ProcessId=int(args.get("processid") or 0),
                Running=False,
                WorkingSet=int64(0),
                PrivateBytes=int64(0),
            )
        stats = found.stats()
        return _custom(
            ProcessId=found.pid,
            Running=stats.running,
            WorkingSet=int64(stats.working_set_bytes),
            PrivateBytes=int64(stats.private_bytes),
        )
    if operation == "ProcessResult":
        pid = int(args.get("processid") or 0)
        found = h.process(vm, pid)
        offset = int(args.get("offset") or 0)
        text, next_offset = "", offset
        # Exit state first: output read after it is complete when the process has exited.
        code = None if found is None else found.exit_code
        running = found is not None and found.running
        if found is not None:
            with contextlib.suppress(OSError), open(found.stdout_path, "rb") as stream:
                stream.seek(offset)
                data = stream.read()
                # A character cut by the end of what is written so far waits for the next read.
                decoder = codecs.getincrementaldecoder("utf-8")("replace")
                text = decoder.decode(data)
                next_offset = offset + len(data) - len(decoder.getstate()[0])
        return _custom(
            ProcessId=pid,
            Running=running,
            ExitCode=code,
            Output=text,
            NextOffset=int64(next_offset),
        )
    if operation == "StopProcess":
        found = h.process(vm, int(args.get("processid") or 0))
        if found is not None:
            found.stop(timeout=5.0, graceful=False)
        return _custom(ProcessId=int(args.get("processid") or 0), Stopped=True)
    if operation == "WriteFile":
        path = str(args.get("path") or "")
        target = guest.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(str(args.get("contentbase64") or "")))
        return _custom(Path=path, Length=int64(target.stat().st_size))
    if operation == "Counters":
        view = h.host.guest_view(vm.id)
        values = view.counters() if view is not None else {}
        return _custom(
            TotalPhysicalMemory=int64(int(values.get(TOTAL_PHYSICAL, 0))),
            AvailableMBytes=int64(int(values.get(AVAILABLE_MBYTES, 0))),
            CommittedBytes=int64(int(values.get(COMMITTED_BYTES, 0))),
            MaximumMemoryMBytes=int64(int(values.get(MAXIMUM_MEMORY, 0))),
        )
    raise EmulatorError(
        f"Cannot validate argument on parameter 'Operation'. The argument \"{operation}\" does not belong to the set.",
        target=operation,
        category="InvalidData",
        error_id="ParameterArgumentValidationError",
    )
