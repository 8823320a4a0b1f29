"""A VM's whole life through HyperVHost against the emulator over HTTP and HTTPS, and the
runtime memory rules of each host version, refused by the client before anything is sent."""

from __future__ import annotations

import uuid
from pathlib import PureWindowsPath

import pytest

from harness.errors import InvalidArgumentError, RuntimeChangeError
from harness.hyperv.host import (
    RUN_TAG,
    SUPPORTED,
    HyperVHost,
    UnsupportedHostError,
    version_from_build,
)
from harness.settings import HostVersion, MemoryChange, MemorySettings
from harness.units import GB, MB

from .support import Emulator, memory, running_emulator


def test_full_lifecycle(any_emulator: Emulator, vm_name: str) -> None:
    emulator = any_emulator
    emulated = emulator.emu.host
    with emulator.session() as session:
        host = HyperVHost(session)

        facts = host.facts()
        assert facts.hyperv_version is HostVersion.V2022
        assert facts.os_version == "10.0.20348"
        assert facts.memory_capacity == emulated.total_memory
        assert facts.balancer_available_mb > 0

        run_id = uuid.uuid4().hex[:12]
        template = emulator.emu.template_path("windows")
        disks_before = dict(emulated.disks())
        settings = memory(startup="1GB", minimum="512MB", maximum="4GB")
        created = host.create_vm(vm_name, settings, run_id=run_id, template=template)
        try:
            # A differencing disk next to the template, holding the template's guest OS.
            new_disks = {p: os for p, os in emulated.disks().items() if p not in disks_before}
            assert len(new_disks) == 1, new_disks
            [(disk, disk_os)] = new_disks.items()
            assert PureWindowsPath(disk).parent == PureWindowsPath(template).parent
            assert PureWindowsPath(disk).name.startswith("dmh-")
            assert disk_os == "windows"
            assert emulated.get_vm(vm_name).vhd_path == disk

            assert created.name == vm_name
            assert created.state == "Off"
            assert created.notes == f"{RUN_TAG}{run_id}"
            assert created.memory == settings
            assert host.leftovers(run_id) == [vm_name]
            assert vm_name in host.leftovers()

            # Adopt from a checkpoint: settings changed after it are rolled back.
            host.checkpoint(vm_name, "clean")
            host.change_memory(vm_name, MemoryChange(startup=2 * GB, maximum=8 * GB))
            assert host.vm(vm_name).memory.startup == 2 * GB
            assert host.adopt_vm(vm_name, checkpoint="clean").memory == settings

            running = host.start_vm(vm_name, heartbeat_deadline=20)
            assert running.state == "Running"
            assert running.heartbeat.startswith("Ok")
            assert running.memory_assigned >= settings.minimum

            # What a 2022 host allows at runtime: raise maximum, lower minimum, any buffer.
            expected = settings
            for change in (
                MemoryChange(maximum=6 * GB),
                MemoryChange(minimum=256 * MB),
                MemoryChange(buffer=50),
            ):
                expected = host.change_memory(vm_name, change)
                assert host.vm(vm_name).memory == expected
            assert emulated.get_vm(vm_name).memory.maximum == 6 * GB

            # What it refuses: checked before any Set-VMMemory goes out.
            sent_before = len(emulator.recorder.statements)
            for change in (
                MemoryChange(maximum=4 * GB),
                MemoryChange(minimum=512 * MB),
                MemoryChange(startup=2 * GB),
                MemoryChange(dynamic=False),
            ):
                with pytest.raises(RuntimeChangeError) as refused:
                    host.change_memory(vm_name, change)
                assert [refused.value.field] == list(change.fields())
                assert refused.value.host_version == "2022"
            assert "Set-VMMemory" not in emulator.recorder.statements[sent_before:]
            assert host.vm(vm_name).memory == expected

            host.stop_vm(vm_name)
            assert host.vm(vm_name).state == "Off"
        finally:
            host.remove_vm(vm_name)

        assert disk not in emulated.disks()
        assert set(emulated.disks()) == set(disks_before)
        assert host.leftovers(run_id) == []
        with pytest.raises(InvalidArgumentError):
            host.vm(vm_name)
        host.remove_vm(vm_name)  # already gone: not an error


# What each host version lets a running DM VM change (reference §2.3). 2016 and later follow
# the 2012 R2 rules for DM VMs (the harness's stated assumption); 2008 R2 SP1 allows nothing.
_ALLOWED = [
    MemoryChange(maximum=6 * GB),
    MemoryChange(minimum=256 * MB),
    MemoryChange(buffer=50),
    MemoryChange(priority=80),
]
_ALWAYS_REFUSED = [
    MemoryChange(maximum=3 * GB),
    MemoryChange(minimum=768 * MB),
    MemoryChange(startup=2 * GB),
    MemoryChange(dynamic=False),
]


_LACKS = {
    "2008R2SP1": "it runs PowerShell 2.0",
    "2012": "*-VMCheckpoint",
    "2012R2": "no PowerShell Direct (New-PSSession -VMId) and no Secure Boot templates",
}


@pytest.mark.parametrize("version", sorted(_LACKS))
def test_hosts_before_2016_are_refused_at_connect_time_with_what_they_lack(
    version: str,
) -> None:
    """Issue 13, item 10 and issue 23, defects 1 and 10: 2008 R2 SP1 runs PowerShell 2.0 (its
    host-facts must answer before a 3.0 command, else "not recognized" hides the designed
    error), 2012 lacks *-VMCheckpoint, 2012 R2 PowerShell Direct and Secure Boot templates;
    the first contact says so and names what the harness drives, before any VM is made."""
    with running_emulator(version=version) as emulator, emulator.session() as session:
        host = HyperVHost(session)
        with pytest.raises(UnsupportedHostError) as refused:
            host.facts()
        message = str(refused.value)
        assert "from Windows Server 2016 on" in message
        assert _LACKS[version] in message
        assert refused.value.facts.hyperv_version is HostVersion.parse(version)
        with pytest.raises(UnsupportedHostError):
            host.create_vm("never", memory(), run_id="old")
        assert emulator.recorder.statements == ["script host-facts", "script host-facts"]


@pytest.mark.parametrize("version", [v.value for v in SUPPORTED])
def test_runtime_changes_per_host_version(version: str) -> None:
    host_version = HostVersion.parse(version)
    generation = 2 if host_version not in (HostVersion.V2008R2SP1, HostVersion.V2012) else 1
    allowed = [] if host_version is HostVersion.V2008R2SP1 else _ALLOWED
    refused = _ALWAYS_REFUSED + ([] if allowed else _ALLOWED)
    settings = memory(startup="1GB", minimum="512MB", maximum="4GB")
    name = f"rules-{version}"
    with running_emulator(version=version) as emulator, emulator.session() as session:
        host = HyperVHost(session)
        assert host.facts().hyperv_version is host_version
        assert version_from_build(host.facts().os_version) is host_version
        host.create_vm(name, settings, run_id="rules", generation=generation)
        host.start_vm(name, heartbeat_deadline=20)

        state = emulator.emu.host.get_vm(name).memory
        sent_before = len(emulator.recorder.statements)
        for change in refused:
            with pytest.raises(RuntimeChangeError) as error:
                host.change_memory(name, change)
            assert error.value.host_version == version
            assert [error.value.field] == list(change.fields())
        # Refused before sending: the host saw reads only, and its settings did not move.
        assert "Set-VMMemory" not in emulator.recorder.statements[sent_before:]
        assert emulator.emu.host.get_vm(name).memory == state

        expected: MemorySettings = settings
        for change in allowed:
            expected = host.change_memory(name, change)
            assert host.vm(name).memory == expected
        assert emulator.recorder.statements.count("Set-VMMemory") == 1 + len(allowed)
