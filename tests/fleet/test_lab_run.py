"""Runs of the plugin on a lab of many hosts (`--dm-hosts`): a small run with `-n 2` on a
two-host fleet puts VMs on both hosts (each worker leases capacity first) and each record names
its host and the version read from it; a run on a full lab waits, then is INCONCLUSIVE with the
reason; `--dm-host` with `--dm-hosts` is a usage error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.capacity import HostLeases
from tests.embedded import PLUGIN_ARGS
from tests.fleet import fleets
from tests.fleet.fleets import Fleet

fleet_factory = fleets.fleet_factory  # the fixture, from the fleets module

TESTS = """
import pytest

@pytest.mark.dm_memory(startup="512MB", minimum="512MB", maximum="1GB")
@pytest.mark.parametrize("i", range({count}))
def test_vm(dm_vm, dm_host, i):
    assert dm_host.host.vm(dm_vm.name).state == "Running"
"""


def run(
    fleet: Fleet, directory: Path, *args: str, count: int = 4, by_env: bool = False
) -> subprocess.CompletedProcess[str]:
    """The tiny suite with --dm-hosts (or, `by_env`, DMH_HOSTS) naming the fleet's inventory."""
    (directory / "test_tiny.py").write_text(TESTS.format(count=count), encoding="utf-8")
    env = {**fleet.env, "DMH_HOSTS": str(fleet.path)} if by_env else fleet.env
    lab = () if by_env else ("--dm-hosts", str(fleet.path))
    return subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:randomly", "test_tiny.py",
         *lab, "--dm-guest-os", "windows", "--dm-report-dir", str(directory / "out"), *args],
        capture_output=True, text=True, env=env, cwd=directory, timeout=600,
    )  # fmt: skip


def records(directory: Path) -> list[dict[str, object]]:
    found = sorted((directory / "out" / "latest" / "records").glob("*.json"))
    read = [json.loads(path.read_text(encoding="utf-8")) for path in found]
    return [r for r in read if "nodeid" in r]  # the tests' records, not the run's evidence


def test_two_workers_put_vms_on_both_hosts_and_records_name_the_host(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory("2019:8GB,2022:8GB")
    done = run(fleet, tmp_path, "-n", "2", "--dm-keep", "always", "--dm-host-labels", "emulator")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ran = records(tmp_path)
    assert len(ran) == 4 and all(r["outcome"] == "passed" for r in ran), ran
    said = [r["target"] for r in ran if isinstance(r["target"], dict)]
    targets = {(t["label"], t["hyperv_version"]) for t in said}
    # Emulated hosts (labelled so by the fleet) keep the emulator's caveat in every report.
    assert {t["kind"] for t in said} == {"emulator"}
    labels = {f"{h.name} ({h.url.split('@')[1].split('?')[0]})": h.name for h in fleet.inventory}
    assert {(labels[label], version) for label, version in targets} == {
        ("emu-2019", "2019"),
        ("emu-2022", "2022"),
    }, targets
    assert fleet.fleet is not None
    for name in ("emu-2019", "emu-2022"):
        vms = [vm.name for vm in fleet.fleet.emulator(name).host.find_vms("*")]
        assert vms and all(f"-{name}-" in vm for vm in vms), vms  # kept: named for their host
        with fleet.session(name) as session:
            leases = HostLeases.of(session, fleet.inventory.named(name)).list()
        assert leases.leases == (), "the run's leases are released when it ends"


def test_a_plan_cells_host_label_places_its_vms_on_a_matching_host(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    """`dmh certify --plan` passes a cell's host label as --dm-host-label: on a lab it is a
    placement rule (a version read from the host), so every VM lands on the 2019 host; a
    version no host runs breaks the tests, naming each host's version."""
    fleet = fleet_factory("2019:8GB,2022:8GB")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    done = run(fleet, tmp_path / "a", "-n", "2", "--dm-keep", "always", "--dm-host-label", "2019")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {r["target"]["hyperv_version"] for r in records(tmp_path / "a")} == {"2019"}  # type: ignore[index]
    assert fleet.fleet is not None
    assert not fleet.fleet.emulator("emu-2022").host.find_vms("*")

    done = run(fleet, tmp_path / "b", "--dm-host-label", "2016", count=1)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(tmp_path / "b")
    assert record["outcome"] == "broken"
    assert "emu-2022: runs Hyper-V 2022, the cell asks for 2016" in str(record["message"])


def test_a_run_on_a_full_lab_waits_then_is_inconclusive_with_the_reason(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory("2022:4GB")  # budget 3072 MB
    with fleet.session("emu-2022") as session:
        full = HostLeases.of(session, fleet.inventory.named("emu-2022")).acquire(3072, "f" * 16)
        assert full.granted
        done = run(fleet, tmp_path, "--dm-lease-wait", "2", count=1, by_env=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(tmp_path)
    assert record["outcome"] == "broken"
    assert "CapacityError" in str(record["message"])
    assert "emu-2022: its budget is short: 3072 MB of 3072 MB leased, 1024 MB asked" in str(
        record["message"]
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    verdict = json.dumps(summary["verdict"])
    assert '"inconclusive"' in verdict and "its budget is short" in verdict, verdict


def test_one_host_and_a_lab_are_never_both_given(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory("2022:4GB")
    done = run(fleet, tmp_path, "--dm-host", "psrp://dmh@127.0.0.1:1?auth=basic&ssl=false", count=1)
    assert done.returncode == 4
    assert "--dm-host and --dm-hosts are both given" in done.stderr
    (tmp_path / "broken.toml").write_text('[hosts.a]\nurl = "https://a.lab"\n', encoding="utf-8")
    done = run(fleet, tmp_path, "--dm-hosts", str(tmp_path / "broken.toml"), count=1, by_env=True)
    assert done.returncode == 4
    assert "broken.toml: host 'a', budget_mb: missing is not allowed" in done.stderr


TWO_VMS = """
from harness.settings import MemorySettings

def test_two_vms(dm_vm_factory, dm_host):
    big = MemorySettings.build(startup="1GB", minimum="512MB", maximum="3GB")
    first = dm_vm_factory.create(big, "windows")
    second = dm_vm_factory.create(big, "windows")
    names = {vm.name for vm in dm_host.host.vms()}
    assert {first.name, second.name} <= names  # both on the test's host
"""


def test_a_tests_vms_share_its_host_and_its_first_lease_is_resized(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The lease taken before the test (the marker's default 2 GB) is too small for a 3 GB
    VM: it is given back, not kept beside the new one, so two 3 GB VMs fit a 6 GB budget."""
    fleet = fleet_factory("2022:8GB")  # budget 6144 MB
    (tmp_path / "test_two.py").write_text(TWO_VMS, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:randomly", "test_two.py",
         "--dm-hosts", str(fleet.path), "--dm-guest-os", "windows", "--dm-lease-wait", "3",
         "--dm-report-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=fleet.env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(tmp_path)
    assert record["outcome"] == "passed"
    with fleet.session("emu-2022") as session:
        assert HostLeases.of(session, fleet.inventory.named("emu-2022")).list().leases == ()


def test_vms_a_hosts_budget_can_never_hold_are_broken_at_once(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory("2022:8GB")  # budget 6144 MB: one 4 GB VM fits, two never will
    (tmp_path / "test_two.py").write_text(TWO_VMS.replace('"3GB"', '"4GB"'), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:randomly", "test_two.py",
         "--dm-hosts", str(fleet.path), "--dm-guest-os", "windows",
         "--dm-report-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=fleet.env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(tmp_path)
    assert record["outcome"] == "broken"
    assert (
        "the test's VMs need 8192 MB on one host, more than the budget of emu-2022 (6144 MB)"
        in str(record["message"])
    )


LOSES_ITS_LEASE = """
from harness.deadline import wait_until

def test_loses_its_lease(dm_vm, dm_host):
    lab = dm_host.lab
    ((host, lease_id),) = lab._held.values()
    assert host.leases.release(lease_id)  # as an operator on the host, or a clock jump, might
    wait_until(lambda: lab.lost(""), 10.0, what="the heartbeat to find the lease gone")
"""


def test_a_test_whose_lease_was_lost_while_it_ran_is_broken(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fleet_factory("2022:8GB")
    (tmp_path / "test_lost.py").write_text(LOSES_ITS_LEASE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:randomly", "test_lost.py",
         "--dm-hosts", str(fleet.path), "--dm-guest-os", "windows", "--dm-lease-ttl", "3",
         "--dm-report-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=fleet.env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(tmp_path)
    assert record["outcome"] == "broken"
    message = str(record["message"])
    assert "a capacity lease of this test was lost while its VMs ran (emu-2022: lease " in message
    assert "the host may have been overcommitted" in message
