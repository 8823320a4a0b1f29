"""Issue 13: the guest and sampling path as it behaves on a real host, item by item, against an
emulator that is faithful on each point (reference/real-host-and-runtime-facts.md). Each test
names the item it holds; the static side of the same items is in tests/static/."""

from __future__ import annotations

import uuid

import pytest
from psrpcore.types import PSInt64

from harness.config import Secret
from harness.emulator.cmdlets.guest_ops import run_guest_operation
from harness.emulator.cmdlets.realhost import GuestOpsFacts
from harness.emulator.cmdlets.registry import guest_operation
from harness.errors import CommandError, InvalidArgumentError, ObjectNotFoundError, SettingError
from harness.hyperv.guest import (
    GUEST_ROOT,
    DirectChannel,
    Guest,
    GuestCredentials,
    GuestProcess,
    WinRMChannel,
    guest_path,
)
from harness.hyperv.host import HyperVHost
from harness.levers import LoadCommand, MemoryLevers
from harness.sampler import Sampler
from harness.settings import MemoryChange
from harness.timeline import Timeline
from harness.wildcards import literal

from .support import (
    PYTHON,
    SWITCH,
    Emulator,
    direct_guest,
    finish,
    guest_over,
    memory,
    running_vm,
    wait_for,
)

CRASH = "import sys; print('partial', flush=True); sys.stderr.write('boom: out of memory\\n');" \
    " sys.exit(3)"  # fmt: skip
# A parent that starts a child which would outlive it, and reports the child's pid.
TREE = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def test_item1_a_crashed_app_reports_its_exit_code_and_stderr(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 1: the exit code and stderr come from the process object kept in the guest
    session, not from a PID lookup that finds nothing once the process has exited."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            app = guest.start_process(PYTHON, ["-c", CRASH])
            sampler = Sampler(host, vm_name, Timeline(), guest=guest, process=app)
            sample = wait_for(
                lambda: (s := sampler.tick()).app is not None and s.app.exit_code is not None and s,
                15,
                "the crashed app's exit code in a sample",
            )
            assert sample.app is not None and sample.app.exit_code == 3
            assert not sample.app.running
            assert app.output == "partial\nboom: out of memory\n"  # stderr after stdout
            assert not app.stats().running


def test_item2_stop_ends_the_whole_tree_and_an_exited_process_is_no_error(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 2: StopProcess stops the app's tree; stopping one that already exited (where
    taskkill writes to stderr, fatal under Stop in 5.1) succeeds."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            parent = guest.start_process(PYTHON, ["-c", TREE])
            wait_for(lambda: parent.poll().output or parent.output, 10, "the child's start")
            emulated = http_emulator.emu.host.guest(vm_name)
            [local] = [p for p in emulated.processes() if p.stdout_path.name in parent.output_path]
            tree = local.tree()
            assert len(tree) >= 2  # the parent and the child it started
            assert parent.stop() is not None
            assert not parent.stats().running
            assert not [p for p in tree if p.is_running() and p.status() != "zombie"]
            done = guest.start_process(PYTHON, ["-c", "pass"])
            assert finish(done) == 0
            assert done.stop() == 0  # already exited: its code, no error
            assert done.stop() == 0  # and again


def test_item3_guest_paths_are_absolute_under_one_known_directory(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 3: relative paths go under GUEST_ROOT for files and for the working directory
    alike; guest-ops itself refuses a relative path, naming it."""
    assert guest_path("dmh-apps/a.py") == GUEST_ROOT + "\\dmh-apps\\a.py"
    assert guest_path("D:\\x\\y") == "D:\\x\\y"
    with pytest.raises(SettingError, match="drive- or root-relative"):
        guest_path("\\no-drive")
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            guest.write_file("dmh-apps/hello.py", b"import os; print(os.getcwd())\n")
            app = guest.start_process(PYTHON, ["dmh-apps/hello.py"])  # relative to GUEST_ROOT
            assert finish(app) == 0
            assert app.output.strip().replace("\\", "/").endswith("ProgramData/dm-harness")
            with pytest.raises(CommandError, match=r"'rel/x\.txt' is not an absolute path"):
                guest.channel.run("WriteFile", {"Path": "rel/x.txt", "ContentBase64": ""})
            with pytest.raises(CommandError, match="WorkingDirectory '' is not an absolute"):
                guest.channel.run("StartProcess", {"FilePath": PYTHON, "ArgumentList": []})


def test_item4_a_missing_counter_class_is_not_available_and_the_sample_stands(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 4: a counter class the guest lacks (here the DM integration service's, in a
    Linux guest, reached by its WinRM endpoint: PowerShell Direct refuses a Linux guest)
    reads as not available; the rest of the sample stands."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(
            vm_name,
            memory(),
            run_id="item4",
            template=http_emulator.emu.template_path("linux"),
            switch=SWITCH,
        )
        try:
            host.start_vm(vm_name, heartbeat_deadline=20)
            with guest_over("winrm", http_emulator, host, vm_name) as guest:
                counters = guest.counters()
                sample = Sampler(host, vm_name, Timeline(), guest=guest).tick()

            assert counters.max_memory_mb == 0 and counters.total_mb >= 512
            assert sample.guest is not None and sample.guest.available_mb > 0
            assert sample.host is not None and sample.host.assigned_mb >= 512
            assert sample.host.guest_visible_mb > 0  # the VM's DM counters, read via CIM
        finally:
            host.remove_vm(vm_name)


def test_item5_a_tick_is_one_round_trip_and_a_booting_guest_costs_no_sample(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 5: one sample-vm round trip per tick, with guest and app; a guest that does not
    answer yet leaves the host half of the tick (no exception, no lost sample)."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(
            vm_name, memory(), run_id="item5", template=http_emulator.emu.template_path("windows")
        )
        try:
            guest = direct_guest(session, vm_name, http_emulator)
            sampler = Sampler(host, vm_name, Timeline(), guest=guest)
            # Start-VM and a tick in one go: the guest is still booting.
            session.cmdlet("Start-VM", Name=vm_name)
            booting = sampler.tick()
            assert booting.host is not None and booting.host.state == "Running"
            assert booting.guest is None and sampler.errors == 1
            host.wait_for(vm_name, lambda vm: vm.heartbeat.startswith("Ok"), 20, "guest up")
            app = guest.start_process(PYTHON, ["-c", "import time; time.sleep(30)"])
            sampler.process = app
            before = len(http_emulator.recorder.statements)
            for _ in range(3):
                sample = sampler.tick()
                assert sample.guest is not None and sample.app is not None
            assert http_emulator.recorder.statements[before:] == ["script sample-vm"] * 3
            app.stop()
        finally:
            host.remove_vm(vm_name)


@pytest.mark.parametrize("name", ["vm[1]", "vm`1", "a*b?", "x]y"])
def test_item6_exact_names_reach_only_their_vm(http_emulator: Emulator, name: str) -> None:
    """Item 6: a name goes as it is unless Hyper-V would take it as a pattern; then as a
    pattern that matches only it. Escaping (the old way) misses on a real host."""
    decoys = ["vm1", "vm`[1`]", "aXbY", "vm``1"]
    with http_emulator.session() as session:
        host = HyperVHost(session)
        for decoy in decoys:
            host.create_vm(decoy, memory(), run_id="item6")
        host.create_vm(name, memory(), run_id="item6")
        try:
            assert host.vm(name).name == name
            found = session.cmdlet("Get-VM", Name=literal(name))
            assert [str(v.adapted_properties["Name"]) for v in found] == [name]
            host.change_memory(name, MemoryChange(buffer=40))
            assert host.vm(name).memory.buffer == 40
            assert all(host.vm(d).memory.buffer != 40 for d in decoys)
        finally:
            for vm in [name, *decoys]:
                host.remove_vm(vm)


def test_item7_winrm_needs_a_switch_and_the_shell_quota_is_named(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 7: a VM on no switch has no address (said so); on a switch the WinRM channel
    works; a load past MaxMemoryPerShellMB is refused naming the quota."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(
            vm_name, memory(), run_id="item7", template=http_emulator.emu.template_path("windows")
        )
        try:
            host.start_vm(vm_name, heartbeat_deadline=20)
            with pytest.raises(ObjectNotFoundError, match="on no virtual switch"):
                session.script("vm-address", VMName=vm_name)
        finally:
            host.remove_vm(vm_name)
        with (
            running_vm(host, vm_name, http_emulator),
            guest_over("winrm", http_emulator, host, vm_name) as guest,
        ):
            assert isinstance(guest.channel, WinRMChannel) and guest.channel.quota_mb() == 1024
            with pytest.raises(SettingError, match="MaxMemoryPerShellMB"):
                guest.start_process(PYTHON, ["-c", "pass"], memory_mb=1536)
            small = guest.start_process(PYTHON, ["-c", "pass"], memory_mb=256)
            assert finish(small) == 0
            # A 512 MB hot-add would need a 1 GB load, past the quota: the lever raises the
            # buffer instead, and memory moves.
            levers = MemoryLevers(host, vm_name, Timeline(), guest=guest,
                                  load=LoadCommand(PYTHON, ["load.py"]))  # fmt: skip
            move = levers.force_hot_add("512MB")
            assert move.strategy == "raise-buffer" and move.after_mb - move.before_mb >= 512
    with (
        pytest.raises(ObjectNotFoundError, match="virtual switch"),
        http_emulator.session() as session,
    ):
        HyperVHost(session).create_vm(vm_name, memory(), run_id="item7", switch="no-such")


def test_item8_a_reused_pid_is_never_the_app(http_emulator: Emulator, vm_name: str) -> None:
    """Item 8: the app is found by its key, so another process holding its PID later (Windows
    reuses PIDs) is never reported as the app: simulated by asking with the app's key and
    another live process's PID."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            app = guest.start_process(PYTHON, ["-c", "print('app'); raise SystemExit(5)"])
            assert finish(app) == 5
            other = guest.start_process(PYTHON, ["-c", "import time; time.sleep(30)"])
            reused = GuestProcess(guest, app.key, other.pid, app.output_path)
            result = reused.poll()
            assert (result.running, result.exit_code, result.output) == (False, 5, "app\n")
            assert not reused.stats().running
            with pytest.raises(CommandError, match="no process with key"):
                GuestProcess(guest, uuid.uuid4().hex, app.pid, "").poll()
            other.stop()


def test_item9_direct_waits_for_the_guest_and_bad_credentials_are_an_open_error(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 9: Running at once after Start-VM while PowerShell Direct is refused until the
    guest is up; wrong guest credentials fail as New-PSSession's OpenError."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(
            vm_name, memory(), run_id="item9", template=http_emulator.emu.template_path("windows")
        )
        try:
            guest = direct_guest(session, vm_name, http_emulator)
            session.cmdlet("Start-VM", Name=vm_name)
            with pytest.raises(CommandError) as refused:
                guest.counters()
            assert refused.value.category == "OpenError"
            assert host.vm(vm_name).state == "Running"
            host.wait_for(vm_name, lambda vm: vm.heartbeat.startswith("Ok"), 20, "guest up")
            assert guest.counters().total_mb >= 512
            wrong = Guest(DirectChannel(session, vm_name, GuestCredentials("guest", Secret("x"))))
            with pytest.raises(CommandError, match="credential is invalid") as bad:
                wrong.counters()
            assert bad.value.category == "OpenError"
        finally:
            host.remove_vm(vm_name)


def test_item9_duplicate_names_are_refused_by_the_harness_not_by_hyperv(
    http_emulator: Emulator, vm_name: str
) -> None:
    """Item 9: Hyper-V allows two VMs with one name; the harness refuses to create a second
    and, if one appears, refuses to act on the name rather than on the wrong VM."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(vm_name, memory(), run_id="item9")
        try:
            with pytest.raises(CommandError, match="already exists"):
                host.create_vm(vm_name, memory(), run_id="item9")
            session.cmdlet("New-VM", Name=vm_name, NoVHD=True)  # Hyper-V itself allows it
            with pytest.raises(InvalidArgumentError, match="2 VMs are named"):
                host.vm(vm_name)
        finally:
            for vm in http_emulator.emu.host.find_vms("*"):
                if vm.name == vm_name:
                    http_emulator.emu.host.remove(vm.id)


def test_item9_disks_checkpoints_and_restore(http_emulator: Emulator, vm_name: str) -> None:
    """Item 9: after a checkpoint the VM's disk is the .avhdx and removing the VM deletes the
    whole harness chain; restoring a running VM leaves it running; several matching
    checkpoints are an error; a failed create leaves no disk."""
    emulated = http_emulator.emu.host
    with http_emulator.session() as session:
        host = HyperVHost(session)
        disks_before = set(emulated.disks())
        with pytest.raises(CommandError):
            host.create_vm(
                "x" * 101,
                memory(),
                run_id="item9",
                template=http_emulator.emu.template_path("windows"),
            )
        assert set(emulated.disks()) == disks_before  # the failed New-VM's disk is gone
        host.create_vm(
            vm_name, memory(), run_id="item9", template=http_emulator.emu.template_path("windows"),
            switch=SWITCH,
        )  # fmt: skip
        try:
            base = emulated.get_vm(vm_name).vhd_path
            # Standard: a checkpoint with the running state, which restore brings back running
            session.cmdlet("Set-VM", Name=vm_name, CheckpointType="Standard")
            host.start_vm(vm_name, heartbeat_deadline=20)
            host.checkpoint(vm_name, "cp[1]")
            host.checkpoint(vm_name, "cp[2]")
            avhdx = emulated.get_vm(vm_name).vhd_path
            assert avhdx.lower().endswith(".avhdx") and avhdx != base
            # Remote output is depth-1: the drives arrive as their strings, not their paths.
            [drive] = session.cmdlet("Get-VM", Name=vm_name)[0].adapted_properties["HardDrives"]
            assert drive.startswith("HardDiskDrive (Name = 'Hard Drive on SCSI controller")
            with pytest.raises(InvalidArgumentError, match="2 checkpoints match"):
                session.cmdlet("Restore-VMCheckpoint", VMName=vm_name, Name="cp*", Confirm=False)
            host.restore(vm_name, "cp[1]")  # exact name, though it holds brackets
            assert host.vm(vm_name).state == "Running"  # saved, applied, started again
            assert emulated.get_vm(vm_name).vhd_path not in (avhdx, base)
        finally:
            host.remove_vm(vm_name)
        assert base not in emulated.disks()
        assert not any(d.lower().endswith(".avhdx") and "dmh-" in d for d in emulated.disks())
        assert set(emulated.disks()) == disks_before


def test_item9_process_ids_are_int64(http_emulator: Emulator, vm_name: str) -> None:
    """Item 9: guest-ops writes ProcessId as Int64 ([int64]$p.Id); so does the emulator."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            handler = http_emulator.recorder.inner
            vm = http_emulator.emu.host.get_vm(vm_name)
            start = guest_operation.get("StartProcess")
            assert start is not None
            started = start(
                handler,
                vm,
                http_emulator.emu.host.guest(vm.id),
                {
                    "filepath": PYTHON,
                    "argumentlist": ["-c", "pass"],
                    "workingdirectory": GUEST_ROOT,
                },
                GuestOpsFacts.designed(),
            )
            assert isinstance(started["ProcessId"], PSInt64)
            result = run_guest_operation(handler, vm, "ProcessResult", {"Key": started["Key"]})
            assert isinstance(result["ProcessId"], PSInt64)
