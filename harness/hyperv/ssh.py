"""The SSH guest channel, for Linux guests (PowerShell Direct needs a Windows guest, reference
real-host facts; Linux guests on Hyper-V are reached over SSH, as LISA does).

One persistent asyncssh connection per guest, on one event loop thread per process; host keys
are always verified (a known_hosts file, or the keys published for the run) unless the user
explicitly accepts any. The guest operations are POSIX sh scripts (scripts/linux/*.sh, sh
and coreutils, no Python in the guest) run by the guest's own shell, one round trip each.
User values (paths, program, arguments, environment) travel as shell-quoted arguments of the
script (`shlex.quote`), never spliced into its text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import secrets
import shlex
import signal
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from harness.config import Secret
from harness.deadline import Deadline, wait_until
from harness.errors import (
    AuthenticationError,
    CommandError,
    ConfigError,
    HostUnreachableError,
    ObjectNotFoundError,
    SettingError,
)
from harness.hyperv.host import HyperVHost, prop
from harness.hyperv.linux_ops import OPERATIONS, LinuxSample
from harness.sshlib import asyncssh
from harness.wildcards import literal

log = logging.getLogger(__name__)
T = TypeVar("T")

_INCLUDE_LINE = re.compile(r"^#\s*dmh-include:\s*([a-z0-9-]+)\s*$", re.MULTILINE)
_SEPARATOR = b"--\n"


def load_linux_script(name: str) -> str:
    """A POSIX sh script under scripts/linux/, each `# dmh-include: <part>` line replaced by
    scripts/linux/include/<part>.sh (shell written once, one self-contained command sent)."""
    folder = resources.files("harness.hyperv") / "scripts" / "linux"
    return _INCLUDE_LINE.sub(
        lambda line: (folder / "include" / f"{line.group(1)}.sh").read_text("utf-8").rstrip(),
        (folder / f"{name}.sh").read_text("utf-8"),
    )


def script_command(name: str, *arguments: str) -> str:
    """The command line that runs a named script with `arguments` as its positional
    parameters: `sh -c '<script>' dmh-<name> 'arg'...`, every word quoted for a POSIX shell
    (the login shell sshd hands it to must be one: bash, dash, ash, zsh)."""
    return shlex.join(["sh", "-c", load_linux_script(name), f"dmh-{name}", *arguments])


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one guest's sshd. Host keys: `host_keys` (OpenSSH public key
    lines the run trusts, e.g. published by the embedded emulator), else the `known_hosts`
    file (default ~/.ssh/known_hosts); `accept_any_host_key` only when the user says so."""

    hostname: str
    port: int
    username: str
    password: Secret = field(repr=False, default_factory=lambda: Secret(""))
    key_file: str | None = None
    known_hosts: str | None = None
    host_keys: tuple[str, ...] = ()
    accept_any_host_key: bool = False
    connect_timeout: float = 15.0
    command_timeout: float = 120.0

    @property
    def label(self) -> str:
        """The stable, secret-free name used in logs, errors and reports."""
        return f"ssh://{self.hostname}:{self.port}"

    def known_hosts_argument(self) -> Any:
        """asyncssh's `known_hosts`: trusted keys, never None unless asked for."""
        if self.accept_any_host_key:
            log.warning("%s: host key NOT verified (accepting any, as asked)", self.label)
            return None
        if self.host_keys:
            pattern = self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"
            return asyncssh.import_known_hosts(
                "".join(f"{pattern} {key.strip()}\n" for key in self.host_keys)
            )
        path = self.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        if not os.path.isfile(path):
            raise ConfigError(
                f"no known_hosts file at {path} to verify {self.label}'s host key: give one "
                "(--dm-guest-known-hosts) or, only if you accept the risk, "
                "--dm-guest-accept-any-host-key"
            )
        return path


@dataclass(frozen=True)
class ShellResult:
    """What one command returned: its exit status and output, unchanged bytes."""

    exit_status: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Report:
    """A script's `key=value` lines and the raw bytes after its `--` line."""

    values: Mapping[str, str]
    data: bytes = b""

    def int(self, key: str, default: int = 0) -> int:
        value = self.values.get(key, "")
        return int(value) if value.lstrip("-").isdigit() else default


def parse_report(stdout: bytes) -> Report:
    head, _, data = (
        (b"", b"", stdout[len(_SEPARATOR) :])
        if stdout.startswith(_SEPARATOR)
        else stdout.partition(b"\n" + _SEPARATOR)
    )
    values: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return Report(values, data)


class _EventLoop:
    """One asyncio loop in a daemon thread, shared by every SSH connection of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="dmh-ssh-loop", daemon=True).start()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())


_LOOP = _EventLoop()


class SSHChannel:
    """A guest reached over SSH: runs the Linux scripts, one command per operation."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self.label = f"{target.label} (SSH)"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connecting: asyncio.Lock | None = None
        # A shell kept open for read-only commands (each sample): no channel to open and no
        # shell to start per command, so a tick costs one round trip and the script's time.
        self._shell: asyncssh.SSHClientProcess[bytes] | None = None
        self._shell_lock: asyncio.Lock | None = None

    # -- connection ---------------------------------------------------------------------
    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        target = self.target
        options: dict[str, Any] = {
            "username": target.username,
            "known_hosts": target.known_hosts_argument(),
            "connect_timeout": target.connect_timeout,
            "keepalive_interval": 15,
            "config": None,  # never the user's ~/.ssh/config: what is used is what we say
            "agent_path": None,
        }
        if target.key_file:
            options["client_keys"] = [target.key_file]
        else:
            options["client_keys"] = None
        if target.password:
            options["password"] = target.password.reveal()
        try:
            return await asyncssh.connect(target.hostname, target.port, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostUnreachableError(
                f"the guest's host key is not trusted ({exc.reason}); refusing to connect",
                host=target.label,
                retryable=False,
            ) from None
        except asyncssh.PermissionDenied:
            raise AuthenticationError(
                f"the guest refused user {target.username!r} (password or key)",
                host=target.label,
            ) from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise HostUnreachableError(
                f"cannot connect: {type(exc).__name__}: {exc}", host=target.label
            ) from None

    async def _in_shell(self, command: str) -> ShellResult:
        """Run a command (its stdin /dev/null) in the kept shell; its output ends at a marker
        made for this command, followed by its exit status."""
        if self._shell_lock is None:
            self._shell_lock = asyncio.Lock()
        async with self._shell_lock:
            shell = self._shell
            if shell is None or shell.is_closing():
                conn = await self._connection()
                shell = await conn.create_process(encoding=None)
                # Whatever a login shell prints first (profile scripts) is not a command's.
                hello = secrets.token_hex(16).encode()
                shell.stdin.write(b"printf '%s\\n' " + hello + b"\n")
                await shell.stdout.readuntil(hello + b"\n")
                self._shell = shell
            marker = secrets.token_hex(16).encode()
            shell.stdin.write(
                command.encode() + b" </dev/null\n"
                b"printf '\\n%s %s\\n' " + marker + b" $?; printf '%s\\n' " + marker + b" >&2\n"
            )
            stdout = await shell.stdout.readuntil(b"\n" + marker + b" ")
            status = await shell.stdout.readuntil(b"\n")
            stderr = await shell.stderr.readuntil(marker + b"\n")
            return ShellResult(
                int(status.strip() or b"255"),
                stdout[: -len(marker) - 2],
                stderr[: -len(marker) - 1],
            )

    def _drop_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()

    async def _run(self, command: str, stdin: bytes, label: str, resend: bool) -> ShellResult:
        if resend and not stdin:
            return await self._run_in_shell(command, label)
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                done = await asyncio.wait_for(
                    conn.run(command, input=stdin or None, encoding=None, check=False),
                    self.target.command_timeout,
                )
            except asyncssh.ChannelOpenError as exc:
                # Refused before anything ran: always safe to send again on a new connection.
                self._drop(conn)
                if attempt == 2:
                    raise HostUnreachableError(
                        str(exc), host=self.target.label, command=label
                    ) from None
                continue
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
                self._drop(conn)
                if attempt == 2 or not resend:
                    raise HostUnreachableError(
                        f"{type(exc).__name__}: {exc}", host=self.target.label, command=label
                    ) from None
                continue
            status = done.exit_status
            if status is None or status < 0:  # killed by a signal: sh's convention
                name = done.exit_signal[0] if done.exit_signal else ""
                status = 128 + int(getattr(signal, f"SIG{name}", 0))
            return ShellResult(status, _bytes(done.stdout), _bytes(done.stderr))
        raise AssertionError("unreachable")

    async def _run_in_shell(self, command: str, label: str) -> ShellResult:
        for attempt in (1, 2):
            try:
                return await asyncio.wait_for(self._in_shell(command), self.target.command_timeout)
            except (
                OSError,
                asyncssh.Error,
                asyncio.TimeoutError,
                asyncio.IncompleteReadError,
            ) as exc:
                self._drop_shell()  # a read-only command: safe to send again on a new shell
                if self._conn is not None and attempt == 1:
                    self._drop(self._conn)
                if attempt == 2:
                    raise HostUnreachableError(
                        f"{type(exc).__name__}: {exc}", host=self.target.label, command=label
                    ) from None
        raise AssertionError("unreachable")

    def _drop(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn:
            self._conn = None
        conn.abort()

    def execute_async(
        self, command: str, stdin: bytes = b"", *, label: str = "command", resend: bool = False
    ) -> concurrent.futures.Future[ShellResult]:
        """Run a command line in the guest without waiting (the sampler overlaps it with the
        host's round trip). `resend`: the command only reads, so a broken connection may be
        retried once."""
        return _LOOP.submit(self._run(command, stdin, label, resend))

    def execute(
        self, command: str, stdin: bytes = b"", *, label: str = "command", resend: bool = False
    ) -> ShellResult:
        future = self.execute_async(command, stdin, label=label, resend=resend)
        try:
            return future.result(self.target.command_timeout + self.target.connect_timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise HostUnreachableError(
                "no answer in time", host=self.target.label, command=label
            ) from None

    def script(
        self, name: str, *arguments: str, stdin: bytes = b"", resend: bool = False
    ) -> Report:
        """Run a named Linux script; a non-zero exit is a CommandError with its `error=`."""
        done = self.execute(
            script_command(name, *arguments), stdin, label=f"script {name}", resend=resend
        )
        return self.checked(name, done)

    def checked(self, name: str, done: ShellResult) -> Report:
        report = parse_report(done.stdout)
        if done.exit_status != 0:
            message = report.values.get("error") or done.stderr.decode("utf-8", "replace")
            kind = ObjectNotFoundError if done.exit_status == 3 else CommandError
            raise kind(
                message.strip() or f"exit status {done.exit_status}",
                host=self.target.label,
                command=f"script {name}",
            )
        return report

    def close(self) -> None:
        """Close the kept shell and the connection (on the loop that owns them)."""

        async def shut() -> None:
            self._drop_shell()
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        with contextlib.suppress(Exception):
            _LOOP.submit(shut()).result(10)

    # -- the guest operations (the GuestChannel protocol) ---------------------------------
    def run(self, operation: str, arguments: Mapping[str, Any]) -> Any:
        handler = OPERATIONS.get(operation)
        if handler is None:
            raise SettingError("operation", operation, f"use one of {', '.join(OPERATIONS)}")
        return handler(self, {str(k): v for k, v in arguments.items()})

    def sample_command(self, key: str = "", offset: int = 0) -> str:
        """The `sample` script's command: the guest's memory, and a started app's (by key)."""
        return script_command("sample", key, str(offset))

    def sample(self, key: str = "", offset: int = 0) -> LinuxSample:
        done = self.execute(self.sample_command(key, offset), label="script sample", resend=True)
        return LinuxSample.parse(self.checked("sample", done), offset)

    # -- paths: POSIX, relative ones from the login directory (the user's home) ------------
    guest_root = "."

    @staticmethod
    def guest_path(path: str) -> str:
        text = str(path)
        if not text:
            raise SettingError("guest path", path, "must not be empty")
        if "\\" in text or re.match(r"^[A-Za-z]:", text):
            raise SettingError("guest path", path, "a Linux guest's paths use /, not a drive")
        return text


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()


def guest_address(host: HyperVHost, vm_name: str, deadline: float = 120.0) -> str:
    """The guest's address as the host sees it: its network adapters' IPAddresses, which the
    guest's KVP daemon reports (reference §1.8), waited for within `deadline` seconds. IPv4
    first. The error says what is missing: a switch, or the KVP daemon."""
    seen: list[list[Any]] = []

    def found() -> str | None:
        seen.append(host.session.cmdlet("Get-VMNetworkAdapter", VMName=literal(vm_name)))
        addresses = [str(a) for adapter in seen[-1] for a in (prop(adapter, "IPAddresses") or [])]
        ipv4 = [a for a in addresses if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a)]
        return (ipv4 or addresses)[0] if addresses else None

    def missing() -> str:
        adapters = seen[-1] if seen else []
        if not adapters:
            return "the VM has no network adapter"
        if not any(prop(a, "SwitchName") for a in adapters):
            return "its network adapter is not connected to a switch (--dm-switch)"
        return (
            "the guest reports no address: its KVP daemon (hv_kvp_daemon, package "
            "hyperv-daemons / linux-cloud-tools) must run, or give --dm-guest-address"
        )

    return wait_until(
        found,
        Deadline(deadline, clock=host.clock),
        what=f"an IP address of VM {vm_name!r} on {host.label}",
        max_interval=1.0,
        detail=missing,
    )
