"""`dmh sweep` against an emulated host over real PSRP: without --run-id it removes only VMs
whose run is no longer alive (their lease says so), never those of a run in progress."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.emulator.service import EmbeddedEmulator
from harness.fixtures.wiring import emulator_target
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.lease import Lease, machine_name

REPO = Path(__file__).resolve().parents[2]
NOW = time.time()


@pytest.fixture
def lab() -> Iterator[tuple[EmbeddedEmulator, HyperVHost]]:
    emulator = EmbeddedEmulator()
    emulator.start()
    session = HostSession(emulator_target(emulator))
    try:
        yield emulator, HyperVHost(session)
    finally:
        session.close()
        emulator.close()


def sweep(emulator: EmbeddedEmulator, *args: str) -> list[str]:
    url = f"psrp://{emulator.username}@127.0.0.1:{emulator.server.port}?auth=basic&ssl=false"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
    env["DMH_HOST_PASSWORD"] = emulator.password
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "--dm-host", url, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_sweep_removes_only_vms_of_runs_no_longer_alive(
    lab: tuple[EmbeddedEmulator, HyperVHost],
) -> None:
    emulator, host = lab
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    me = psutil.Process()
    notes = {
        "mine-running": Lease("aaaaaaaaaaaa", NOW, machine_name(), me.pid, me.create_time()),
        "mine-dead": Lease("bbbbbbbbbbbb", NOW, machine_name(), dead_pid.pid),
        "elsewhere-young": Lease("cccccccccccc", NOW - 3600, "another-machine", 7),
        "elsewhere-old": Lease("dddddddddddd", NOW - 48 * 3600, "another-machine", 7),
        "older-harness": Lease("eeeeeeeeeeee"),
    }
    for name, lease in notes.items():
        host.session.script("new-vm-from-template", Name=name, StartupBytes=2**30,
                            Notes=lease.notes())  # fmt: skip
    host.session.script("new-vm-from-template", Name="not-ours", StartupBytes=2**30, Notes="")

    listed = sweep(emulator)
    assert sorted(line.split()[0] for line in listed[:-1]) == ["abandoned"] * 2 + ["kept"] * 3
    assert any(line.startswith("abandoned mine-dead (run bbbbbbbbbbbb:") for line in listed)
    assert any(line.startswith("abandoned elsewhere-old (run dddddddddddd:") for line in listed)
    assert listed[-1] == "(list only; add --yes to remove the abandoned ones)"
    assert {vm.name for vm in host.vms()} == {*notes, "not-ours"}  # nothing removed yet

    removed = sweep(emulator, "--yes")
    assert sorted(line for line in removed if line.startswith("removed ")) == [
        line.replace("abandoned", "removed", 1)
        for line in sorted(listed)
        if line.startswith("abandoned ")
    ]
    left = {vm.name for vm in host.vms()}
    assert left == {"mine-running", "elsewhere-young", "older-harness", "not-ours"}

    sweep(emulator, "--yes", "--older-than", "0.5")  # the young one elsewhere is now too old
    sweep(emulator, "--yes", "--run-id", "eeeeeeeeeeee")  # named: removed whatever it is
    assert {vm.name for vm in host.vms()} == {"mine-running", "not-ours"}
