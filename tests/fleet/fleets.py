"""The lab-of-many-hosts tests' fleets: embedded emulators in this process (`fleet_factory`,
the Python API) or served by `dmh emulator serve --fleet` in a subprocess (`served_fleet`),
each with the inventory that reaches it; and real controller processes
(`tests/fleet/controller.py`) that lease capacity on the fleet's hosts. A module, not a
conftest: a test file imports the fixtures it uses (`from tests.fleet.fleets import
fleet_factory`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.deadline import wait_until
from harness.emulator.fleet import PASSWORD_VARIABLE, EmulatorFleet
from harness.hyperv.session import HostSession
from harness.inventory import Inventory, load_inventory
from tests.embedded import REPO, plugin_env

PASSWORD = "fleet-test-password"
GUEST_PASSWORD = "fleet-test-guest-password"
STARTUP_S = 60.0  # cold interpreters on 2 busy cores


@dataclass
class Fleet:
    """A started fleet, its inventory file and the environment that resolves its credential."""

    fleet: EmulatorFleet | None  # None: served by a subprocess
    path: Path
    env: dict[str, str]

    @property
    def inventory(self) -> Inventory:
        return load_inventory(self.path)

    def session(self, name: str) -> HostSession:
        return HostSession(self.inventory.named(name).target(self.env), retries=0)


def fleet_env(**extra: str) -> dict[str, str]:
    secrets = {PASSWORD_VARIABLE: PASSWORD, "DMH_GUEST_PASSWORD": GUEST_PASSWORD}
    return plugin_env(**{"DMH_GUEST_USERNAME": "guest", **secrets, **extra})


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Start fleets in this process (`EmulatorFleet.from_spec(spec, **options)`); each writes
    its inventory to a file; all are closed afterwards."""
    started: list[EmulatorFleet] = []

    def start(spec: str, **options: object) -> Fleet:
        fleet = EmulatorFleet.from_spec(
            spec, password=PASSWORD, guest_password=GUEST_PASSWORD, **options
        )
        started.append(fleet)
        fleet.start()
        path = tmp_path / f"fleet-{len(started)}.toml"
        path.write_text(fleet.inventory_toml(), encoding="utf-8")
        return Fleet(fleet, path, fleet_env())

    try:
        yield start
    finally:
        for fleet in started:
            fleet.close()


@contextlib.contextmanager
def served_fleet(spec: str, directory: Path, *args: str) -> Iterator[tuple[Fleet, list[str]]]:
    """`dmh emulator serve --fleet SPEC --write-inventory FILE` in a subprocess, until the block
    ends (SIGTERM to its pid); yields the fleet and the lines it printed so far."""
    path = directory / "dmh-hosts.toml"
    log = directory / "serve.log"
    env = fleet_env()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "emulator", "serve", "--fleet", spec,
             "--write-inventory", str(path), *args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        )  # fmt: skip
    try:
        wait_until(
            lambda: path.is_file() or proc.poll() is not None,
            STARTUP_S,
            what="the fleet's inventory file",
            detail=lambda: log.read_text(),
        )
        assert proc.poll() is None, log.read_text()
        yield Fleet(None, path, env), log.read_text().splitlines()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Controller:
    """A controller process (tests/fleet/controller.py) that leases capacity on one host of
    an inventory; it reports on stdout as JSON lines and holds its leases until told."""

    def __init__(self, fleet: Fleet, host: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet.controller", str(fleet.path), host, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=fleet.env, cwd=REPO,
        )  # fmt: skip

    def report(self) -> str:
        """Its next line (what it has leased), read with the startup deadline."""
        assert self.proc.stdout is not None
        line = _readline(self.proc, STARTUP_S)
        assert line, f"the controller ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
        return line

    def finish(self) -> int:
        """Tell it to release its leases and end; its exit code."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        return self.proc.wait(STARTUP_S)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STARTUP_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line within `timeout` (a thread reads it, so the wait has a deadline)."""
    import queue
    import threading

    box: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: box.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    return box.get(timeout=timeout)


@pytest.fixture
def controllers() -> Iterator[Callable[..., Controller]]:
    started: list[Controller] = []

    def start(fleet: Fleet, host: str, *args: str) -> Controller:
        controller = Controller(fleet, host, *args)
        started.append(controller)
        return controller

    try:
        yield start
    finally:
        for controller in started:
            controller.close()
