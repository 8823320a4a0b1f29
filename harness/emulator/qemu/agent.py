"""The host side of the guest agent (agent_guest.py): JSON lines over the unix socket QEMU
serves for the guest's virtio-serial port. One connection per VM; requests carry ids, so
many may be in flight at once (a reader thread hands each answer to its waiter).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.emulator.qemu.errors import QemuError

_ENC, _ERR = "utf-8", "surrogateescape"


@dataclass(frozen=True)
class ExecResult:
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


class AgentClient:
    """A connection to one guest's agent. Thread-safe."""

    def __init__(self, path: Path, vm: str) -> None:
        self.vm = vm
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._streams: dict[int, Callable[[Mapping[str, Any]], None]] = {}
        self._closed: str | None = None
        self._reader = threading.Thread(target=self._read, name=f"dmh-agent-{vm}", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: Path, vm: str, deadline: float) -> AgentClient:
        """Connect once QEMU has made the socket (it does so before the guest boots)."""
        while True:
            try:
                return cls(path, vm)
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise QemuError(f"cannot reach the agent socket: {exc}", vm=vm) from exc
                time.sleep(0.02)  # poll interval while QEMU starts

    def _read(self) -> None:
        buffer = b""
        reason = "the agent connection closed (the VM stopped)"
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._deliver(line)
        except OSError as exc:
            reason = f"the agent connection failed: {exc}"
        with self._lock:
            self._closed = reason
            pending, self._pending = self._pending, {}
            streams, self._streams = self._streams, {}
        for future in pending.values():
            future.set_exception(QemuError(reason, vm=self.vm, stage="agent"))
        for deliver in streams.values():
            deliver({"exit": 255, "error": reason})

    def _deliver(self, line: bytes) -> None:
        try:
            answer = json.loads(line)
        except ValueError:
            return  # not ours (a partial line from before the host connected)
        if "id" not in answer and "stream" in answer:  # a session's output or its end
            with self._lock:
                key = answer["stream"]
                deliver = self._streams.get(key)
                if "exit" in answer:
                    self._streams.pop(key, None)
            if deliver is not None:
                deliver(answer)
            return
        with self._lock:
            future = self._pending.pop(answer.get("id"), None)
        if future is not None:
            future.set_result(answer)

    def send(self, op: str, fields: Mapping[str, Any]) -> Future[dict[str, Any]]:
        request_id = next(self._ids)
        future: Future[dict[str, Any]] = Future()
        data = json.dumps({"id": request_id, "op": op, **fields}).encode() + b"\n"
        with self._lock:
            if self._closed is not None:
                raise QemuError(self._closed, vm=self.vm, stage="agent")
            self._pending[request_id] = future
            self._sock.sendall(data)
        return future

    def post(self, op: str, fields: Mapping[str, Any]) -> None:
        """Send a message that has no answer (a session's input)."""
        data = json.dumps({"op": op, **fields}).encode() + b"\n"
        with self._lock:
            if self._closed is not None:
                raise QemuError(self._closed, vm=self.vm, stage="agent")
            self._sock.sendall(data)

    def open(
        self,
        argv: Sequence[str],
        deliver: Callable[[Mapping[str, Any]], None],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> AgentSession:
        """Start a program whose pipes are held here: `deliver` gets its output ({"fd",
        "data"}) in order from the reader thread, then {"exit": rc} once."""
        key = next(self._ids)
        with self._lock:
            self._streams[key] = deliver
        try:
            answer = self.request(
                "open", 30.0, stream=key, argv=list(argv), env=dict(env or {}), cwd=cwd
            )
        except QemuError:
            with self._lock:
                self._streams.pop(key, None)
            raise
        return AgentSession(self, key, int(answer["pid"]))

    def request(self, op: str, wait: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send one request and wait up to `wait` seconds for its answer."""
        future = self.send(op, fields)
        try:
            answer = future.result(wait)
        except FutureTimeout as exc:
            raise QemuError(
                f"the guest agent did not answer {op!r} within {wait} s",
                vm=self.vm,
                stage="agent",
            ) from exc
        if "error" in answer:
            raise QemuError(f"the guest agent failed {op!r}: {answer['error']}", vm=self.vm)
        return answer

    def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: str | bytes = b"",
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        """Run a command in the guest to completion (rc 124 when `timeout` ran out)."""
        text = stdin.decode(_ENC, _ERR) if isinstance(stdin, bytes) else stdin
        answer = self.request(
            "exec",
            (timeout or 3600.0) + 30.0,
            argv=list(argv),
            stdin=text,
            timeout=timeout,
            env=dict(env or {}),
            cwd=cwd,
        )
        return ExecResult(
            int(answer["rc"]), answer["stdout"], answer["stderr"], bool(answer.get("timed_out"))
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def to_bytes(text: str) -> bytes:
    """Output as the guest wrote it (the agent escapes undecodable bytes)."""
    return text.encode(_ENC, _ERR)


class AgentSession:
    """A program in the guest started by `AgentClient.open`: its input goes in order."""

    def __init__(self, client: AgentClient, key: int, pid: int) -> None:
        self.client, self.key, self.pid = client, key, pid

    def write(self, data: bytes) -> None:
        self.client.post("input", {"stream": self.key, "data": data.decode(_ENC, _ERR)})

    def close_input(self) -> None:
        with contextlib.suppress(QemuError):
            self.client.post("input", {"stream": self.key, "eof": True})

    def kill(self) -> None:
        """End the program and its whole session (the client went away)."""
        with contextlib.suppress(QemuError):
            self.client.request("signal", 5.0, pid=self.pid, sig=9)


@dataclass(frozen=True)
class AgentLaunch:
    """How a program runs in a QEMU guest with pipes its caller holds: through the agent."""

    client: AgentClient
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str

    def open(self, deliver: Callable[[Mapping[str, Any]], None]) -> AgentSession:
        return self.client.open(self.argv, deliver, env=self.env, cwd=self.cwd)
