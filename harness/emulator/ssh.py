"""SSH endpoints of the emulated Linux guests: one asyncssh server per guest on 127.0.0.1 whose
sessions run a real /bin/sh inside that guest (its namespaces, its memory cgroup, its
/proc/meminfo), as sshd runs a user's login shell: `sh -c COMMAND` for a command, `sh`
reading the channel for a shell. So the commands CI runs are the ones a real Linux VM runs.

The host key is made once per emulator run; the fixtures publish its public half to the
client (fixtures/wiring.py), which verifies it like any known_hosts entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from harness.emulator.guestface import GuestLaunch
from harness.emulator.qemu.agent import AgentLaunch, AgentSession, to_bytes
from harness.sshlib import asyncssh

log = logging.getLogger(__name__)
T = TypeVar("T")

SHELL = "/bin/sh"


class Launcher(Protocol):
    """What an endpoint needs of its guest: how `argv` runs inside it, a local command line
    (a process guest) or through its agent (a QEMU guest); raising when the guest cannot run
    programs, e.g. the VM is off."""

    def launch(self, argv: Sequence[str]) -> GuestLaunch | AgentLaunch: ...


@dataclass(frozen=True)
class SSHEndpoint:
    """Where one guest's sshd listens, and the host key it presents (OpenSSH public line)."""

    address: str
    port: int
    host_key: str


class GuestSSH:
    """The SSH servers of one emulator's guests, on one event loop thread."""

    def __init__(
        self, username: str, password: str, *, authorized_keys: Sequence[str] = ()
    ) -> None:
        self.username = username
        self._password = password.encode()
        self._authorized = "".join(f"{k.strip()}\n" for k in authorized_keys)
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = self._host_key.export_public_key().decode().strip()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: dict[object, tuple[asyncssh.SSHAcceptor, int]] = {}
        self._sessions: set[asyncio.Task[Any]] = set()  # open sessions, ended by close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="dmh-guest-sshd", daemon=True
                ).start()
                self._loop = loop
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def serve(self, key: object, guest: Callable[[], Launcher]) -> SSHEndpoint:
        """The endpoint of guest `key` (a VM id), started the first time it is asked for.
        `guest` is called per session, so a session always reaches the VM's current guest."""
        with self._lock:
            known = self._servers.get(key)
        if known is None:
            acceptor = self._run(self._listen(guest))
            port = int(acceptor.sockets[0].getsockname()[1])
            with self._lock:
                self._servers.setdefault(key, (acceptor, port))
                known = self._servers[key]
            if known[0] is not acceptor:
                acceptor.close()
            log.info("guest %s: sshd on 127.0.0.1:%s", key, known[1])
        return SSHEndpoint("127.0.0.1", known[1], self.host_key)

    def stop(self, key: object) -> None:
        with self._lock:
            known = self._servers.pop(key, None)
            loop = self._loop
        if known is not None and loop is not None:
            loop.call_soon_threadsafe(known[0].close)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shut() -> None:
            for acceptor, _ in servers:
                acceptor.close()
            # Each session ends its shell when cancelled (a process group, or the agent's).
            for task in self._sessions:
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)

    async def _listen(self, guest: Callable[[], Launcher]) -> asyncssh.SSHAcceptor:
        options: dict[str, Any] = {
            "server_host_keys": [self._host_key],
            "encoding": None,  # bytes both ways: output passes unchanged
            "allow_pty": False,
            "x11_forwarding": False,
            "agent_forwarding": False,
            "process_factory": lambda process: self._session(process, guest),
        }
        if self._authorized:
            options["authorized_client_keys"] = asyncssh.import_authorized_keys(self._authorized)
        return await asyncssh.create_server(lambda: _Auth(self), "127.0.0.1", 0, **options)

    def password_ok(self, username: str, password: str) -> bool:
        ok_user = hmac.compare_digest(username.encode(), self.username.encode())
        return ok_user and hmac.compare_digest(password.encode(), self._password)

    async def _session(
        self, process: asyncssh.SSHServerProcess[bytes], guest: Callable[[], Launcher]
    ) -> None:
        command = process.command
        argv = [SHELL] if command is None else [SHELL, "-c", command]
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._shell(process, guest, argv)
        finally:
            self._sessions.discard(task)

    async def _shell(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        guest: Callable[[], Launcher],
        argv: list[str],
    ) -> None:
        try:
            launch = guest().launch(argv)
            if isinstance(launch, AgentLaunch):
                session, messages = await _open(launch)
            else:
                proc = await asyncio.create_subprocess_exec(
                    *launch.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=launch.cwd,
                    env=dict(launch.env),
                    start_new_session=True,
                )
        except Exception as exc:  # the guest is off, or cannot start a shell: like sshd
            log.debug("guest ssh session refused: %s", exc)
            process.stderr.write(f"dmh-guest: {exc}\n".encode())
            process.exit(255)
            return
        if isinstance(launch, AgentLaunch):
            await _agent_session(session, messages, process)
            return
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            feed = asyncio.ensure_future(_feed(process.stdin, proc.stdin))
            await asyncio.gather(
                _pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr)
            )
            code = await proc.wait()
            feed.cancel()
            process.exit(code if code >= 0 else 128 - code)
        except (asyncssh.Error, OSError, asyncio.CancelledError):
            _kill_group(proc)  # the client went away: so does its session's shell
            raise


class _Auth(asyncssh.SSHServer):
    def __init__(self, outer: GuestSSH) -> None:
        self.outer = outer

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return self.outer.password_ok(username, password)

    def public_key_auth_supported(self) -> bool:
        return bool(self.outer._authorized)


async def _open(launch: AgentLaunch) -> tuple[AgentSession, asyncio.Queue[Mapping[str, Any]]]:
    """Start a session's shell in a QEMU guest: its output arrives from the agent's reader
    thread on the returned queue."""
    loop = asyncio.get_running_loop()
    messages: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()

    def deliver(message: Mapping[str, Any]) -> None:
        loop.call_soon_threadsafe(messages.put_nowait, message)

    return await loop.run_in_executor(None, launch.open, deliver), messages


async def _agent_session(
    session: AgentSession,
    messages: asyncio.Queue[Mapping[str, Any]],
    process: asyncssh.SSHServerProcess[bytes],
) -> None:
    """Pass a QEMU guest session's output to the client and the client's input to the
    agent, in order, until the shell exits."""
    loop = asyncio.get_running_loop()

    async def feed() -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            while data := await process.stdin.read(65536):
                await loop.run_in_executor(None, session.write, data)
        await loop.run_in_executor(None, session.close_input)

    feeding = asyncio.ensure_future(feed())
    try:
        while "exit" not in (message := await messages.get()):
            sink = process.stdout if message.get("fd") == 1 else process.stderr
            sink.write(to_bytes(str(message.get("data", ""))))
            await sink.drain()
        if "error" in message:
            process.stderr.write(f"dmh-guest: {message['error']}\n".encode())
        process.exit(int(message["exit"]))
    except (asyncssh.Error, OSError, asyncio.CancelledError):
        await loop.run_in_executor(None, session.kill)  # the client went away
        raise
    finally:
        feeding.cancel()


async def _feed(source: asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
