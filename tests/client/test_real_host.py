"""The client against a real Hyper-V host, when the environment names one:

    DMH_TEST_HOST=psrp://user@hyperv01.lab:5986?cert_validation=/path/ca.pem
    DMH_HOST_PASSWORD=...            (or DMH_HOST_PASSWORD_<HOST>, or keyring 'dm-harness')
    DMH_TEST_TEMPLATE=C:\\VMs\\template.vhdx   (a bootable VHDX with integration services)
    DMH_TEST_BOOT_TIMEOUT=300        (seconds until the heartbeat is OK; optional)

Skipped otherwise. VMs it creates are tagged with a run id and removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from harness.config import HostTarget
from harness.errors import ConfigError, RuntimeChangeError
from harness.hyperv.host import HyperVHost, version_from_build
from harness.hyperv.session import HostSession
from harness.settings import HostVersion, MemoryChange, MemorySettings
from harness.units import MB

HOST_HELP = (
    "set DMH_TEST_HOST=psrp://user@host[:port][?options] and DMH_HOST_PASSWORD "
    "(or DMH_HOST_PASSWORD_<HOST>, or keyring service 'dm-harness') to test a real Hyper-V host"
)


@pytest.fixture(scope="module")
def real_host() -> Iterator[HyperVHost]:
    url = os.environ.get("DMH_TEST_HOST", "")
    if not url:
        pytest.skip(HOST_HELP)
    try:
        target = HostTarget.parse(url)
    except ConfigError as exc:  # never names the password, only where it should come from
        pytest.skip(f"{exc}; {HOST_HELP}")
    with HostSession(target) as session:
        yield HyperVHost(session)


@pytest.fixture
def template() -> str:
    path = os.environ.get("DMH_TEST_TEMPLATE", "")
    if not path:
        pytest.skip("set DMH_TEST_TEMPLATE to a template VHD(X) path on the host for VM tests")
    return path


def test_facts(real_host: HyperVHost) -> None:
    facts = real_host.facts()
    assert facts.computer_name
    assert facts.hyperv_version is version_from_build(facts.os_version)
    assert facts.memory_capacity > 1024 * MB
    assert facts.balancer_available_mb >= 0


def test_vm_from_template_with_a_runtime_change(real_host: HyperVHost, template: str) -> None:
    run_id = uuid.uuid4().hex[:12]
    name = f"dmh-client-test-{run_id}"
    settings = MemorySettings.build(startup="1GB", minimum="512MB", maximum="2GB")
    old = real_host.version in (HostVersion.V2008R2SP1, HostVersion.V2012)
    boot = float(os.environ.get("DMH_TEST_BOOT_TIMEOUT", "300"))
    try:
        vm = real_host.create_vm(
            name, settings, run_id=run_id, template=template, generation=1 if old else 2
        )
        assert vm.state == "Off" and vm.memory == settings
        assert real_host.leftovers(run_id) == [name]
        running = real_host.start_vm(name, heartbeat_deadline=boot)
        assert running.state == "Running"
        if real_host.version is HostVersion.V2008R2SP1:
            with pytest.raises(RuntimeChangeError):
                real_host.change_memory(name, MemoryChange(maximum=4096 * MB))
        else:
            changed = real_host.change_memory(name, MemoryChange(maximum=4096 * MB))
            assert real_host.vm(name).memory == changed
        real_host.stop_vm(name)
        assert real_host.vm(name).state == "Off"
    finally:
        real_host.remove_vm(name)
    assert real_host.leftovers(run_id) == []
