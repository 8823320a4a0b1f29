"""The guest-ops script's operations (reference §1.6): what runs inside a guest, reached over
PowerShell Direct (vm-invoke, sample-vm) or the guest's own WinRM endpoint (guest-ops).

As on Windows (real-host facts): a started process is kept in the guest session's state under
the key StartProcess returned, and only found again by that key (a PID names nothing once the
process has exited); the session's state ends with the guest (off, reboot, restore); paths must
be absolute; stdout and stderr are separate files, stderr read after the process exits.
"""

from __future__ import annotations

import base64
import codecs
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.realhost import (
    GuestOpsFacts,
    guest_ops_facts,
    process_exited_error,
    sharing_violation,
)
from harness.emulator.cmdlets.registry import guest_operation
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import ArgumentValidationError, GuestError
from harness.emulator.guestface import GuestBackend, GuestProgram, read_from
from harness.emulator.guestview import (
    AVAILABLE_MBYTES,
    COMMITTED_BYTES,
    MAXIMUM_MEMORY,
    TOTAL_PHYSICAL,
)
from harness.emulator.host import VmRecord
from harness.emulator.psobjects import int64
from harness.errors import DeadlineError

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

# guest-ops' Assert-DmhAbsolute: a drive letter and a root, or a UNC path.
_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
# The emulated Windows guest's ANSI code page: UTF-8 (Windows 10 1903+ "Use Unicode UTF-8 for
# worldwide language support"), since its programs are Linux programs that write UTF-8.
ANSI_CODE_PAGE = 65001
# The window between creating a process and Start-Process's lookup by PID and the script's
# first Handle read: a program that exits within it is gone by then. On Windows it is short;
# here it also covers starting the emulated guest's sandbox, so an instant exit lands in it.
_START_LOOKUP = 0.5
SHELL_QUOTA_MB = 1024  # WinRM's default MaxMemoryPerShellMB (real-host facts, "WinRM quota")


def run_guest_operation(
    h: HyperVHandler,
    vm: VmRecord,
    operation: str,
    arguments: Mapping[str, Any],
    script: str | None = None,
) -> Any:
    """One operation in `vm`'s guest, which must be up (as PowerShell Direct needs), as the
    guest-ops text `script` would run it on a real guest (realhost.GuestOpsFacts; None: as
    designed)."""
    guest = h.guest_of(vm)
    func = guest_operation.get(operation)
    if func is None:
        raise ArgumentValidationError(
            "Operation", operation, f'The argument "{operation}" does not belong to the set.'
        )
    facts = GuestOpsFacts.designed() if script is None else guest_ops_facts(script)
    args = {str(k).lower(): v for k, v in dict(arguments).items()}
    return func(h, vm, guest, args, facts)


def _absolute(args: Mapping[str, Any], name: str) -> str:
    path = str(args.get(name.lower()) or "")
    if not _ABSOLUTE.match(path):
        raise GuestError(
            f"guest-ops: {name} '{path}' is not an absolute path (a drive letter and a root, or"
            " a UNC path); relative paths resolve differently for cmdlets and .NET.",
            target=path,
            category="OperationStopped",
            error_id="ScriptHalted",
        )
    return path


def _entry(h: HyperVHandler, vm: VmRecord, args: Mapping[str, Any]) -> GuestProgram:
    key = str(args.get("key") or "")
    found = h.process(vm, key)
    if found is None:
        raise GuestError(
            f"guest-ops: no process with key '{key}' in this session (the guest session was"
            " opened again, or the guest restarted): its exit code and output are lost.",
            target=key,
            category="OperationStopped",
            error_id="ScriptHalted",
        )
    return found


@guest_operation("StartProcess")
def _start_process(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    cwd = _absolute(args, "WorkingDirectory")
    argv = [str(args.get("filepath") or ""), *[str(a) for a in (args.get("argumentlist") or [])]]
    env = {str(k): str(v) for k, v in dict(args.get("environment") or {}).items()}
    process = guest.start_process(argv, env, cwd)
    if facts.unguarded_handle and _exits_within(process, _START_LOOKUP):
        # Start-Process -PassThru then `$null = $p.Handle`: the object was looked up by PID,
        # and a program already gone makes the Handle read throw; the exit code is lost with
        # the object (real-host facts, "A process that exits at once").
        raise process_exited_error(process.pid)
    key = uuid.uuid4().hex
    h.remember(vm, key, process)
    if facts.utf8_only:  # the script before code pages: no CodePage in its answer
        return custom(Key=key, ProcessId=int64(process.pid), OutputPath=str(process.stdout_path))
    code_page = int(args.get("codepage") or 0) or ANSI_CODE_PAGE
    h.code_pages[(vm.id, key)] = _codec(code_page)
    return custom(
        Key=key,
        ProcessId=int64(process.pid),
        OutputPath=str(process.stdout_path),
        CodePage=int64(code_page),
    )


def _exits_within(process: GuestProgram, seconds: float) -> bool:
    try:
        process.wait(seconds)
    except DeadlineError:
        return False
    return True


def _codec(code_page: int) -> str:
    """Python's codec for a Windows code page ([Text.Encoding]::GetEncoding(n))."""
    name = "utf-8" if code_page == 65001 else f"cp{code_page}"
    try:
        codecs.lookup(name)
    except LookupError:
        raise ArgumentValidationError(
            "CodePage", code_page, "No encoding is registered for this code page."
        ) from None
    return name


@guest_operation("ProcessStats")
def _process_stats(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    found = _entry(h, vm, args)
    stats = found.stats()
    running = found.running
    return custom(
        Key=str(args.get("key")),
        ProcessId=int64(found.pid),
        Running=running,
        WorkingSet=int64(stats.working_set_bytes if running else 0),
        PrivateBytes=int64(stats.private_bytes if running else 0),
    )


@guest_operation("ProcessResult")
def _process_result(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    found = _entry(h, vm, args)
    offset = int(args.get("offset") or 0)
    key = str(args.get("key"))
    codec = "utf-8" if facts.utf8_only else h.code_pages.get((vm.id, key), "utf-8")
    # Exit state first: output read after it is complete when the process has exited.
    code = found.exit_code
    text, next_offset = read_from(found.stdout_path, offset, codec)
    out_length = found.stdout_path.stat().st_size if found.stdout_path.exists() else 0
    memory_event = None
    if code is not None:
        if next_offset >= out_length:
            if facts.share_read_only and found.stats().processes > 0:
                # ReadAllBytes asks FileShare.Read; a child that inherited the stderr handle
                # still writes it (real-host facts, "Redirect files are shared read/write").
                raise sharing_violation(str(found.stderr_path))
            # Once the process has exited, its error output follows its output in one stream.
            more, end = read_from(found.stderr_path, next_offset - out_length, codec)
            text += more
            next_offset = out_length + end
        # What the guest OS logged about memory running out for this process's tree, as a
        # Linux kernel logs an OOM kill and Windows a resource-exhaustion event.
        logged = [e for e in guest.memory_events() if e.pid == found.pid]
        memory_event = logged[-1].message if logged else None
    return custom(
        Key=str(args.get("key")),
        ProcessId=int64(found.pid),
        Running=code is None,
        ExitCode=None if code is None else int64(code),
        Output=text,
        NextOffset=int64(next_offset),
        ErrorsFrom=None if code is None else int64(out_length),
        MemoryEvent=memory_event,
        **({} if facts.utf8_only else {"CodePage": int64(_code_page_of(codec))}),
    )


def _code_page_of(codec: str) -> int:
    return 65001 if codec == "utf-8" else int(codec.removeprefix("cp"))


@guest_operation("StopProcess")
def _stop_process(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    found = _entry(h, vm, args)
    code = found.exit_code
    if code is None:  # taskkill /T /F: the whole tree, at once
        code = found.stop(timeout=5.0, graceful=False)
    return custom(
        Key=str(args.get("key")),
        ProcessId=int64(found.pid),
        Stopped=True,
        ExitCode=None if code is None else int64(code),
    )


@guest_operation("WriteFile")
def _write_file(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    path = _absolute(args, "Path")
    target = guest.host_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = base64.b64decode(str(args.get("contentbase64") or ""))
    offset = int(args.get("offset") or 0) if facts.chunked_write else 0
    if offset == 0:
        target.write_bytes(content)
    else:  # one chunk after the others, as the script's FileStream at Offset writes it
        with open(target, "r+b") as stream:
            length = stream.seek(0, 2)
            if length != offset:
                raise GuestError(
                    f"guest-ops: '{path}' holds {length} bytes, not the {offset} this chunk"
                    " follows (a chunk was lost).",
                    target=path,
                    category="OperationStopped",
                    error_id="ScriptHalted",
                )
            stream.write(content)
    return custom(Path=path, Length=int64(target.stat().st_size))


@guest_operation("Counters")
def _counters(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    view = h.host.guest_view(vm.id)
    values = dict(view.counters()) if view is not None else {}
    if guest.os_name != "windows":
        # The DM integration service's counter class is Windows' (a Linux guest's hv_balloon
        # has none): a class that is not there reads "not available".
        values.pop(MAXIMUM_MEMORY, None)

    def read(name: str) -> Any:
        # A counter the guest lacks (no DM integration service) is "not available": $null.
        return int64(int(values[name])) if name in values else None

    return custom(
        TotalPhysicalMemory=read(TOTAL_PHYSICAL),
        AvailableMBytes=read(AVAILABLE_MBYTES),
        CommittedBytes=read(COMMITTED_BYTES),
        MaximumMemoryMBytes=read(MAXIMUM_MEMORY),
    )


@guest_operation("Limits")
def _limits(
    h: HyperVHandler,
    vm: VmRecord,
    guest: GuestBackend,
    args: Mapping[str, Any],
    facts: GuestOpsFacts,
) -> Any:
    return custom(MaxMemoryPerShellMB=int64(SHELL_QUOTA_MB))
