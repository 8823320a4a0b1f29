"""Guest channels: PowerShell Direct through the host session, or WinRM straight to the guest.

Both run the same `guest-ops` script; user values (commands, arguments, paths, environment)
travel as parameters. Guest credentials come from DMH_GUEST_USERNAME / DMH_GUEST_PASSWORD.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.config import HostTarget, Secret
from harness.errors import ConfigError
from harness.hyperv.host import HyperVHost, prop, text
from harness.hyperv.session import HostSession, load_script
from harness.timeline import GuestSample
from harness.units import MB


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
        return cls(user, Secret(env.get("DMH_GUEST_PASSWORD", "")))


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
    """WinRM straight to the guest, for guests without PowerShell Direct (pre-2016)."""

    def __init__(self, session: HostSession) -> None:
        self.session = session
        self.label = f"{session.target.label} (WinRM)"

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
) -> HostTarget:
    """The WinRM endpoint of a guest, from the host's view of its network adapter (the
    `vm-address` script). TLS is checked against the host's CA unless `cert_validation` says
    otherwise (a guest's certificate may come from another CA)."""
    raw = host.session.script("vm-address", VMName=vm_name)[0]
    return HostTarget(
        hostname=str(prop(raw, "Address")),
        port=int(prop(raw, "Port", 5986)),
        username=credentials.username,
        password=credentials.password,
        auth=str(prop(raw, "Auth", "negotiate")),
        ssl=bool(prop(raw, "Ssl", True)),
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


class GuestProcess:
    """A process started in the guest: stats, output, exit code, stop."""

    def __init__(self, guest: Guest, pid: int, output_path: str) -> None:
        self.guest = guest
        self.pid = pid
        self.output_path = output_path
        self._offset = 0
        self._output: list[str] = []
        self._lock = threading.Lock()

    def stats(self) -> ProcessStats:
        return process_stats(self.guest.channel.run("ProcessStats", {"ProcessId": self.pid}))

    def poll(self) -> ProcessResult:
        """New output since the last poll (kept in `output`), running state and exit code."""
        result = self.fetch()
        self.feed(result)
        return result

    def fetch(self) -> ProcessResult:
        """Output from the current offset, running state and exit code, not yet accounted."""
        offset = self.offset
        raw = self.guest.channel.run(
            "ProcessResult",
            {"ProcessId": self.pid, "OutputPath": self.output_path, "Offset": offset},
        )
        return process_result(raw, offset)

    def feed(self, result: ProcessResult) -> str:
        """Account output fetched here or elsewhere (the sampler's one-trip tick); the text
        that was new. Readers may overlap (a sampler and a caller polling), so only bytes past
        the current offset count."""
        with self._lock:
            if result.next_offset <= self._offset or not result.output:
                return ""
            new = result.output
            if result.offset < self._offset:
                seen = self._offset - result.offset
                new = result.output.encode("utf-8")[seen:].decode("utf-8", "replace")
            self._output.append(new)
            self._offset = result.next_offset
            return new

    @property
    def offset(self) -> int:
        with self._lock:
            return self._offset

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._output)

    def stop(self) -> None:
        self.guest.channel.run("StopProcess", {"ProcessId": self.pid})


class Guest:
    """Operations inside one VM's guest over a channel."""

    def __init__(self, channel: GuestChannel) -> None:
        self.channel = channel

    def start_process(
        self,
        command: str,
        arguments: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        working_directory: str | None = None,
    ) -> GuestProcess:
        args: dict[str, Any] = {
            "FilePath": command,
            "ArgumentList": list(arguments),
            "Environment": dict(environment or {}),
        }
        if working_directory:
            args["WorkingDirectory"] = working_directory
        raw = self.channel.run("StartProcess", args)
        return GuestProcess(self, int(prop(raw, "ProcessId")), text(prop(raw, "OutputPath")))

    def write_file(self, path: str, content: bytes) -> None:
        encoded = base64.b64encode(content).decode("ascii")
        self.channel.run("WriteFile", {"Path": path, "ContentBase64": encoded})

    def copy_in(self, local_path: str, guest_path: str) -> None:
        with open(local_path, "rb") as source:
            self.write_file(guest_path, source.read())

    def counters(self) -> GuestSample:
        return guest_sample(self.channel.run("Counters", {}))


def guest_sample(raw: Any) -> GuestSample:
    return GuestSample(
        total_mb=int(prop(raw, "TotalPhysicalMemory", 0)) // MB,
        available_mb=int(prop(raw, "AvailableMBytes", 0)),
        committed_mb=int(prop(raw, "CommittedBytes", 0)) // MB,
        max_memory_mb=int(prop(raw, "MaximumMemoryMBytes", 0)),
    )


def process_stats(raw: Any) -> ProcessStats:
    return ProcessStats(
        running=bool(prop(raw, "Running", False)),
        working_set=int(prop(raw, "WorkingSet", 0)),
        private_bytes=int(prop(raw, "PrivateBytes", 0)),
    )


def process_result(raw: Any, offset: int = 0) -> ProcessResult:
    code = prop(raw, "ExitCode")
    return ProcessResult(
        running=bool(prop(raw, "Running", False)),
        exit_code=None if code is None else int(code),
        output=text(prop(raw, "Output")),
        next_offset=int(prop(raw, "NextOffset", 0)),
        offset=offset,
    )
