"""Sampling a fleet: `sample-vms` answers many VMs in one round trip per host, with the values
`sample-vm` gives for each; `FleetSampler` ticks every host in a thread of its own. Two
embedded emulators (different Hyper-V versions) over loopback with the real client."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from harness.fleetsampler import FleetSampler, sample_vms
from harness.hyperv.host import HyperVHost
from harness.sampler import Sampler
from harness.settings import MemorySettings
from harness.timeline import HostSample, Timeline
from tests.embedded import Emulator, emulator_pool

pytestmark = pytest.mark.xdist_group("fleet_sampler")  # one worker: the module's emulators
ODD = "fleet 'quoted'; Remove-VM * #(1)"  # a name that would break a spliced script


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, tuple[Emulator, HyperVHost, list[str]]]]:
    """Two hosts, three running VMs each (one with a hostile name), one VM off."""
    settings = MemorySettings.build(startup="512MB", minimum="256MB", maximum="2GB")
    with emulator_pool() as start:
        hosts: dict[str, tuple[Emulator, HyperVHost, list[str]]] = {}
        for version in ("2019", "2022"):
            emulator = start(version=version)
            host = HyperVHost(emulator.session())
            names = [f"fleet-{version}-{i}" for i in range(3)] + [f"{ODD} {version}"]
            for name in names:
                host.create_vm(
                    name, settings, run_id="fleet", template=emulator.emu.template_path("windows")
                )
                if not name.endswith("-2"):
                    host.start_vm(name, heartbeat_deadline=30)
            hosts[version] = (emulator, host, names)
        yield hosts
        for _, host, _ in hosts.values():
            host.session.close()


def test_one_round_trip_answers_every_vm_as_sample_vm_does(fleet: dict) -> None:
    emulator, host, names = fleet["2022"]
    before = len(emulator.recorder.statements)
    found = sample_vms(host, names)
    assert emulator.recorder.statements[before:] == ["script sample-vms"]  # one round trip
    assert list(found) == names
    for name in names:
        single = Sampler(host, name, Timeline()).tick().host
        batched = found[name]
        assert isinstance(batched, HostSample) and single is not None
        assert (batched.state, batched.minimum_mb, batched.maximum_mb, batched.buffer) == (
            single.state, single.minimum_mb, single.maximum_mb, single.buffer,
        )  # fmt: skip
        assert abs(batched.assigned_mb - single.assigned_mb) <= 128  # the balancer moves on
    off = found["fleet-2022-2"]
    assert isinstance(off, HostSample) and off.state == "Off" and off.assigned_mb == 0
    running = found["fleet-2022-0"]
    assert isinstance(running, HostSample) and running.state == "Running"
    assert running.guest_visible_mb > 0  # the DM counters came along


def test_a_missing_vm_is_an_error_beside_the_others(fleet: dict) -> None:
    _, host, names = fleet["2019"]
    found = sample_vms(host, [names[0], "no-such-vm", names[3]])
    assert found["no-such-vm"] == (
        'Hyper-V was unable to find a virtual machine with name "no-such-vm".'
    )
    assert isinstance(found[names[0]], HostSample) and isinstance(found[names[3]], HostSample)


def test_the_fleet_sampler_ticks_each_host_once_per_interval(fleet: dict) -> None:
    hosts = {label: host for label, (_, host, _) in fleet.items()}
    vms = {label: names for label, (_, _, names) in fleet.items()}
    before = {label: len(e.recorder.statements) for label, (e, _, _) in fleet.items()}
    sampler = FleetSampler(hosts, vms, interval=0.2)
    started = time.monotonic()
    with sampler:
        time.sleep(1.5)  # the sampler runs on its own schedule; this is its running time
    elapsed = time.monotonic() - started
    for label, (emulator, _, names) in fleet.items():
        sent = emulator.recorder.statements[before[label] :]
        assert set(sent) == {"script sample-vms"}
        ticks = sampler.stats[label].ticks
        assert len(sent) == ticks  # one round trip per host per tick
        assert 4 <= ticks <= elapsed / 0.2 + 1
        for name in names:
            samples = sampler.timelines[label][name].samples
            assert len(samples) == ticks
            assert all(b.t > a.t for a, b in itertools.pairwise(samples))
        assert sampler.stats[label].failed_ticks == sampler.stats[label].vm_errors == 0
