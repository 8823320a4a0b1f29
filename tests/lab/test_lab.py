"""Acceptance on a real Hyper-V host with a tiny VM: every harness script runs at least once
through real PowerShell (issue 13). Skipped unless the environment names a lab:

    DMH_TEST_HOST=psrp://user@hyperv01.lab:5986?cert_validation=/path/ca.pem
    DMH_HOST_PASSWORD=...             (or DMH_HOST_PASSWORD_<HOST>, or keyring 'dm-harness')
    DMH_TEST_TEMPLATE=C:\\VMs\\tiny-ws2022.vhdx  (Windows guest with integration services)
    DMH_GUEST_USERNAME / DMH_GUEST_PASSWORD     (an administrator in that guest)
    DMH_TEST_GUEST_PYTHON=C:\\Python312\\python.exe   (a Python in the template)
    DMH_TEST_SWITCH=LabSwitch         (optional: also test the WinRM channel and vm-address)
    DMH_TEST_BOOT_TIMEOUT=300         (optional)

The VM is tagged with a run id and removed afterwards (remove-vm, disks included).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from harness.config import HostTarget
from harness.deadline import wait_until
from harness.hyperv.guest import (
    DirectChannel,
    Guest,
    GuestCredentials,
    WinRMChannel,
    guest_target,
)
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.levers import LoadCommand, MemoryLevers
from harness.sampler import Sampler
from harness.settings import MemorySettings
from harness.timeline import Timeline

NEEDED = ("DMH_TEST_HOST", "DMH_TEST_TEMPLATE", "DMH_GUEST_USERNAME", "DMH_TEST_GUEST_PYTHON")
pytestmark = pytest.mark.skipif(
    any(not os.environ.get(n) for n in NEEDED),
    reason="lab acceptance: set " + ", ".join(NEEDED) + " (see the module docstring)",
)
LOAD = "import sys, time\nblock = bytearray(int(sys.argv[1]) << 20)\nfor i in range(0, len(block), 4096): block[i] = 1\nprint('held', flush=True)\ntime.sleep(600)\n"  # noqa: E501
CRASH = "import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[HyperVHost, str, Guest]]:
    target = HostTarget.parse(os.environ["DMH_TEST_HOST"])
    boot = float(os.environ.get("DMH_TEST_BOOT_TIMEOUT", "300"))
    with HostSession(target) as session:
        host = HyperVHost(session)
        host.facts()  # host-facts: refuses hosts before 2012 R2, naming what they lack
        run_id = uuid.uuid4().hex[:12]
        name = f"dmh-lab-{run_id}"
        settings = MemorySettings.build(startup="512MB", minimum="512MB", maximum="2GB")
        host.create_vm(  # new-vm-from-template
            name,
            settings,
            run_id=run_id,
            template=os.environ["DMH_TEST_TEMPLATE"],
            switch=os.environ.get("DMH_TEST_SWITCH") or None,
        )
        try:
            host.start_vm(name, heartbeat_deadline=boot)
            guest = Guest(DirectChannel(session, name, GuestCredentials.from_env()))
            yield host, name, guest
        finally:
            host.remove_vm(name)  # remove-vm
            assert name not in [vm.name for vm in host.vms()]


def test_host_facts_and_a_sample(lab: tuple[HyperVHost, str, Guest]) -> None:
    host, name, guest = lab
    facts = host.facts(refresh=True)
    assert facts.memory_capacity > 0 and facts.balancer_available_mb > 0
    sample = Sampler(host, name, Timeline(), guest=guest).tick()  # sample-vm, one round trip
    assert sample.host is not None and sample.host.assigned_mb >= 512
    assert sample.host.guest_visible_mb > 0  # the VM's CIM counter instance was found
    assert sample.guest is not None and sample.guest.total_mb >= 400
    assert sample.guest.max_memory_mb == 2048  # the DM integration service's class


def test_app_output_exit_code_and_stop(lab: tuple[HyperVHost, str, Guest]) -> None:
    _host, _name, guest = lab
    python = os.environ["DMH_TEST_GUEST_PYTHON"]
    guest.write_file("lab/crash.py", CRASH.encode())  # vm-invoke + guest-ops WriteFile
    crashed = guest.start_process(python, ["lab/crash.py"])
    result = wait_until(lambda: (r := crashed.poll()).exit_code is not None and r, 60, what="exit")
    assert result.exit_code == 3 and "boom" in crashed.output
    assert crashed.stop() == 3  # already exited: no NativeCommandError
    sleeper = guest.start_process(python, ["-c", "import time; time.sleep(600)"])
    assert sleeper.stats().running
    sleeper.stop()
    assert not sleeper.stats().running


def test_hot_add_then_balloon_removal(lab: tuple[HyperVHost, str, Guest]) -> None:
    host, name, guest = lab
    python = os.environ["DMH_TEST_GUEST_PYTHON"]
    guest.write_file("lab/load.py", LOAD.encode())
    timeline = Timeline()
    levers = MemoryLevers(
        host, name, timeline, guest=guest, load=LoadCommand(python, ["lab/load.py"])
    )
    added = levers.force_hot_add("256MB")
    assert added.after_mb - added.before_mb >= 256
    removed = levers.force_balloon("128MB")
    assert removed.before_mb - removed.after_mb >= 128


def test_checkpoint_restore_and_the_winrm_channel(lab: tuple[HyperVHost, str, Guest]) -> None:
    host, name, _guest = lab
    host.checkpoint(name, "lab[1]")
    host.restore(name, "lab[1]")  # an exact name, though it holds brackets
    if not os.environ.get("DMH_TEST_SWITCH"):
        pytest.skip("set DMH_TEST_SWITCH to test vm-address and the WinRM channel")
    host.start_vm(name, heartbeat_deadline=float(os.environ.get("DMH_TEST_BOOT_TIMEOUT", "300")))
    target = guest_target(host, name, GuestCredentials.from_env())  # vm-address
    with HostSession(target) as session:
        winrm = Guest(WinRMChannel(session))
        assert winrm.channel.quota_mb() > 0  # type: ignore[attr-defined]
        assert winrm.counters().total_mb >= 400
