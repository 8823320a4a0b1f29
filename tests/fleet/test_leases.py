"""Capacity leases kept on the host, exercised on a fleet of embedded emulators with the real
client and real controller processes: concurrent controllers never exceed a host's budget, a
SIGKILLed controller's leases expire (while a live one's heartbeat keeps its own) and `dmh
sweep` finds them, and a full lab waits with progress lines, then gives a broken (inconclusive)
outcome naming each host's reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.capacity import CapacityError, HostLeases, lease_in_lab
from harness.deadline import wait_until
from harness.errors import InfrastructureError
from harness.verdict import failure_kind
from tests.embedded import REPO
from tests.fleet import fleets
from tests.fleet.fleets import Controller, Fleet

controllers = fleets.controllers  # the fixture, from the fleets module
fleet_factory = fleets.fleet_factory  # the fixture, from the fleets module

RUN = "0123456789abcdef"


def _leases(fleet: Fleet, name: str, ttl_s: int = 60) -> HostLeases:
    return HostLeases.of(fleet.session(name), fleet.inventory.named(name), ttl_s=ttl_s)


def test_two_controllers_leasing_at_once_never_exceed_the_hosts_budget(
    fleet_factory: Callable[..., Fleet],
    controllers: Callable[..., Controller],
    tmp_path: Path,
) -> None:
    fleet = fleet_factory("2022:16GB")
    entry = fleet.inventory.named("emu-2022")
    assert entry.budget_mb == 14336  # 16 GB less the 2 GB reserve: room for 7 leases of 2 GB
    go = tmp_path / "go"
    both = [
        controllers(fleet, "emu-2022", "--mb", "2048", "--count", "8", "--go", str(go))
        for _ in range(2)
    ]
    for controller in both:
        assert json.loads(controller.report()) == {"ready": True}
    go.touch()  # both lease at once, each asking for 8 × 2 GB
    reports = [json.loads(controller.report()) for controller in both]

    granted = sum(len(r["granted"]) for r in reports)
    assert granted == 7, reports  # every lease that fits, and not one more
    seen = [mb for r in reports for mb in r["leased_mb_seen"]]
    assert max(seen) <= entry.budget_mb
    assert sorted(seen) == [2048 * n for n in range(1, 8)], "each grant saw the others' leases"
    refused = [why for r in reports for why in r["refused"]]
    assert len(refused) == 9 and all("budget is short" in why for why in refused)
    host = _leases(fleet, "emu-2022")
    assert host.list().leased_mb == 7 * 2048

    assert [controller.finish() for controller in both] == [0, 0]
    assert host.list().leases == ()


def test_a_killed_controllers_leases_expire_and_its_capacity_returns(
    fleet_factory: Callable[..., Fleet], controllers: Callable[..., Controller]
) -> None:
    fleet = fleet_factory("2019:8GB")  # budget 6144 MB
    killed = controllers(fleet, "emu-2019", "--mb", "2048", "--count", "2", "--ttl", "2")
    mine = json.loads(killed.report())["granted"]
    # A TTL of 4 s: renewed every 1.3 s, so a loaded machine's late beat still comes in time.
    alive = controllers(fleet, "emu-2019", "--mb", "2048", "--count", "1", "--ttl", "4")
    kept = json.loads(alive.report())["granted"]
    assert len(mine) == 2 and len(kept) == 1
    host = _leases(fleet, "emu-2019")
    refused = host.acquire(2048, RUN)
    assert not refused.granted and "budget is short" in refused.reason

    killed.kill()  # no release, no more heartbeats
    expired = wait_until(
        lambda: {lease.id for lease in host.list().expired} >= set(mine),
        30.0,
        what="the killed controller's leases to expire",
    )
    assert expired
    (first,) = [lease for lease in host.list().leases if lease.id == kept[0]]
    wait_until(lambda: time.time() > first.created + 5, 30.0, what="the live lease's first TTL")
    live = {lease.id for lease in host.list().leases}
    assert live == set(kept), "the live controller's heartbeat keeps its lease past its TTL"

    listed = _sweep(fleet)
    assert all(f"expired lease {lease_id} on emu-2019" in listed for lease_id in mine), listed
    assert f"kept lease {kept[0]} on emu-2019" in listed
    removed = _sweep(fleet, "--yes")
    assert all(f"removed lease {lease_id}" in removed for lease_id in mine), removed
    assert host.list().expired == ()

    answer = host.acquire(4096, RUN)  # the killed run's 4 GB are back
    assert answer.granted and answer.leased_mb == 6144
    assert alive.finish() == 0


def _sweep(fleet: Fleet, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", "--dm-hosts", str(fleet.path), *args],
        capture_output=True, text=True, env=fleet.env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_full_lab_waits_with_progress_lines_then_is_broken_with_each_hosts_reason(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory("2019:4GB,2022:4GB")  # budgets 3072 MB each
    hosts = [_leases(fleet, name) for name in ("emu-2019", "emu-2022")]
    held = [host.acquire(3072, RUN) for host in hosts]
    assert all(answer.granted for answer in held)
    heard: list[str] = []

    with pytest.raises(CapacityError) as caught:
        lease_in_lab(hosts, 2048, RUN, wait_s=1.5, poll_s=0.1,
                     progress=lambda line, _: heard.append(line), progress_every_s=0.3)  # fmt: skip
    message = str(caught.value)
    assert "emu-2019: its budget is short: 3072 MB of 3072 MB leased, 2048 MB asked" in message
    assert "emu-2022: its budget is short" in message
    assert heard and all(line.startswith("a host with 2048 MB of capacity for a VM (lab full: "
                                         "emu-2019: its budget is short") for line in heard)  # fmt: skip
    assert isinstance(caught.value, InfrastructureError)
    assert failure_kind("setup", caught.value) == "broken"  # the run: INCONCLUSIVE, not failed

    assert hosts[1].release(held[1].lease_id)
    placement = lease_in_lab(hosts, 2048, RUN, wait_s=10.0, poll_s=0.1)
    assert placement.host.name == "emu-2022" and placement.mb == 2048


def test_the_vm_limit_and_the_hosts_free_memory_refuse_a_lease_too(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory("2022:8GB", vm_limit=2)
    host = _leases(fleet, "emu-2022")
    assert host.acquire(512, RUN).granted and host.acquire(512, RUN).granted
    third = host.acquire(512, RUN)
    assert not third.granted and "VM limit is reached (2 of 2 leased)" in third.reason
    # No budget and no VM limit: the host's free memory (read from it) less the reserve decides.
    unlimited = HostLeases(host.session, name="emu-2022", budget_mb=0, vm_limit=0, reserve_mb=2048)
    big = unlimited.acquire(7000, RUN)
    assert not big.granted
    assert "its free memory is short: 8192 MB free, 2048 MB reserve, 7000 MB asked" in big.reason


def test_a_retried_acquire_is_one_lease(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory("2016:4GB")
    host = _leases(fleet, "emu-2016")
    first = host.acquire(1024, RUN, lease_id="a" * 32)
    again = host.acquire(1024, RUN, lease_id="a" * 32)
    assert first.granted and again.granted and again.leased_mb == 1024
