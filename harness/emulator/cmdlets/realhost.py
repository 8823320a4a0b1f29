"""Where a real host's PowerShell would fail running a harness script as received: the
emulator runs a Python handler for each script, not its PowerShell, so it reads the few
constructs a real host fails on from the script text and fails the same way
(reference/real-host-and-runtime-facts.md). A script that avoids them runs as designed.

Each detector takes the script text with comments removed, so a comment naming a bad
construct (to say why it is avoided) does not trigger it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.emulator.errors import EmulatorError, GuestError
from harness.settings import HostVersion

# PSSessionConfiguration MaximumReceivedObjectSizeMB, 10 MB by default, at the host's endpoint
# and again at a PowerShell Direct guest (real-host facts, "10 MB per received object";
# learn.microsoft.com, Register-PSSessionConfiguration -MaximumReceivedObjectSizeMB).
MAX_RECEIVED_OBJECT = 10 * 1024 * 1024
# The PowerShell each host version ships (Windows Management Framework in the box).
POWERSHELL = {
    HostVersion.V2008R2SP1: 2,
    HostVersion.V2012: 3,
    HostVersion.V2012R2: 4,
    HostVersion.V2016: 5,
    HostVersion.V2019: 5,
    HostVersion.V2022: 5,
}
# Commands and type accelerators PowerShell 3.0 added, which a 2.0 host does not know.
_PS3_ONLY = re.compile(r"Get-CimInstance|\[pscustomobject\]|\[ordered\]", re.IGNORECASE)
_PS_VERSION_GUARD = re.compile(r"\$PSVersionTable\.PSVersion\.Major\s+-lt\s+3", re.IGNORECASE)
_COMMENT = re.compile(r"(?m)#.*$")
# guest-ops: the first read of a Start-Process object's Handle, unguarded.
_HANDLE_READ = re.compile(r"(?m)^\s*\$null\s*=\s*\$\w+\.Handle\s*$")
# A reader that opens a redirect file with FileShare.Read (ReadAllBytes, OpenRead, ReadAllText).
_READ_SHARE_ONLY = re.compile(r"\[IO\.File\]::(ReadAllBytes|ReadAllText|OpenRead)\(", re.IGNORECASE)
_UTF8_DECODE = re.compile(r"\[Text\.Encoding\]::UTF8\.GetString", re.IGNORECASE)
_PERF_BY_NAME = re.compile(r"Get-DmhPerf\s+'[^']*HyperVDynamicMemoryVM'\s+\$vm\.Name\b")


def code(script: str) -> str:
    """`script` without its comments (a `#` inside a string is rare in the harness's scripts;
    a detector misled by one would fail a correct script, which a test would show)."""
    return _COMMENT.sub("", script)


@dataclass(frozen=True)
class GuestOpsFacts:
    """What a received guest-ops text does where a real guest differs from the design."""

    unguarded_handle: bool  # `$null = $p.Handle` after Start-Process: an instant exit throws
    share_read_only: bool  # reads redirect files with FileShare.Read: a child's handle blocks
    utf8_only: bool  # decodes output as UTF-8 whatever the program wrote
    chunked_write: bool  # WriteFile takes an Offset (the client sends files in chunks)

    @classmethod
    def designed(cls) -> GuestOpsFacts:
        return cls(False, False, False, True)


@functools.lru_cache(maxsize=8)
def guest_ops_facts(script: str) -> GuestOpsFacts:
    body = code(script)
    return GuestOpsFacts(
        unguarded_handle=_HANDLE_READ.search(body) is not None,
        share_read_only=_READ_SHARE_ONLY.search(body) is not None,
        utf8_only=_UTF8_DECODE.search(body) is not None,
        # WriteAllBytes writes the whole file from one parameter: no chunks.
        chunked_write="WriteAllBytes" not in body,
    )


def perf_by_plain_name(script: str) -> bool:
    """sample-vm matches the VM's perf instance by `$vm.Name`, which Windows escapes in
    instance names (real-host facts, "Perf-counter instance names are escaped")."""
    return _PERF_BY_NAME.search(code(script)) is not None


class CommandNotRecognizedError(EmulatorError):
    """PowerShell 2.0 meeting a 3.0 command: CommandNotFoundException."""

    category = "ObjectNotFound"
    error_id = "CommandNotFoundException"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script"
            " file, or operable program. Check the spelling of the name, or if a path was"
            " included, verify that the path is correct and try again.",
            target=name,
        )


def check_powershell(script: str, version: HostVersion) -> None:
    """On a PowerShell 2.0 host a script fails at its first 3.0-only command unless a
    `$PSVersionTable.PSVersion.Major -lt 3` guard comes before it."""
    if POWERSHELL[version] >= 3:
        return
    body = code(script)
    used = _PS3_ONLY.search(body)
    guard = _PS_VERSION_GUARD.search(body)
    if used is not None and (guard is None or guard.start() > used.start()):
        raise CommandNotRecognizedError(used.group(0))


class ReceivedObjectTooLargeError(EmulatorError):
    """PSRemotingDataStructureException: a received object over MaximumReceivedObjectSizeMB."""

    category = "InvalidOperation"
    error_id = "ReceivedObjectSizeExceededMaximumServer"

    def __init__(self, size: int, where: str) -> None:
        super().__init__(
            f"{where}: the current deserialized object size of the data received from the"
            " remote client exceeded allowed maximum object size. The current deserialized"
            f" object size is {size}. Allowed maximum object size is {MAX_RECEIVED_OBJECT}.",
        )


def object_size(value: Any) -> int:
    """Roughly the bytes `value` takes serialized (CLIXML, UTF-8): its strings' lengths plus
    a little per element. A lower bound of the real size, so a value refused here is refused
    by a real host too."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bytes):
        return len(value) * 4 // 3
    if isinstance(value, Mapping):
        return sum(object_size(k) + object_size(v) + 16 for k, v in value.items())
    if isinstance(value, Iterable):
        return sum(object_size(v) + 8 for v in value)
    return 16


def check_received(values: Iterable[Any], where: str) -> None:
    """Refuse what a PSRP endpoint refuses: any one received object over 10 MB."""
    for value in values:
        size = object_size(value)
        if size > MAX_RECEIVED_OBJECT:
            raise ReceivedObjectTooLargeError(size, where)


def process_exited_error(pid: int) -> GuestError:
    """.NET's answer to reading the Handle of a process that has exited (Process.GetProcessHandle)."""
    return GuestError(
        'Exception getting "Handle": "Process has exited, so the requested information is'
        f' not available." (process {pid})',
        target=str(pid),
        category="NotSpecified",
        error_id="GetValueInvocationException",
    )


def sharing_violation(path: str) -> GuestError:
    return GuestError(
        f'Exception calling "ReadAllBytes" with "1" argument(s): "The process cannot access the'
        f" file '{path}' because it is being used by another process.\"",
        target=path,
        category="NotSpecified",
        error_id="IOException",
    )
