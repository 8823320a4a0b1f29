"""A Generation 2 VM's UEFI firmware: Get-VMFirmware and Set-VMFirmware (Secure Boot on or off
and its template; a Linux guest boots only with MicrosoftUEFICertificateAuthority or Secure
Boot off, real-host facts). Kept beside the host's VM records, by VM id.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import bind
from harness.emulator.cmdlets.registry import cmdlet, script
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import (
    ArgumentValidationError,
    InvalidStateError,
    NamedParameterError,
)
from harness.emulator.host import EmulatedHost, VmRecord
from harness.emulator.psrp import Command
from harness.hostcmdlets import parameters_missing

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

TEMPLATES = ("MicrosoftWindows", "MicrosoftUEFICertificateAuthority", "OpenSourceShieldedVM")
_lock = threading.Lock()
# Per host: VM id → (Secure Boot on, template).
_FIRMWARE: weakref.WeakKeyDictionary[EmulatedHost, dict[uuid.UUID, tuple[bool, str]]] = (
    weakref.WeakKeyDictionary()
)


def secure_boot(host: EmulatedHost, vm: VmRecord) -> tuple[bool, str]:
    """A VM's Secure Boot: on with the Windows template unless set otherwise (New-VM's)."""
    with _lock:
        return _FIRMWARE.get(host, {}).get(vm.id, (True, "MicrosoftWindows"))


def _gen2(vm: VmRecord) -> None:
    if vm.generation != 2:
        raise InvalidStateError(
            f"'{vm.name}' is a generation {vm.generation} virtual machine: it has no UEFI"
            " firmware settings.",
            target=vm.name,
        )


@cmdlet("Get-VMFirmware")
def _get_firmware(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "VM", "ComputerName"])
    results = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        _gen2(vm)
        on, template = secure_boot(h.host, vm)
        results.append(
            custom(VMName=vm.name, SecureBoot="On" if on else "Off", SecureBootTemplate=template)
        )
    return results


@cmdlet("Set-VMFirmware")
def _set_firmware(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "VM", "EnableSecureBoot", "SecureBootTemplate", "Passthru",
                 "ComputerName"])  # fmt: skip
    state = p.text("EnableSecureBoot")
    if state is not None and state.casefold() not in ("on", "off"):
        raise ArgumentValidationError("EnableSecureBoot", state, "Valid values are On, Off.")
    template = p.text("SecureBootTemplate")
    if template is not None and template.casefold() not in (t.casefold() for t in TEMPLATES):
        raise ArgumentValidationError(
            "SecureBootTemplate", template, f"Valid values are {', '.join(TEMPLATES)}."
        )
    for vm in h.one_or_more_vms(p, items, "VMName"):
        _set(h.host, vm, state, template)
    return []


def _set(host: EmulatedHost, vm: VmRecord, state: str | None, template: str | None) -> None:
    _gen2(vm)
    on, current = secure_boot(host, vm)
    if state is not None:
        on = state.casefold() == "on"
    if template is not None:
        current = next(t for t in TEMPLATES if t.casefold() == template.casefold())
    with _lock:
        _FIRMWARE.setdefault(host, {})[vm.id] = (on, current)


@script("vm-secure-boot")
def _vm_secure_boot(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "SecureBoot"])
    given = p.required("SecureBoot")
    # ValidateSet ignores case and binds the value as given.
    allowed = ("MicrosoftWindows", "MicrosoftUEFICertificateAuthority", "Off")
    if given.casefold() not in (a.casefold() for a in allowed):
        raise ArgumentValidationError(
            "SecureBoot", given, f"Valid values are {', '.join(allowed)}."
        )
    vm = h.vm_named(p.required("VMName"))  # Get-DmhVM: the exact name, never a pattern
    off = given.casefold() == "off"  # the script's -eq 'Off' ignores case too
    if vm.generation == 2:
        if not off and parameters_missing("Set-VMFirmware", {"SecureBootTemplate"}, h.host.version):
            raise NamedParameterError("SecureBootTemplate")  # the script's Set-VMFirmware call
        _set(h.host, vm, "Off" if off else "On", None if off else given)
    return [custom(Name=vm.name, Generation=vm.generation, SecureBoot=given)]
