"""Hyper-V's virtual hard disk cmdlets over the emulated host's disk registry: differencing
disks over a template, and the .avhdx chain checkpoints add (real-host facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import bind
from harness.emulator.cmdlets.registry import cmdlet
from harness.emulator.cmdlets.shapes import vhd_object
from harness.emulator.errors import InvalidParameterError, ObjectNotFoundError
from harness.emulator.psrp import Command

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler


def _missing(path: str) -> ObjectNotFoundError:
    return ObjectNotFoundError(
        f"Getting the mounted storage instance for the path '{path}' failed.\n"
        f"The system cannot find the file specified. ('{path}')",
        target=path,
    )


@cmdlet("Get-VHD")
def _get_vhd(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Path", "ComputerName", "VMId", "DiskNumber"])
    path = p.required("Path")
    parent = h.host.disk_parent(path)
    if parent is None:
        raise _missing(path)
    return [vhd_object(path, parent)]


@cmdlet("New-VHD")
def _new_vhd(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Path", "ParentPath", "Differencing", "SizeBytes", "Dynamic", "Fixed", "ComputerName"],
    )
    path = p.required("Path")
    parent = p.text("ParentPath") or ""
    if not parent:
        raise InvalidParameterError(
            "The emulated host creates differencing disks only (give -ParentPath).", target=path
        )
    guest_os = h.host.disk_os(parent)
    if guest_os is None:
        raise _missing(parent)
    if h.host.disk_os(path) is not None:
        raise InvalidParameterError(
            f"Failed to create the virtual hard disk.\nThe file exists. ('{path}')", target=path
        )
    h.host.add_disk(path, guest_os, parent=parent)
    return [vhd_object(path, parent)]
