"""`dmh emulator serve --fleet` and `dmh doctor --dm-hosts` as real subprocesses chained by the
inventory file the fleet writes: one row per host, its version and build read from the host
(not the file), its own memory; and the usage errors around them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.hyperv.host import HyperVHost
from tests.embedded import REPO
from tests.fleet import fleets
from tests.fleet.fleets import Fleet, fleet_env, served_fleet

fleet_factory = fleets.fleet_factory  # the fixture, from the fleets module


def dmh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_doctor_prints_a_row_per_fleet_host_with_the_version_read_from_the_host(
    tmp_path: Path,
) -> None:
    with served_fleet("2016,2019,2022:8GB", tmp_path, "--host-memory", "16GB") as (fleet, said):
        assert [line.split(":")[0] for line in said[:3]] == ["emu-2016", "emu-2019", "emu-2022"]
        inventory = fleet.inventory
        assert len({h.url for h in inventory}) == 3  # a loopback port each
        done = dmh("doctor", "--dm-hosts", str(fleet.path), env=fleet.env)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = {line.split()[0]: line for line in done.stdout.splitlines()[2:]}
        assert set(rows) == {"emu-2016", "emu-2019", "emu-2022"}, done.stdout
        for name, build, free in [
            ("emu-2016", "2016 (build 10.0.14393)", "16384"),
            ("emu-2019", "2019 (build 10.0.17763)", "16384"),
            ("emu-2022", "2022 (build 10.0.20348)", "8192"),
        ]:
            assert re.search(rf"\byes\s+{re.escape(build)}\s+{free}\s", rows[name]), rows[name]
            assert rows[name].endswith("0 (0 MB)")
        # The version is the host's answer: each emulated host says its own build.
        with fleet.session("emu-2019") as session:
            assert HyperVHost(session).facts().os_version == "10.0.17763"

        # Without the credential the inventory refers to, each row says why (no secret shown).
        env = {**fleet.env, "DMH_EMULATOR_PASSWORD": ""}
        done = dmh("doctor", "--dm-hosts", str(fleet.path), env=env)
        assert done.returncode == 3
        assert (
            "no: credential env:DMH_EMULATOR_PASSWORD: the variable DMH_EMULATOR_PASSWORD is not set"
            in done.stdout
        )
        assert "unreachable: emu-2016, emu-2019, emu-2022" in done.stdout
    assert not fleet.path.exists(), "the inventory of a stopped fleet is removed"


def test_one_host_or_an_inventory_never_both(tmp_path: Path) -> None:
    env = fleet_env()
    path = tmp_path / "dmh-hosts.toml"
    path.write_text('[hosts.a]\nurl = "https://a.lab"\nbudget_mb = 1024\n', encoding="utf-8")
    for command in ("doctor", "sweep"):
        done = dmh(command, "--dm-host", "psrp://u@a.lab", "--dm-hosts", str(path), env=env)
        assert done.returncode == 4
        assert (
            f"dmh {command} needs --dm-host URL or --dm-hosts FILE (an inventory), one of them"
            in done.stderr
        )
    done = dmh("certify", "--dm-host", "psrp://u@a.lab", "--dm-hosts", str(path), env=env)
    assert done.returncode == 4
    assert "--dm-host and --dm-hosts are both given" in done.stderr
    done = dmh("emulator", "serve", "--fleet", "2022", "--host", "0.0.0.0", env=env)
    assert done.returncode == 4 and "--fleet serves on loopback" in done.stderr
    done = dmh("emulator", "serve", "--fleet", "2017", env=env)
    assert done.returncode == 4 and "dmh: --fleet: host version: 2017 is not allowed" in done.stderr
    done = dmh("emulator", "serve", "--write-inventory", str(path), env=env)
    assert done.returncode == 4 and "give --fleet too" in done.stderr
    path.write_text('[hosts.a]\nurl = "https://a.lab"\nbudget_mb = 0\n', encoding="utf-8")
    for command in ("doctor", "certify"):
        done = dmh(command, "--dm-hosts", str(path), env=env)
        assert done.returncode == 4, done.stderr
        assert (
            f"dmh: {path}: host 'a', budget_mb: 0 is not allowed: must be a whole number ≥ 64"
            in done.stderr
        )


def test_a_host_that_is_down_is_a_row_saying_why_and_sweep_goes_on_to_the_others(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory("2016:2GB,2022:2GB")
    assert fleet.fleet is not None
    fleet.fleet.emulator("emu-2016").close()  # a host whose WinRM service is gone
    done = dmh("doctor", "--dm-hosts", str(fleet.path), env=fleet.env)
    assert done.returncode == 3, done.stdout + done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[2:-1]}
    assert "  no: " in rows["emu-2016"] and "cannot reach the host" in rows["emu-2016"], rows
    assert re.search(r"\byes\s+2022 \(build 10\.0\.20348\)\s+2048\s", rows["emu-2022"]), rows
    assert done.stdout.splitlines()[-1] == "unreachable: emu-2016"

    done = dmh("sweep", "--dm-hosts", str(fleet.path), env=fleet.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("emu-2016: skipped: ") and "emu-2022" not in done.stdout


def test_a_host_too_old_to_drive_is_reached_and_said_unsupported(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory("2012R2:2GB,2019:2GB")
    done = dmh("doctor", "--dm-hosts", str(fleet.path), env=fleet.env)
    assert done.returncode == 3, done.stdout + done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[2:4]}
    assert re.search(r"\byes\s+2012R2 \(build 6\.3\.9600\): not supported", rows["emu-2012r2"]), (
        rows
    )
    assert re.search(r"\byes\s+2019 \(build 10\.0\.17763\)\s+2048\s", rows["emu-2019"]), rows
    assert done.stdout.splitlines()[-1] == "not supported: emu-2012r2"
