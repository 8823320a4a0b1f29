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

The VM is tagged with a run id and removed afterwards (remove-vm, disks included and checked).

Host versions: Windows Server 2016, 2019 and 2022 (harness.hyperv.host.SUPPORTED); an older
host fails the first check with the error naming what it lacks. Which host versions each
script runs on is in tests/static/test_mutations.py (HOST_VERSIONS, from the per-version
cmdlet signatures).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator

import pytest

from harness.config import HostTarget
from harness.deadline import wait_until
from harness.errors import HarnessError
from harness.hyperv.guest import (
    DirectChannel,
    Guest,
    GuestCredentials,
    GuestProcess,
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
        host.facts()  # host-facts: refuses hosts before 2016, naming what they lack
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
            assert host.remove_vm(name) == []  # remove-vm: every disk really deleted
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


def test_the_real_host_limits(lab: tuple[HyperVHost, str, Guest]) -> None:
    """Issue 23 on a real host: a file over 10 MB arrives whole (in chunks), a program that
    exits at once keeps its exit code and stderr, a child holding the inherited stderr does not
    block reading it, and no script leaves a variable in the host's runspace."""
    host, _name, guest = lab
    python = os.environ["DMH_TEST_GUEST_PYTHON"]
    content = os.urandom(12 << 20)
    guest.write_file("dmh-lab/big.bin", content)
    digest = (
        "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"
    )
    assert _finish(guest.start_process(python, ["-c", digest, "dmh-lab/big.bin"])).strip() == (
        hashlib.sha256(content).hexdigest()
    )
    early = guest.start_process(
        python, ["-S", "-c", "import sys; sys.stderr.write('e'); sys.exit(4)"]
    )
    _finish(early)
    assert early.poll().exit_code == 4 and early.stderr == "e"
    child = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(20)']); sys.stderr.write('p'); sys.exit(5)"  # noqa: E501
    parent = guest.start_process(python, ["-c", child])
    _finish(parent)
    assert parent.poll().exit_code == 5 and parent.stderr == "p"
    with pytest.raises(HarnessError):
        host.session.cmdlet("Get-Variable", Name="GuestPassword", Scope="Global", ValueOnly=True)


def _finish(process: GuestProcess, timeout: float = 60.0) -> str:
    wait_until(lambda: process.poll().exit_code is not None or None, timeout, what="the app")
    return process.output
