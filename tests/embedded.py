"""The one way the harness's own tests start an embedded emulator.

In this process: `running_emulator` (one, closed afterwards) and `emulator_pool` (several,
closed together; for module- or session-scoped fixtures), each an `Emulator`: the started
`EmbeddedEmulator` and a record of every statement its Hyper-V handler was sent. In a pytest
subprocess, where the plugin starts its own: `PLUGIN_ARGS` and `plugin_env` (or
`use_plugin_env` for pytester), which load the plugin from this checkout and never point it
at a lab host.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.emulator.cmdlets import HyperVHandler
from harness.emulator.psrp import Command, PipelineOutput
from harness.emulator.server import EmulatorServer
from harness.emulator.service import EmbeddedEmulator
from harness.emulator.wmi import ServedWith
from harness.fixtures.wiring import emulator_guest_credentials, emulator_target
from harness.hyperv.guest import GuestCredentials
from harness.hyperv.session import HostSession

REPO = Path(__file__).resolve().parents[1]
PLUGIN_ARGS = ("-p", "harness.fixtures.plugin", "-p", "no:cacheprovider", "--strict-markers")
_SCRIPT_NAME = re.compile(r"^#\s*dmh-script:\s*([a-z0-9-]+)\s*$", re.MULTILINE)


class RecordingHandler:
    """The emulator's real Hyper-V handler, plus a record of every statement it was sent
    (instrumentation, not a mock: it only lets a test see what reached the host)."""

    def __init__(self, inner: HyperVHandler) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._statements: list[str] = []

    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        with self._lock:
            self._statements.extend(_statement(c) for c in commands)
        self.inner.run(commands, pipeline_input, out)

    @property
    def statements(self) -> list[str]:
        with self._lock:
            return list(self._statements)


def _statement(command: Command) -> str:
    if command.is_script:
        match = _SCRIPT_NAME.search(command.name)
        return f"script {match.group(1) if match else '?'}"
    return command.name


@dataclass
class Emulator:
    """A started EmbeddedEmulator and the recording wrapped around its handler."""

    emu: EmbeddedEmulator
    recorder: RecordingHandler

    @property
    def credentials(self) -> GuestCredentials:
        return emulator_guest_credentials(self.emu)

    def session(
        self,
        *,
        retries: int = 2,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> HostSession:
        return HostSession(emulator_target(self.emu), retries=retries, backoff=backoff, sleep=sleep)

    def restart_server(self) -> EmulatorServer:
        """Stop the endpoint (dropping every connection and shell) and listen again on the same
        port with the same handler, as a host whose WinRM service restarted."""
        port = self.emu.server.port
        self.emu.server.stop()
        self.emu.server = self._server(port)
        self.emu.server.start()
        return self.emu.server

    def _server(self, port: int = 0) -> EmulatorServer:
        # The endpoint serves what the emulator's own serves: PSRP (recorded here) and WMI.
        return EmulatorServer(
            ServedWith(self.recorder, self.emu.wmi),
            username=self.emu.username,
            password=self.emu.password,
            port=port,
            tls=self.emu.tls,
        )


def start_emulator(
    *,
    tls: bool = False,
    version: str = "2022",
    guest_os: str = "windows",
    guest_username: str = "guest",
    guest_password: str | None = None,
) -> Emulator:
    """An embedded emulator on loopback whose endpoint records what reached its handler."""
    emu = EmbeddedEmulator(
        tls=tls,
        version=version,
        guest_os=guest_os,
        guest_username=guest_username,
        guest_password=guest_password,
    )
    emulator = Emulator(emu, RecordingHandler(emu.handler))
    # The endpoint is built around the recording handler before anything listens.
    emu.server = emulator._server()
    emu.start()
    return emulator


@contextlib.contextmanager
def emulator_pool(**defaults: Any) -> Iterator[Callable[..., Emulator]]:
    """A function that starts emulators (`defaults` overridden per call); all are closed
    when the block ends."""
    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        emulator = start_emulator(**{**defaults, **options})
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in started:
            emulator.emu.close()


@contextlib.contextmanager
def running_emulator(**options: Any) -> Iterator[Emulator]:
    with emulator_pool() as start:
        yield start(**options)


def plugin_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for a pytest subprocess that loads the plugin from this checkout and
    runs on its embedded emulator (never a lab host from the caller's DMH_HOST)."""
    env = dict(os.environ if base is None else base)
    env.pop("DMH_HOST", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def use_plugin_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """The same for pytester's subprocesses, which take this process's environment."""
    monkeypatch.delenv("DMH_HOST", raising=False)
    for name, value in plugin_env(**extra).items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
