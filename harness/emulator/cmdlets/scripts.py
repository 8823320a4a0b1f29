"""The harness's named scripts (harness/hyperv/scripts), recognised by their
`# dmh-script: <name>` line: the emulator runs what each script does, not PowerShell.
"""

from __future__ import annotations

import uuid
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.guest_ops import run_guest_operation
from harness.emulator.cmdlets.handler import SCRIPT_LINE
from harness.emulator.cmdlets.params import bind
from harness.emulator.cmdlets.registry import script
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import (
    CommandNotFoundError,
    InvalidParameterError,
    ObjectNotFoundError,
)
from harness.emulator.host import DEFAULT_STARTUP, VMState
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


@script("host-facts")
def _host_facts(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    caption, version = _OS[h.host.version]
    balancer = h.host.balancer_counters()
    return [
        custom(
            ComputerName=h.host.name,
            OSCaption=caption,
            OSVersion=version,
            MemoryCapacity=int64(h.host.total_memory),
            AvailableMemoryMB=int64(int(balancer.get("Available Memory", 0))),
            AveragePressure=int64(int(balancer.get("Average Pressure", 0))),
        )
    ]


@script("new-vm-from-template")
def _new_vm_from_template(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name", "TemplatePath", "DiskDirectory", "StartupBytes", "Generation", "Notes"])
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
        h.host.add_disk(vhd, guest_os)
    try:
        vm = h.host.new_vm(
            p.required("Name"),
            memory_startup=p.int64("StartupBytes") or DEFAULT_STARTUP,
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
def _remove_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Name"])
    vm = h.host.get_vm(p.required("Name"))
    if vm.state is not VMState.Off:
        h.host.stop(vm.id, turn_off=True)
    h.host.remove(vm.id)
    removed = 0
    if vm.vhd_path and PureWindowsPath(vm.vhd_path).name.startswith("dmh-"):
        h.host.remove_disk(vm.vhd_path)
        removed = 1
    return [custom(Name=vm.name, RemovedDisks=removed)]


@script("vm-address")
def _vm_address(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName"])
    vm = h.host.get_vm(p.required("VMName"))
    if h.guest_endpoint is None or vm.state is not VMState.Running:
        raise ObjectNotFoundError(
            f"The virtual machine '{vm.name}' has no IP address.", target=vm.name
        )
    endpoint = h.guest_endpoint(vm)
    return [
        custom(
            Address=endpoint.address,
            Port=endpoint.port,
            Path=endpoint.path,
            Ssl=endpoint.ssl,
            Auth="basic",
        )
    ]


@script(_GUEST_OPS)
def _guest_ops(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    if h.bound_vm is None:
        raise CommandNotFoundError(_GUEST_OPS)
    p = bind(c, ["Operation", "Arguments"])
    vm = h.host.get_vm(h.bound_vm)
    return [run_guest_operation(h, vm, p.required("Operation"), p.get("Arguments") or {})]


@script("vm-invoke")
def _vm_invoke(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "GuestScript", "Operation", "Arguments", "GuestUser", "GuestPassword"])
    vm = h.host.get_vm(p.required("VMName"))
    _check_guest_script(p.required("GuestScript"))
    h.check_guest_credentials(p.get("GuestUser"), p.get("GuestPassword"))
    return [run_guest_operation(h, vm, p.required("Operation"), p.get("Arguments") or {})]


def _check_guest_script(text: str) -> None:
    match = SCRIPT_LINE.search(text)
    if match is None or match.group(1) != _GUEST_OPS:
        raise InvalidParameterError("GuestScript must be the harness's guest-ops script.")


@script("sample-vm")
def _sample_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName", "ProcessId", "OutputPath", "OutputOffset", "GuestScript", "GuestUser",
            "GuestPassword",
        ],
    )  # fmt: skip
    vm = h.host.get_vm(p.required("VMName"))
    counters: dict[str, Any] = {}
    guest = app = output = None
    if vm.state is VMState.Running:
        counters = {
            name.lower(): int64(int(value)) for name, value in h.host.vm_counters(vm.id).items()
        }
        if p.text("GuestScript"):
            _check_guest_script(p.text("GuestScript") or "")
            h.check_guest_credentials(p.get("GuestUser"), p.get("GuestPassword"))
            guest = run_guest_operation(h, vm, "Counters", {})
            pid = p.int64("ProcessId") or 0
            if pid:
                app = run_guest_operation(h, vm, "ProcessStats", {"ProcessId": pid})
                output = run_guest_operation(
                    h,
                    vm,
                    "ProcessResult",
                    {
                        "ProcessId": pid,
                        "OutputPath": p.text("OutputPath") or "",
                        "Offset": p.int64("OutputOffset") or 0,
                    },
                )
    return [
        custom(
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
