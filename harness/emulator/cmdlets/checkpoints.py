"""Hyper-V's checkpoint cmdlets, under both their names (VMCheckpoint and the older VMSnapshot,
reference §1.5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import Params, bind, object_id
from harness.emulator.cmdlets.registry import cmdlet
from harness.emulator.errors import CheckpointNotFoundError, InvalidParameterError
from harness.emulator.host import CheckpointInfo, VmRecord
from harness.emulator.psrp import Command
from harness.wildcards import has_wildcards, name_matches

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler


@cmdlet("Checkpoint-VM")
def _checkpoint_vm(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Name", "SnapshotName", "VM", "Passthru", "AsJob", "ComputerName"],
        {"VMName": "Name", "CheckpointName": "SnapshotName"},
    )
    results = []
    for vm in h.one_or_more_vms(p, items):
        cp = h.host.checkpoint(vm.id, p.text("SnapshotName"))
        if p.switch("Passthru"):
            results.append(cp)
    return results


@cmdlet("Get-VMCheckpoint", "Get-VMSnapshot")
def _get_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["VMName", "Name", "VM", "ComputerName"])
    pattern = p.text("Name") or "*"
    found: list[Any] = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        found.extend(cp for cp in h.host.checkpoints(vm.id) if name_matches(cp.name, pattern))
    if not found and not has_wildcards(pattern):
        raise CheckpointNotFoundError(pattern, by_name=True)
    return found


def _targets(
    h: HyperVHandler, p: Params, items: Sequence[Any]
) -> list[tuple[VmRecord, CheckpointInfo]]:
    snapshot = p.get("VMSnapshot")
    name = p.text("Name") or "*"
    pairs: list[tuple[VmRecord, CheckpointInfo]] = []
    for vm in h.one_or_more_vms(p, items, "VMName"):
        for cp in h.host.checkpoints(vm.id):
            if not name_matches(cp.name, name):
                continue
            if snapshot is None or str(object_id(snapshot)) == str(cp.id):
                pairs.append((vm, cp))
    if not pairs:
        raise CheckpointNotFoundError(p.text("Name") or "", by_name=True)
    return pairs


@cmdlet("Restore-VMCheckpoint", "Restore-VMSnapshot")
def _restore_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        ["Name", "VMName", "VMSnapshot", "Confirm", "Passthru", "AsJob", "ComputerName"],
        {"VMCheckpoint": "VMSnapshot"},
    )
    targets = _targets(h, p, items)
    if len(targets) > 1:
        # Restore-VMCheckpoint applies one checkpoint: several matching is an error.
        raise InvalidParameterError(
            f'{len(targets)} checkpoints match "{p.text("Name") or "*"}"; Restore-VMCheckpoint'
            " needs exactly one (give its exact name, or pipe the checkpoint object).",
            target=p.text("Name") or "",
        )
    for vm, cp in targets:
        h.host.restore_checkpoint(vm.id, cp.id)
    return []


@cmdlet("Remove-VMCheckpoint", "Remove-VMSnapshot")
def _remove_checkpoint(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(
        c,
        [
            "VMName", "Name", "VMSnapshot", "IncludeAllChildSnapshots", "Confirm", "AsJob",
            "ComputerName",
        ],
        {"VMCheckpoint": "VMSnapshot"},
    )  # fmt: skip
    for vm, cp in _targets(h, p, items):
        h.host.remove_checkpoint(vm.id, cp.id)
    return []
