"""Both guest channels: PowerShell Direct through the host session, and WinRM straight to the
guest's own endpoint (found with the `vm-address` script), over HTTP and HTTPS."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from harness.errors import ConfigError
from harness.hyperv.guest import DirectChannel, Guest
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import load_script
from harness.probe import JsonLinesProbe
from harness.sampler import Sampler
from harness.timeline import Timeline

from .support import ECHO_PROGRAM, PYTHON, Emulator, finish, guest_over, running_vm, wait_for


@pytest.fixture(params=["direct", "winrm-http", "winrm-https"])
def channel_case(
    request: pytest.FixtureRequest, http_emulator: Emulator, https_emulator: Emulator
) -> tuple[str, Emulator]:
    channel, _, scheme = str(request.param).partition("-")
    return channel, https_emulator if scheme == "https" else http_emulator


def test_guest_channel(channel_case: tuple[str, Emulator], vm_name: str) -> None:
    channel, emulator = channel_case
    with emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, emulator), guest_over(channel, emulator, host, vm_name) as g:
            counters = g.counters()
            assert counters.total_mb >= 512
            assert 0 < counters.available_mb < counters.total_mb
            assert counters.committed_mb > 0
            assert counters.max_memory_mb == 2048

            g.write_file("work/echo.py", ECHO_PROGRAM.encode())
            g.write_file("work/data.txt", "first\nsecond ✓\n".encode())
            process = g.start_process(
                PYTHON,
                ["echo.py", "a b", ""],
                {"DMH_ENV_NAMES": '["GREETING"]', "GREETING": "hi", "DMH_EXIT": "3",
                 "DMH_READ": '["data.txt"]'},
                working_directory="work",
            )  # fmt: skip
            assert process.pid > 0
            assert finish(process) == 3
            seen = json.loads(process.output)
            assert seen["argv"] == ["a b", ""]
            assert seen["env"] == {"GREETING": "hi"}
            assert seen["cwd"].replace("\\", "/").endswith("/work")
            assert seen["files"] == {"data.txt": "first\nsecond ✓\n"}
            assert not process.stats().running

            # A long-running process: stats while it runs, then stopped.
            sleeper = g.start_process(PYTHON, ["-c", "import time; print('up', flush=True); "
                                               "time.sleep(60)"])  # fmt: skip
            wait_for(lambda: "up" in (sleeper.poll().output or sleeper.output), 10, "output")
            stats = sleeper.stats()
            assert stats.running and stats.working_set > 1 << 20
            sleeper.stop()
            result = wait_for(
                lambda: (r := sleeper.poll()).exit_code is not None and r, 10, "the stop"
            )
            assert not result.running and result.exit_code != 0


def test_winrm_channel_sampler_reads_app_reports(http_emulator: Emulator, vm_name: str) -> None:
    """Over WinRM the sampler needs a second round trip for the guest; the app's reports
    must still reach the probe."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with (
            running_vm(host, vm_name, http_emulator),
            guest_over("winrm", http_emulator, host, vm_name) as guest,
        ):
            process = guest.start_process(
                PYTHON, ["-c", 'print(\'{"metric": "total_mb", "value": 1234}\')']
            )
            timeline = Timeline()
            sampler = Sampler(
                host, vm_name, timeline, guest=guest, process=process, probe=JsonLinesProbe()
            )
            sample = wait_for(
                lambda: (s := sampler.tick()).app is not None and s.app.exit_code is not None and s,
                10,
                "the app's exit",
            )
            assert sample.guest is not None and sample.guest.total_mb >= 512
            assert sample.app is not None and sample.app.reported == {"total_mb": 1234.0}


def test_powershell_direct_setup_is_written_once() -> None:
    """vm-invoke and sample-vm open the guest session with the one shared function; the host
    receives each as one self-contained script, still named by its first line."""
    scripts = resources.files("harness.hyperv") / "scripts"
    named = [p for p in scripts.iterdir() if p.name.endswith(".ps1")]
    assert len(named) >= 7
    assert [p.name for p in named if "New-PSSession" in p.read_text("utf-8")] == []
    assert "New-PSSession" in (scripts / "include" / "guest-session.ps1").read_text("utf-8")
    for name in ("vm-invoke", "sample-vm"):
        text = load_script(name)
        assert text.startswith(f"# dmh-script: {name}\n")
        assert text.count("function Get-DmhGuestSession") == 1
        assert text.count("New-PSSession") == 1
        assert "Get-DmhGuestSession $vm $GuestUser $GuestPassword" in text
        assert not re.search(r"^#\s*dmh-include:", text, re.MULTILINE)
    assert "Get-DmhGuestSession" not in load_script("guest-ops")


def test_the_sampler_and_its_guest_channel_name_one_vm(
    http_emulator: Emulator, vm_name: str
) -> None:
    with http_emulator.session() as session:
        guest = Guest(DirectChannel(session, "another-vm", http_emulator.credentials))
        with pytest.raises(ConfigError, match="'another-vm'"):
            Sampler(HyperVHost(session), vm_name, Timeline(), guest=guest)
