"""The guest-ops script's operations (reference §1.6): what runs inside a guest, reached over
PowerShell Direct (vm-invoke, sample-vm) or the guest's own WinRM endpoint (guest-ops).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.registry import guest_operation
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import ArgumentValidationError
from harness.emulator.guest import (
    AVAILABLE_MBYTES,
    COMMITTED_BYTES,
    MAXIMUM_MEMORY,
    TOTAL_PHYSICAL,
    EmulatedGuest,
)
from harness.emulator.host import VmRecord
from harness.emulator.psobjects import int64

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler


def run_guest_operation(
    h: HyperVHandler, vm: VmRecord, operation: str, arguments: Mapping[str, Any]
) -> Any:
    """One operation in `vm`'s guest, which must be running (as PowerShell Direct needs)."""
    guest = h.guest_of(vm)
    func = guest_operation.get(operation)
    if func is None:
        raise ArgumentValidationError(
            "Operation", operation, f'The argument "{operation}" does not belong to the set.'
        )
    return func(h, vm, guest, {str(k).lower(): v for k, v in dict(arguments).items()})


def _pid(args: Mapping[str, Any]) -> int:
    return int(args.get("processid") or 0)


@guest_operation("StartProcess")
def _start_process(
    h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]
) -> Any:
    argv = [str(args.get("filepath") or ""), *[str(a) for a in (args.get("argumentlist") or [])]]
    env = {str(k): str(v) for k, v in dict(args.get("environment") or {}).items()}
    process = guest.start_process(
        argv, env, args.get("workingdirectory") or None, merge_output=True
    )
    h.remember(vm, process)
    return custom(ProcessId=process.pid, OutputPath=str(process.stdout_path))


@guest_operation("ProcessStats")
def _process_stats(
    h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]
) -> Any:
    found = h.process(vm, _pid(args))
    if found is None:
        return custom(
            ProcessId=_pid(args), Running=False, WorkingSet=int64(0), PrivateBytes=int64(0)
        )
    stats = found.stats()
    return custom(
        ProcessId=found.pid,
        Running=stats.running,
        WorkingSet=int64(stats.working_set_bytes),
        PrivateBytes=int64(stats.private_bytes),
    )


@guest_operation("ProcessResult")
def _process_result(
    h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]
) -> Any:
    found = h.process(vm, _pid(args))
    offset = int(args.get("offset") or 0)
    text, next_offset = "", offset
    # Exit state first: output read after it is complete when the process has exited.
    code = None if found is None else found.exit_code
    running = found is not None and found.running
    if found is not None:
        text, next_offset = guest.read_from(found.stdout_path, offset)
    return custom(
        ProcessId=_pid(args),
        Running=running,
        ExitCode=code,
        Output=text,
        NextOffset=int64(next_offset),
    )


@guest_operation("StopProcess")
def _stop_process(
    h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]
) -> Any:
    found = h.process(vm, _pid(args))
    if found is not None:
        found.stop(timeout=5.0, graceful=False)
    return custom(ProcessId=_pid(args), Stopped=True)


@guest_operation("WriteFile")
def _write_file(
    h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]
) -> Any:
    path = str(args.get("path") or "")
    target = guest.host_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(str(args.get("contentbase64") or "")))
    return custom(Path=path, Length=int64(target.stat().st_size))


@guest_operation("Counters")
def _counters(h: HyperVHandler, vm: VmRecord, guest: EmulatedGuest, args: Mapping[str, Any]) -> Any:
    view = h.host.guest_view(vm.id)
    values = view.counters() if view is not None else {}
    return custom(
        TotalPhysicalMemory=int64(int(values.get(TOTAL_PHYSICAL, 0))),
        AvailableMBytes=int64(int(values.get(AVAILABLE_MBYTES, 0))),
        CommittedBytes=int64(int(values.get(COMMITTED_BYTES, 0))),
        MaximumMemoryMBytes=int64(int(values.get(MAXIMUM_MEMORY, 0))),
    )
