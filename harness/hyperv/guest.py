"""Guest channels: PowerShell Direct through the host session, or WinRM straight to the guest.

Both run the same `guest-ops` script in one persistent guest runspace, which keeps the
processes it starts: a process is addressed by the key it was started with, never by its PID
(real-host facts, "Exit codes of started processes"). User values (commands, arguments, paths,
environment) travel as parameters; guest paths go as absolute paths under GUEST_ROOT. Guest
credentials come from DMH_GUEST_USERNAME / DMH_GUEST_PASSWORD (or keyring: service
"dm-harness", user "<user>@guest"). Linux guests are reached over SSH (harness.hyperv.ssh),
whose channel brings its own path rules (`guest_path`, `guest_root`).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any, Protocol

from harness.config import HostTarget, Secret
from harness.errors import ConfigError, SettingError
from harness.hyperv.host import HyperVHost, prop, text
from harness.hyperv.session import HostSession, load_script
from harness.timeline import GuestSample
from harness.units import MB

# Where relative guest paths go: one known absolute directory. PowerShell's location (used by
# cmdlets) and the process's current directory (used by .NET, system32 in a remote session)
# differ, so the guest script takes absolute paths only (real-host facts, "Two current
# directories"). Programs start here unless told otherwise, so relative arguments such as
# "dmh-apps/app.py" name files written with relative paths.
GUEST_ROOT = "C:\\ProgramData\\dm-harness"
# WinRM's default per-shell memory quota (real-host facts, "WinRM quota").
DEFAULT_SHELL_QUOTA_MB = 1024
# What a stock guest's WinRM listener is (Enable-PSRemoting): HTTP on 5985 with negotiate,
# whose message encryption still protects what goes over HTTP (real-host facts, "WinRM in a
# stock guest").
WINRM_PORT = 5985
WINRM_AUTH = "negotiate"
# File chunks sent to the guest: a PSRP endpoint refuses any received object over 10 MB
# (MaximumReceivedObjectSizeMB), at the host and again at a PowerShell Direct guest; 4 MiB
# become about 5.6 MB of base64 beside the guest-ops text (real-host facts).
WRITE_CHUNK = 4 * 1024 * 1024


def guest_path(path: str) -> str:
    """`path` as the absolute guest path guest-ops takes: absolute paths (a drive and a root,
    or UNC) as they are, relative ones under GUEST_ROOT."""
    text_path = str(path)
    if not text_path:
        raise SettingError("guest path", path, "must not be empty")
    pure = PureWindowsPath(text_path)
    if (pure.drive and pure.root) or text_path.startswith("\\\\"):
        return text_path
    if pure.drive or pure.root:
        raise SettingError(
            "guest path",
            path,
            "must be absolute with a drive (C:\\...) or relative, not drive- or root-relative",
        )
    return str(PureWindowsPath(GUEST_ROOT) / pure)


@dataclass(frozen=True)
class GuestCredentials:
    username: str
    password: Secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GuestCredentials:
        env = os.environ if env is None else env
        user = env.get("DMH_GUEST_USERNAME", "")
        if not user:
            raise ConfigError("set DMH_GUEST_USERNAME and DMH_GUEST_PASSWORD for the guest")
        password = env.get("DMH_GUEST_PASSWORD", "")
        if not password and importlib.util.find_spec("keyring") is not None:
            import keyring  # like the host's: service "dm-harness", user "<user>@guest"

            password = keyring.get_password("dm-harness", f"{user}@guest") or ""
        return cls(user, Secret(password))


class GuestChannel(Protocol):
    """Runs one guest-ops operation in the guest and returns its single result."""

    label: str

    def run(self, operation: str, arguments: Mapping[str, Any]) -> Any: ...


class DirectChannel:
    """PowerShell Direct (§1.6): a persistent PSSession per VM kept in the host runspace."""

    def __init__(self, session: HostSession, vm_name: str, credentials: GuestCredentials) -> None:
        self.session = session
        self.vm_name = vm_name
        self.credentials = credentials
        self.label = f"{session.target.label} VM {vm_name} (PowerShell Direct)"

    def session_parameters(self) -> dict[str, Any]:
        """What every script that reaches the guest this way takes (vm-invoke, sample-vm):
        the VM, the guest-ops script and the guest's credentials. Holds the password in clear,
        so it goes to the host as parameters and nowhere else."""
        return {
            "VMName": self.vm_name,
            "GuestScript": load_script("guest-ops"),
            "GuestUser": self.credentials.username,
            "GuestPassword": self.credentials.password.reveal(),
        }

    def run(self, operation: str, arguments: Mapping[str, Any]) -> Any:
        return _single(
            self.session.script(
                "vm-invoke",
                **self.session_parameters(),
                Operation=operation,
                Arguments=dict(arguments),
            )
        )


class WinRMChannel:
    """WinRM straight to the guest, for guests without PowerShell Direct (pre-2016). Its
    shell's memory quota (MaxMemoryPerShellMB) counts every process it starts: `quota_mb`."""

    def __init__(self, session: HostSession) -> None:
        self.session = session
        self.label = f"{session.target.label} (WinRM)"
        self._quota: int | None = None

    def quota_mb(self) -> int:
        """The guest's WinRM shell quota in MB (read once)."""
        if self._quota is None:
            raw = self.run("Limits", {})
            value = prop(raw, "MaxMemoryPerShellMB")
            self._quota = DEFAULT_SHELL_QUOTA_MB if value is None else int(value)
        return self._quota

    def run(self, operation: str, arguments: Mapping[str, Any]) -> Any:
        return _single(
            self.session.script("guest-ops", Operation=operation, Arguments=dict(arguments))
        )


def guest_target(
    host: HyperVHost,
    vm_name: str,
    credentials: GuestCredentials,
    *,
    cert_validation: bool | str | None = None,
    port: int | None = None,
    ssl: bool | None = None,
    auth: str | None = None,
) -> HostTarget:
    """The WinRM endpoint of a guest: its address from the host's view of its network adapter
    (the `vm-address` script; the VM must be on a virtual switch), and the listener's port,
    TLS and authentication given here, by default what a stock guest has (Enable-PSRemoting:
    HTTP 5985 with negotiate). The host cannot know those; an endpoint that must differ (the
    emulator's guest listeners share one loopback address, so each has its own port, and
    take basic auth) answers Port and Auth too, which win over the defaults, not over what is
    given here. With `ssl`, TLS is checked against the host's CA unless `cert_validation`
    says otherwise (a guest's certificate may come from another CA)."""
    raw = host.session.script("vm-address", VMName=vm_name)[0]
    return HostTarget(
        hostname=str(prop(raw, "Address")),
        port=port if port is not None else int(prop(raw, "Port", WINRM_PORT)),
        username=credentials.username,
        password=credentials.password,
        auth=auth if auth is not None else str(prop(raw, "Auth", WINRM_AUTH)),
        ssl=bool(ssl),
        path=str(prop(raw, "Path", "wsman")),
        cert_validation=(
            host.session.target.cert_validation if cert_validation is None else cert_validation
        ),
    )


def _single(results: Sequence[Any]) -> Any:
    return results[0] if results else None


@dataclass(frozen=True)
class ProcessStats:
    running: bool
    working_set: int
    private_bytes: int


@dataclass(frozen=True)
class ProcessResult:
    running: bool
    exit_code: int | None
    output: str
    next_offset: int
    offset: int = 0  # the byte offset `output` starts at
    # The Python codec of the code page the guest decoded `output` with (offsets are bytes
    # of it): a Windows guest's ANSI code page unless the start said otherwise.
    codec: str = "utf-8"
    # Once the process has exited: where its error output starts in the one stream (stdout,
    # then stderr), and what the guest OS logged about memory running out for it (a Linux
    # OOM kill, a Windows resource-exhaustion event), "" when nothing.
    errors_from: int | None = None
    memory_event: str = ""


class GuestProcess:
    """A process started in the guest: stats, output, exit code, stop. `key` names it in the
    guest session's state; `pid` is for people (Windows reuses it once the process exits)."""

    def __init__(
        self, guest: Guest, key: str, pid: int, output_path: str, codec: str = "utf-8"
    ) -> None:
        self.guest = guest
        self.codec = codec
        self.key = key
        self.pid = pid
        self.output_path = output_path
        self._offset = 0
        self._output: list[str] = []
        self._errors_from: int | None = None
        self.memory_event = ""
        self._lock = threading.Lock()

    def stats(self) -> ProcessStats:
        return process_stats(self.guest.channel.run("ProcessStats", {"Key": self.key}))

    def poll(self) -> ProcessResult:
        """New output since the last poll (kept in `output`), running state and exit code."""
        result = self.fetch()
        self.feed(result)
        return result

    def fetch(self) -> ProcessResult:
        """Output from the current offset, running state and exit code, not yet accounted."""
        offset = self.offset
        raw = self.guest.channel.run("ProcessResult", {"Key": self.key, "Offset": offset})
        return process_result(raw, offset)

    def feed(self, result: ProcessResult) -> str:
        """Account output fetched here or elsewhere (the sampler's one-trip tick); the text
        that was new. Readers may overlap (a sampler and a caller polling), so only bytes past
        the current offset count."""
        with self._lock:
            if result.errors_from is not None:
                self._errors_from = result.errors_from
            if result.memory_event:
                self.memory_event = result.memory_event
            if result.next_offset <= self._offset or not result.output:
                return ""
            new = result.output
            if result.offset < self._offset:
                seen = self._offset - result.offset
                new = result.output.encode(self.codec)[seen:].decode(self.codec, "replace")
            self._output.append(new)
            self._offset = result.next_offset
            return new

    @property
    def offset(self) -> int:
        with self._lock:
            return self._offset

    @property
    def output(self) -> str:
        """What it wrote: stdout, and once it has exited, its stderr after it."""
        with self._lock:
            return "".join(self._output)

    @property
    def stderr(self) -> str:
        """Its error output, known once it has exited and been polled ("" before)."""
        with self._lock:
            if self._errors_from is None:
                return ""
            data = "".join(self._output).encode(self.codec, "replace")
            return data[self._errors_from :].decode(self.codec, "replace")

    def stop(self) -> int | None:
        """Stop the process and every process it started; its exit code. A process that has
        already exited is no error."""
        raw = self.guest.channel.run("StopProcess", {"Key": self.key})
        code = prop(raw, "ExitCode")
        return None if code is None else int(code)


class Guest:
    """Operations inside one VM's guest over a channel."""

    def __init__(self, channel: GuestChannel) -> None:
        self.channel = channel
        # A channel to a Linux guest has POSIX paths and its own root (the SSH user's home).
        self.path: Any = getattr(channel, "guest_path", guest_path)
        self.root: str = getattr(channel, "guest_root", GUEST_ROOT)

    def start_process(
        self,
        command: str,
        arguments: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        working_directory: str | None = None,
        *,
        memory_mb: int | None = None,
        code_page: int | None = None,
    ) -> GuestProcess:
        """Start `command` in `working_directory` (default GUEST_ROOT; relative to it when
        relative). `memory_mb`, when the caller knows what the process will hold, is checked
        against the WinRM shell quota on that channel, which would kill the process.
        `code_page`: the Windows code page its output is written in (default the guest's
        ANSI code page, which most programs write redirected output in)."""
        if memory_mb is not None and not self.fits(memory_mb):
            assert isinstance(self.channel, WinRMChannel)
            raise SettingError(
                "guest load",
                f"{memory_mb}MB",
                f"must stay below the guest's WinRM shell quota MaxMemoryPerShellMB"
                f" ({self.channel.quota_mb()} MB), which counts every process the shell starts:"
                " WinRM would kill it. Raise it in the guest (Set-Item"
                " WSMan:\\localhost\\Shell\\MaxMemoryPerShellMB <MB>, and the"
                " Microsoft.PowerShell plugin's quota) or use PowerShell Direct",
            )
        args: dict[str, Any] = {
            "FilePath": command,
            "ArgumentList": list(arguments),
            "Environment": dict(environment or {}),
            "WorkingDirectory": self.path(working_directory or self.root),
        }
        if code_page is not None:
            args["CodePage"] = code_page
        raw = self.channel.run("StartProcess", args)
        return GuestProcess(
            self,
            text(prop(raw, "Key")),
            int(prop(raw, "ProcessId")),
            text(prop(raw, "OutputPath")),
            codec_of(prop(raw, "CodePage")),
        )

    def fits(self, memory_mb: int) -> bool:
        """Whether a process holding `memory_mb` may run on this channel: a WinRM shell's quota
        (MaxMemoryPerShellMB) kills one that reaches it."""
        return not isinstance(self.channel, WinRMChannel) or memory_mb < self.channel.quota_mb()

    def write_file(self, path: str, content: bytes) -> None:
        """Write `content` to `path` in the guest (relative: under GUEST_ROOT), in chunks that
        stay under the 10 MB a PSRP endpoint takes per received object."""
        target = self.path(path)
        for offset in range(0, max(len(content), 1), WRITE_CHUNK):
            chunk = base64.b64encode(content[offset : offset + WRITE_CHUNK]).decode("ascii")
            self.channel.run(
                "WriteFile", {"Path": target, "ContentBase64": chunk, "Offset": offset}
            )

    def copy_in(self, local_path: str, guest_path: str) -> None:
        with open(local_path, "rb") as source:
            self.write_file(guest_path, source.read())

    def counters(self) -> GuestSample:
        return guest_sample(self.channel.run("Counters", {}))


def _count(raw: Any, name: str) -> int:
    """A counter guest-ops read, 0 when it was not available (a class or instance missing)."""
    value = prop(raw, name)
    return 0 if value is None else int(value)


def guest_sample(raw: Any) -> GuestSample:
    return GuestSample(
        total_mb=_count(raw, "TotalPhysicalMemory") // MB,
        available_mb=_count(raw, "AvailableMBytes"),
        committed_mb=_count(raw, "CommittedBytes") // MB,
        max_memory_mb=_count(raw, "MaximumMemoryMBytes"),  # 0: no DM integration service
    )


def process_stats(raw: Any) -> ProcessStats:
    return ProcessStats(
        running=bool(prop(raw, "Running", False)),
        working_set=int(prop(raw, "WorkingSet", 0)),
        private_bytes=int(prop(raw, "PrivateBytes", 0)),
    )


def codec_of(code_page: Any) -> str:
    """The Python codec of a Windows code page a guest reported (UTF-8 when none: a guest
    that says nothing, or a Linux guest)."""
    if code_page is None or int(code_page) == 65001:
        return "utf-8"
    return f"cp{int(code_page)}"


def process_result(raw: Any, offset: int = 0) -> ProcessResult:
    code = prop(raw, "ExitCode")
    errors_from = prop(raw, "ErrorsFrom")
    return ProcessResult(
        running=bool(prop(raw, "Running", False)),
        exit_code=None if code is None else int(code),
        output=text(prop(raw, "Output")),
        next_offset=int(prop(raw, "NextOffset", 0)),
        offset=offset,
        errors_from=None if errors_from is None else int(errors_from),
        codec=codec_of(prop(raw, "CodePage")),
        memory_event=text(prop(raw, "MemoryEvent")) if prop(raw, "MemoryEvent") else "",
    )
