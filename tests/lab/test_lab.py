"""Acceptance on a real Hyper-V host with a tiny VM: every harness script runs at least once
through real PowerShell (issue 13): the checks of `dmh doctor --smoke` (harness/smoke.py),
and the WinRM channel. Skipped unless the environment names a lab:

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
from harness.hyperv.guest import (
    DirectChannel,
    Guest,
    GuestCredentials,
    WinRMChannel,
    guest_target,
)
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.settings import MemorySettings
from harness.smoke import Smoke, run_smoke

NEEDED = ("DMH_TEST_HOST", "DMH_TEST_TEMPLATE", "DMH_GUEST_USERNAME", "DMH_TEST_GUEST_PYTHON")
pytestmark = pytest.mark.skipif(
    any(not os.environ.get(n) for n in NEEDED),
    reason="lab acceptance: set " + ", ".join(NEEDED) + " (see the module docstring)",
)


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


def test_the_smoke_checks_pass_on_the_lab_host() -> None:
    """`dmh doctor --smoke`'s checks: host facts, new-vm-from-template, start, sample-vm,
    guest-ops (write, exit code and stderr, stop), hot-add, balloon removal, checkpoint and
    restore, remove-vm."""
    lines: list[str] = []
    with HostSession(HostTarget.parse(os.environ["DMH_TEST_HOST"])) as session:
        smoke = Smoke(
            HyperVHost(session),
            os.environ["DMH_TEST_TEMPLATE"],
            os.environ["DMH_TEST_GUEST_PYTHON"],
            GuestCredentials.from_env(),
            boot_timeout=float(os.environ.get("DMH_TEST_BOOT_TIMEOUT", "300")),
            print_line=lines.append,
        )
        assert run_smoke(smoke), "\n".join(lines)


def test_vm_address_and_the_winrm_channel(lab: tuple[HyperVHost, str, Guest]) -> None:
    host, name, _guest = lab
    if not os.environ.get("DMH_TEST_SWITCH"):
        pytest.skip("set DMH_TEST_SWITCH to test vm-address and the WinRM channel")
    target = guest_target(host, name, GuestCredentials.from_env())  # vm-address
    with HostSession(target) as session:
        winrm = Guest(WinRMChannel(session))
        assert winrm.channel.quota_mb() > 0  # type: ignore[attr-defined]
        assert winrm.counters().total_mb >= 400
