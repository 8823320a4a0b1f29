"""Hostile strings (quotes, `$()`, backticks, `;`, `|`, wildcards, newlines, non-ASCII) through
every string parameter of the named scripts and cmdlets arrive as the same values: nothing is
spliced into script text, and a VM name matches only that VM, never others like it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import PureWindowsPath

import pytest

from harness.config import Secret
from harness.errors import CommandError, ObjectNotFoundError
from harness.hyperv.guest import DirectChannel, Guest, GuestCredentials
from harness.hyperv.host import RUN_TAG, HyperVHost, prop
from harness.sampler import Sampler
from harness.settings import MemoryChange, MemorySettings
from harness.timeline import Timeline
from harness.units import GB

from .support import (
    ECHO_PROGRAM,
    HOSTILE,
    PYTHON,
    SWITCH,
    Emulator,
    finish,
    guest_over,
    memory,
    running_emulator,
)

# What the hostile name would match if its wildcards were taken as wildcards.
DECOY = HOSTILE.replace("*", "zz").replace("[x]", "x").replace("?", "!").replace("`t", "t")
# Names stay identifiers: the emulated guest starts programs through `sh`, which drops
# variables whose names are not (values are what callers pass through).
ENV_NAME = "DMH_HOSTILE"


@contextlib.contextmanager
def hostile_vm(host: HyperVHost, emulator: Emulator, settings: MemorySettings) -> Iterator[str]:
    """A VM named HOSTILE, tagged with run id HOSTILE, its disk in a HOSTILE directory."""
    host.create_vm(
        HOSTILE,
        settings,
        run_id=HOSTILE,
        template=emulator.emu.template_path("windows"),
        disk_directory=f"C:\\DMH\\{HOSTILE}",
        switch=SWITCH,
    )
    try:
        yield HOSTILE
    finally:
        host.remove_vm(HOSTILE)


def test_hostile_vm_names_notes_and_paths(http_emulator: Emulator) -> None:
    assert DECOY != HOSTILE
    emulated = http_emulator.emu.host
    settings = memory()
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with pytest.raises(ObjectNotFoundError) as no_template:
            host.create_vm("x", settings, run_id="r", template=f"C:\\DMH\\{HOSTILE}.vhdx")
        assert no_template.value.target == f"C:\\DMH\\{HOSTILE}.vhdx"

        host.create_vm(DECOY, settings, run_id="decoy")
        try:
            host.start_vm(DECOY, heartbeat_deadline=20)
            with hostile_vm(host, http_emulator, settings):
                vm = host.vm(HOSTILE)
                assert vm.name == HOSTILE
                assert vm.notes == RUN_TAG + HOSTILE
                assert host.leftovers(HOSTILE) == [HOSTILE]
                disk = emulated.get_vm(HOSTILE).vhd_path
                assert PureWindowsPath(disk).parent == PureWindowsPath(f"C:\\DMH\\{HOSTILE}")
                assert disk in emulated.disks()

                # Settings, checkpoints, start and sampling touch the hostile VM only.
                host.change_memory(HOSTILE, MemoryChange(startup=2 * GB, maximum=4 * GB))
                assert host.vm(HOSTILE).memory.startup == 2 * GB
                assert host.vm(DECOY).memory == settings
                host.checkpoint(HOSTILE, HOSTILE)
                host.change_memory(HOSTILE, MemoryChange(startup=1 * GB))
                host.restore(HOSTILE, HOSTILE)
                assert host.vm(HOSTILE).memory.startup == 2 * GB
                host.start_vm(HOSTILE, heartbeat_deadline=20)
                sample = Sampler(host, HOSTILE, Timeline()).tick()
                assert sample.host is not None and sample.host.maximum_mb == 4096
                address = session.script("vm-address", VMName=HOSTILE)[0]
                assert int(prop(address, "Port")) > 0
                host.stop_vm(HOSTILE)
                assert host.vm(HOSTILE).state == "Off"
                assert host.vm(DECOY).state == "Running"
            assert disk not in emulated.disks()
            assert [v.name for v in emulated.find_vms("*") if v.name in (HOSTILE, DECOY)] == [DECOY]
        finally:
            host.remove_vm(DECOY)


@pytest.mark.parametrize("channel", ["direct", "winrm"])
def test_hostile_guest_values(http_emulator: Emulator, channel: str) -> None:
    content = (HOSTILE + "\n").encode() + bytes(range(256))
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with hostile_vm(host, http_emulator, memory()):
            host.start_vm(HOSTILE, heartbeat_deadline=20)
            with guest_over(channel, http_emulator, host, HOSTILE) as guest:
                guest.write_file(f"{HOSTILE}/echo.py", ECHO_PROGRAM.encode())
                guest.write_file(f"{HOSTILE}/{HOSTILE}.bin", content)
                guest.write_file(f"{HOSTILE}/{HOSTILE}.txt", HOSTILE.encode())
                argv = ["echo.py", HOSTILE, "", " ", '\\"', "trailing\\", "-c", "--", "%PATH%"]
                process = guest.start_process(
                    PYTHON,
                    argv,
                    {
                        "DMH_ENV_NAMES": json.dumps([ENV_NAME, "DMH_VALUE"]),
                        ENV_NAME: HOSTILE,
                        "DMH_VALUE": HOSTILE,
                        "DMH_READ": json.dumps([f"{HOSTILE}.txt"]),
                    },
                    working_directory=HOSTILE,
                )
                assert finish(process) == 0
                seen = json.loads(process.output)
                assert seen["argv"] == argv[1:]
                assert seen["env"] == {ENV_NAME: HOSTILE, "DMH_VALUE": HOSTILE}
                assert seen["cwd"].endswith(HOSTILE)
                assert seen["files"] == {f"{HOSTILE}.txt": HOSTILE}
                # Binary content round trip, read back by a guest program.
                reader = guest.start_process(
                    PYTHON,
                    ["-c", "import sys; sys.stdout.write(open(sys.argv[1], 'rb').read().hex())",
                     f"{HOSTILE}.bin"],
                    working_directory=HOSTILE,
                )  # fmt: skip
                assert finish(reader) == 0
                assert bytes.fromhex(reader.output) == content

                with pytest.raises(ObjectNotFoundError) as no_program:
                    guest.start_process(f"./{HOSTILE}")
                assert no_program.value.target == f"./{HOSTILE}"
                with pytest.raises(CommandError) as bad_operation:
                    guest.channel.run(HOSTILE, {})
                assert bad_operation.value.target == HOSTILE


HOSTILE_USER = "user'\"$(x)`;| ü"
HOSTILE_PASSWORD = "pw'\"$(Remove-VM *)`n;|&%PATH% ünï\n名"


def test_hostile_guest_credentials() -> None:
    with (
        running_emulator(guest_username=HOSTILE_USER, guest_password=HOSTILE_PASSWORD) as emu,
        emu.session() as session,
    ):
        host = HyperVHost(session)
        host.create_vm("creds", memory(), run_id="creds", template=emu.emu.template_path("windows"))
        host.start_vm("creds", heartbeat_deadline=20)
        good = GuestCredentials(HOSTILE_USER, Secret(HOSTILE_PASSWORD))
        guest = Guest(DirectChannel(session, "creds", good))
        assert guest.counters().total_mb >= 512  # vm-invoke: the credentials matched
        sample = Sampler(host, "creds", Timeline(), guest=guest).tick()
        assert sample.guest is not None  # sample-vm: so did they
        for user, password in ((HOSTILE_USER, HOSTILE_PASSWORD + "x"), ("guest", "")):
            wrong = Guest(DirectChannel(session, "creds", GuestCredentials(user, Secret(password))))
            with pytest.raises(CommandError, match="credential is invalid"):
                wrong.counters()


@pytest.mark.parametrize("name", ["tick`name", "brackets[1]", "star*", "quote'; Remove-VM x"])
def test_vm_names_with_one_special_character(http_emulator: Emulator, name: str) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(name, memory(), run_id="special")
        try:
            assert host.vm(name).name == name
            host.change_memory(name, MemoryChange(buffer=30))
            assert host.vm(name).memory.buffer == 30
        finally:
            host.remove_vm(name)
        assert name not in [v.name for v in http_emulator.emu.host.find_vms("*")]
