"""The plugin with Linux guests, in a real pytest subprocess on the embedded emulator: the Linux
profile goes over SSH (the Windows one over PowerShell Direct), and a guest that cannot do
Dynamic Memory is skipped with the reason, in the report too."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.model import load_records

REPO = Path(__file__).resolve().parents[2]
PLUGIN = ("-p", "harness.fixtures.plugin", "-p", "no:cacheprovider", "--strict-markers")

pytest_plugins = ["pytester"]

SUITE = """
import uuid

import pytest

from harness.emulator.integration import LinuxIntegration
from harness.hyperv.guest import DirectChannel
from harness.hyperv.ssh import SSHChannel

MEMORY = pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")


@MEMORY
def test_channel(dm_guest, dm_guest_os):
    if dm_guest_os == "linux":
        assert isinstance(dm_guest.channel, SSHChannel)
        assert dm_guest.channel.target.hostname == "127.0.0.1"  # from KVP, via the host
        assert dm_guest.channel.execute("echo $$").stdout.strip().isdigit()
    else:
        assert isinstance(dm_guest.channel, DirectChannel)
    # The guest sees at least its startup and at most its maximum: the balancer may already
    # have hot-added (a Windows guest idles above 512 MB of commit).
    assert 512 <= dm_guest.counters().total_mb <= 1024


@MEMORY
@pytest.mark.dm_guest(os="linux")
def test_without_hv_balloon(dm_host, dm_vm, request):
    guest = dm_host.emulator.host.guest(uuid.UUID(dm_vm.id))
    guest.set_integration(LinuxIntegration(hv_balloon=False))
    request.getfixturevalue("dm_guest")
    raise AssertionError("the preflight let a guest without hv_balloon through")
"""


def test_linux_over_ssh_and_the_preflight_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_linux_suite=SUITE)
    out = pytester.path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(REPO))
        result = pytester.runpytest_subprocess(
            *PLUGIN, "-rs", f"--dm-report-dir={out}", timeout=180
        )
    result.assert_outcomes(passed=2, skipped=1)
    reason = "the guest cannot do Dynamic Memory: hv_balloon is not loaded"
    assert reason in result.stdout.str()
    records = {r.nodeid.split("::")[-1]: r for r in load_records(out / "records")}
    skipped = records["test_without_hv_balloon[linux]"]
    assert skipped.outcome == "skipped" and reason in skipped.message
