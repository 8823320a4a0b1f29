"""The face every guest backend shows the emulated host, its cmdlets and its SSH endpoints:
what a guest is (`GuestBackend`), what a program started in it is (`GuestProgram`), and what
both backends share (the guest's state, how a session's shell runs, a program's figures, the
guest OS's memory events, guest paths, files and the errors of a guest that cannot run programs).

The backends (named in backends.py): process/ runs a guest OS as local processes in their own
namespaces and memory cgroup; qemu/ runs a Linux guest as a real QEMU VM.
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Protocol

from harness.emulator.errors import GuestError
from harness.emulator.guestview import GuestProfile, GuestView
from harness.emulator.integration import LinuxIntegration

if TYPE_CHECKING:  # the QEMU backend's launch; a type only, so the face imports no backend
    from harness.emulator.qemu.agent import AgentLaunch


class GuestState(enum.Enum):
    OFF = "off"
    BOOTING = "booting"
    RUNNING = "running"
    FROZEN = "frozen"  # the VM is paused or saved: its programs are stopped where they are


@dataclass(frozen=True)
class GuestLaunch:
    """How a program runs inside one guest with pipes its caller holds: a local command."""

    command: Sequence[str]
    env: Mapping[str, str]
    cwd: Path


OOM_KILL = "oom-kill"
COMMIT_LIMIT_REACHED = "commit-limit"


@dataclass(frozen=True)
class GuestMemoryEvent:
    """The guest OS acted because memory ran out."""

    kind: str  # OOM_KILL (Linux) or COMMIT_LIMIT_REACHED (Windows)
    process: str  # program name of the process that paid for it
    pid: int  # pid of the app the process belonged to (the host's, or the guest kernel's)
    at: float  # time.time()

    @property
    def message(self) -> str:
        if self.kind == OOM_KILL:
            return f"the guest OOM-killed {self.process}"
        return f"commit limit reached: the guest refused {self.process} more memory"


@dataclass(frozen=True)
class ProgramStats:
    """A guest program and its descendants, measured together."""

    pid: int
    running: bool
    exit_code: int | None
    working_set_bytes: int  # resident set
    private_bytes: int  # committed private memory (Windows "Private Bytes")
    processes: int  # how many processes were measured


class GuestProgram(Protocol):
    """A program started in a guest: its pid (the host's or the guest kernel's), its exit
    code, its output files on the host, its figures; stopping it stops what it started."""

    @property
    def pid(self) -> int: ...
    @property
    def argv(self) -> tuple[str, ...]: ...
    @property
    def stdout_path(self) -> Path: ...
    @property
    def stderr_path(self) -> Path: ...
    @property
    def name(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def running(self) -> bool: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float) -> int: ...
    def output(self) -> str: ...
    def errors(self) -> str: ...
    def send(self, text: str) -> None: ...
    def close_stdin(self) -> None: ...
    def stats(self) -> ProgramStats: ...
    def signal(self, sig: int) -> None: ...
    def stop(self, timeout: float = 5.0, *, graceful: bool = True) -> int | None: ...
    def after_stop(self, callback: Callable[[], None]) -> None: ...


class GuestBackend(Protocol):
    """One VM's guest OS as the host drives it (boot, freeze, publish its memory view, power
    off) and as cmdlets and SSH sessions use it (files, programs, shells). Thread-safe."""

    @property
    def name(self) -> str: ...
    @property
    def profile(self) -> GuestProfile: ...
    @property
    def integration(self) -> LinuxIntegration | None: ...
    @property
    def state(self) -> GuestState: ...
    @property
    def os_name(self) -> str: ...
    @property
    def booted(self) -> bool: ...
    def boot(self) -> None: ...
    def ready(self) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def power_off(self) -> tuple[GuestProgram, ...]: ...
    def shutdown(self, *, graceful: bool = True, timeout: float = 5.0) -> None: ...

    # memory
    @property
    def synthetic_mb(self) -> int: ...
    @synthetic_mb.setter
    def synthetic_mb(self, value: int) -> None: ...
    def committed_mb(self) -> int: ...
    @property
    def view(self) -> GuestView | None: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...
    def memory_events(self) -> tuple[GuestMemoryEvent, ...]: ...
    def publish(self, view: GuestView) -> None: ...

    # files
    @property
    def directory(self) -> Path: ...
    def host_path(self, guest_path: str) -> Path: ...
    def copy_in(self, source: str | os.PathLike[str], destination: str) -> Path: ...
    def set_integration(self, integration: LinuxIntegration) -> None: ...

    # programs
    def processes(self) -> tuple[GuestProgram, ...]: ...
    def pids(self) -> list[int]: ...
    def launch(self, argv: Sequence[str]) -> GuestLaunch | AgentLaunch: ...
    def start_process(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = False,
        merge_output: bool = False,
    ) -> GuestProgram: ...


# -- guest paths and files ------------------------------------------------------------------
def path_parts(guest_path: str, writable: str = "/") -> list[str]:
    """The parts of a guest path below the guest's directory on the host: a Windows path's
    drive is its first part ('C:\\app\\x' → C/app/x), a Linux path is taken below `writable`
    (a QEMU guest's scratch directory; absolute Linux paths elsewhere are its read-only
    shares), a relative path at the root. A path that leaves the guest's files is refused."""
    text = str(guest_path)
    if "\\" in text or re.match(r"^[A-Za-z]:", text):
        win = PureWindowsPath(text)
        parts = list(win.parts[1:] if win.anchor else win.parts)
        if win.drive:
            parts.insert(0, win.drive.rstrip(":"))
    else:
        pure = PurePosixPath(text)
        if pure.is_absolute():
            try:
                pure = pure.relative_to(writable)
            except ValueError:
                raise GuestError(
                    f"The path '{guest_path}' is read-only in this guest: only"
                    f" {writable} and relative paths are writable.",
                    target=text, category="PermissionDenied", error_id="ReadOnlyPath",
                ) from None  # fmt: skip
        parts = list(pure.parts)
    if ".." in parts:
        raise GuestError(
            f"The path '{guest_path}' leaves the guest's file system.",
            target=text, category="InvalidArgument", error_id="InvalidParameter",
        )  # fmt: skip
    return parts


def read_from(path: Path, offset: int, codec: str = "utf-8") -> tuple[str, int]:
    """The text of a guest's file from byte `offset` on, in `codec`, and the offset to read
    from next; a file not there yet reads as nothing."""
    with contextlib.suppress(OSError), open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read()
        # A character cut by the end of what is written so far waits for the next read.
        decoder = codecs.getincrementaldecoder(codec)("replace")
        text = decoder.decode(data)
        return text, offset + len(data) - len(decoder.getstate()[0])
    return "", offset


def copy_in(
    host_path: Callable[[str], Path], source: str | os.PathLike[str], destination: str
) -> Path:
    """Copy a host file into a guest whose paths `host_path` places (like Copy-VMFile
    -CreateFullPath, §1.7): a destination ending in a separator, or naming a directory, gets
    the file under its own name."""
    src = Path(source)
    if not src.is_file():
        raise GuestError(
            f"The source file '{src}' does not exist.",
            target=str(src), category="ObjectNotFound", error_id="ObjectNotFound",
        )  # fmt: skip
    dest = host_path(destination)
    if destination.endswith(("/", "\\")) or dest.is_dir():
        dest = dest / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return dest


# -- a guest that cannot run a program ------------------------------------------------------
def no_program() -> GuestError:
    return GuestError("No program given.", category="InvalidArgument", error_id="InvalidParameter")


def not_running(name: str) -> GuestError:
    """What an SSH session to a guest that is not running is told."""
    return GuestError(f"The virtual machine '{name}' is not running.", target=name)


def cannot_run(name: str, state: GuestState) -> GuestError:
    """Starting a program in a guest that is not running."""
    return GuestError(
        f"The virtual machine '{name}' is not running (guest is {state.value}); it cannot"
        " run programs.",
        target=name,
        category="InvalidOperation",
        error_id="InvalidState",
    )


def not_found(program: str) -> GuestError:
    """An unknown program fails like one (not as exit code 127)."""
    return GuestError(
        f"The term '{program}' is not recognized as the name of a cmdlet, function, script"
        " file, or operable program.",
        target=program,
        category="ObjectNotFound",
        error_id="CommandNotFoundException",
    )
