"""Issue 23: ten defects a real host shows and the emulator hid. The emulator now enforces each
limit (harness.emulator.cmdlets.realhost: what the received script text does on a real host),
so each test here failed against the client and scripts before their fix. Defects 1 and 10
(hosts before 2016, PowerShell 2.0) are tested in test_lifecycle.py with the other refusals.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from pypsrp.powershell import PowerShell

from harness.emulator.cmdlets.counters import perf_instance_name
from harness.emulator.cmdlets.realhost import MAX_RECEIVED_OBJECT
from harness.errors import CommandError, ObjectNotFoundError
from harness.hyperv.guest import guest_target
from harness.hyperv.host import HyperVHost, prop
from harness.hyperv.session import HostSession, int64, load_script

from .support import (
    PYTHON,
    Emulator,
    direct_guest,
    finish,
    guest_over,
    memory,
    running_emulator,
    running_vm,
    wait_for,
)


@pytest.mark.parametrize("channel", ["direct", "winrm"])
def test_defect2_a_file_over_10mb_reaches_the_guest_whole(
    http_emulator: Emulator, vm_name: str, channel: str
) -> None:
    content = os.urandom(12 << 20)  # one base64 parameter of it would be 16 MB
    with (
        http_emulator.session() as session,
        running_vm(host := HyperVHost(session), vm_name, http_emulator),
        guest_over(channel, http_emulator, host, vm_name) as guest,
    ):
        guest.write_file("dmh-big/app.bin", content)
        digest = (
            "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"
        )
        process = guest.start_process(PYTHON, ["-c", digest, "dmh-big/app.bin"])
        assert finish(process) == 0
        assert process.output.strip() == hashlib.sha256(content).hexdigest()


def test_defect2_the_emulator_refuses_one_object_over_10mb_at_host_and_guest(
    http_emulator: Emulator, vm_name: str
) -> None:
    big = "A" * (MAX_RECEIVED_OBJECT + 1)
    with (
        http_emulator.session() as session,
        running_vm(host := HyperVHost(session), vm_name, http_emulator),
    ):
        with pytest.raises(CommandError, match=r"host's endpoint.*exceeded allowed maximum"):
            session.script("vm-address", VMName=big)
        target = guest_target(host, vm_name, http_emulator.credentials)
        with HostSession(target, retries=0) as guest_session:
            path = "C:\\dmh\\big.txt"
            arguments = {"Path": path, "ContentBase64": big, "Offset": 0}
            with pytest.raises(CommandError, match=r"guest's endpoint.*exceeded allowed maximum"):
                guest_session.script("guest-ops", Operation="WriteFile", Arguments=arguments)


def test_defect3_an_app_that_exits_at_once_keeps_its_exit_code_and_stderr(
    http_emulator: Emulator, vm_name: str
) -> None:
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        guest = direct_guest(session, vm_name, http_emulator)
        code = "import sys; sys.stderr.write('early\\n'); sys.exit(4)"
        process = guest.start_process(PYTHON, ["-S", "-c", code])
        assert finish(process) == 4
        assert process.stderr == "early\n"


def test_defect6_stderr_is_read_while_a_child_still_holds_it(
    http_emulator: Emulator, vm_name: str
) -> None:
    parent = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(8)'])\n"
        "sys.stderr.write('parent done\\n'); sys.stderr.flush()\n"
        "print('child started', flush=True)\n"
        "time.sleep(1.0)\n"
        "sys.exit(5)\n"
    )
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        guest = direct_guest(session, vm_name, http_emulator)
        process = guest.start_process(PYTHON, ["-c", parent])
        wait_for(lambda: "child started" in (process.poll() and process.output), 15, "the child")
        assert process.stats().running  # the host sees the tree, the child included
        assert finish(process) == 5  # while the child (8 s) still holds the inherited stderr
        assert process.stderr == "parent done\n"


def test_defect8_output_is_decoded_in_the_programs_code_page(
    http_emulator: Emulator, vm_name: str
) -> None:
    code = (
        "import sys\n"
        "sys.stdout.buffer.write('café ünï\\n'.encode('cp1252'))\n"
        "sys.stderr.buffer.write('naïve\\n'.encode('cp1252'))\n"
    )
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        guest = direct_guest(session, vm_name, http_emulator)
        process = guest.start_process(PYTHON, ["-c", code], code_page=1252)
        assert finish(process) == 0
        assert process.output == "café ünï\nnaïve\n"
        assert process.stderr == "naïve\n"  # error offsets count bytes of the code page


def test_defect5_the_winrm_channel_reaches_a_stock_guest_listener(
    https_emulator: Emulator, vm_name: str
) -> None:
    """The host's endpoint is HTTPS; a stock guest's listener is HTTP 5985 (the emulator's
    guest listeners too), and the host's vm-address answer says nothing about TLS."""
    with (
        https_emulator.session() as session,
        running_vm(host := HyperVHost(session), vm_name, https_emulator),
    ):
        target = guest_target(host, vm_name, https_emulator.credentials)
        assert target.ssl is False
        with guest_over("winrm", https_emulator, host, vm_name) as guest:
            assert guest.counters().total_mb > 0


def test_defect9_a_script_leaves_no_variable_in_the_hosts_runspace(
    http_emulator: Emulator, vm_name: str
) -> None:
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        direct_guest(session, vm_name, http_emulator).counters()  # vm-invoke, GuestPassword
        with pytest.raises(ObjectNotFoundError, match="GuestPassword"):
            session.cmdlet("Get-Variable", Name="GuestPassword", Scope="Global", ValueOnly=True)
        # What the emulator does with a script sent without UseLocalScope (pypsrp's default),
        # through the same pool (the private _open: the session offers no such door).
        ps = PowerShell(session._open())
        ps.add_script(load_script("vm-address")).add_parameter("VMName", vm_name)
        ps.invoke()
        assert session.cmdlet("Get-Variable", Name="VMName", ValueOnly=True) == [vm_name]


def test_defect7_remove_vm_reports_a_disk_it_could_not_delete(
    http_emulator: Emulator, vm_name: str
) -> None:
    """A's differencing disk is the parent of running B's: Windows refuses to delete it."""
    child = f"{vm_name}-child"
    with http_emulator.session() as session:
        host = HyperVHost(session)
        host.create_vm(
            vm_name, memory(), run_id="t23", template=http_emulator.emu.template_path("windows")
        )
        disk = http_emulator.emu.host.get_vm(vm_name).vhd_path
        host.create_vm(child, memory(), run_id="t23", template=disk)
        try:
            host.start_vm(child, heartbeat_deadline=20)
            left = host.remove_vm(vm_name)
            assert len(left) == 1 and left[0].startswith(disk)
            assert "being used by another process" in left[0]
        finally:
            assert host.remove_vm(child) == []  # its chain, the parent disk included, goes


def test_defect4_counters_of_a_vm_whose_name_perf_escapes(
    http_emulator: Emulator, vm_name: str
) -> None:
    name = f"{vm_name}(1)#a/b"
    instance = perf_instance_name(name)
    assert instance == f"{vm_name}[1]_a_b"
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), name, http_emulator),
    ):
        counters = prop(session.script("sample-vm", VMName=name)[0], "Counters")
        assert int(counters["PhysicalMemory"]) > 0
        path = f"\\Hyper-V Dynamic Memory VM({instance})\\Physical Memory"
        [sample_set] = session.cmdlet("Get-Counter", Counter=path)
        assert prop(sample_set, "CounterSamples")


def test_defect1_the_emulator_gates_powershell_direct_and_templates_before_2016() -> None:
    with running_emulator(version="2012R2") as old, old.session() as session:
        name = "gate-2012r2"
        template = old.emu.template_path("windows")
        session.script(
            "new-vm-from-template", Name=name, StartupBytes=int64(1 << 30), TemplatePath=template
        )
        template_ca = "MicrosoftUEFICertificateAuthority"
        with pytest.raises(CommandError, match="SecureBootTemplate"):
            session.script("vm-secure-boot", VMName=name, SecureBoot=template_ca)
        session.script("vm-secure-boot", VMName=name, SecureBoot="off")  # ValidateSet: any case
        session.cmdlet("Start-VM", Name=name)
        # New-PSSession -VMId does not exist on 2012 R2, whatever the guest's state.
        with pytest.raises(CommandError, match="VMId"):
            session.script(
                "vm-invoke",
                VMName=name,
                GuestScript=load_script("guest-ops"),
                Operation="Counters",
                GuestUser=old.credentials.username,
                GuestPassword=old.credentials.password.reveal(),
            )
