"""The static checks catch mistakes a real host would show (issue 23): each mutation below is
applied to a copy of a shipped script (as a host receives it, includes spliced) and must be
found by the check named beside it; the shipped scripts themselves are clean. The first four
are the issue's own (they passed the checks unchanged before); the rest are more of each kind.
Also: which host versions each script runs on, from the per-version cmdlet signatures.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tree_sitter", reason="pip install -e '.[dev]'")
pytest.importorskip("tree_sitter_powershell", reason="pip install -e '.[dev]'")

from harness.hyperv.host import SUPPORTED
from harness.hyperv.session import load_script
from tests.static import lint
from tests.static.test_scripts import SCRIPTS, calls, tree

# (script, text in it, replacement, the check that must find it)
MUTATIONS = [
    # the four
    ("host-facts", "$balancer.AvailableMemory", "$balancer.AvailableMemoryMB", "cim property"),
    ("sample-vm", "'AddedMemory'", "'AddedMemoryBytes'", "cim property"),
    ("sample-vm", "'CurrentPressure'", "'CurrentPresure'", "cim property"),
    ("vm-invoke", "-VMId $VM.Id", "-VMId $VM.Name", "id parameter"),
    (
        "guest-ops",
        "[IO.File]::Open($entry.Output, 'Open', 'Read', 'ReadWrite')",
        "[IO.File]::OpenRead($entry.Output)",
        "file share mode",
    ),
    # more of the same kinds
    ("guest-ops", "$memory.CommittedBytes", "$memory.CommitedBytes", "cim property"),
    ("guest-ops", "$system.TotalPhysicalMemory", "$system.TotalPhysicalMemoryMB", "cim property"),
    ("guest-ops", "$dm.MaximumMemoryMbytes", "$dm.MaximumMemory", "cim property"),
    ("host-facts", "$os.Caption", "$os.OSCaption", "cim property"),
    ("host-facts", "$balancer.AveragePressure", "$balancer.AvgPressure", "cim property"),
    (
        "guest-ops",
        "[IO.File]::Open($entry.Errors, 'Open', 'Read', 'ReadWrite')",
        "[IO.File]::Open($entry.Errors, 'Open', 'Read', 'Read')",
        "file share mode",
    ),
    (
        "guest-ops",
        "[IO.File]::Open($entry.Errors, 'Open', 'Read', 'ReadWrite')",
        "[IO.File]::ReadAllBytes($entry.Errors)",
        "file share mode",
    ),
    (
        "guest-ops",
        "$p = [Diagnostics.Process]::Start($info)",
        "$p = [Diagnostics.Process]::Start($info)\n        $null = $p.Handle",
        "first Handle read",
    ),
    (
        "guest-ops",
        "        [void]$stream.Seek($offset, 'Begin')\n            $stream.Write(",
        "        $stream.Write(",
        "unbounded payload",
    ),
    ("sample-vm", "-VMId $VM.Id", "-VMId $VMName", "id parameter"),
    (
        "sample-vm",
        "HyperVDynamicMemoryVM' $instance",
        "HyperVDynamicMemoryVM' $vm.Name",
        "perf instance",
    ),
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_shipped_scripts_are_clean(name: str) -> None:
    assert lint.findings(load_script(name).encode("utf-8")) == {}


@pytest.mark.parametrize(
    "script, before, after, check",
    MUTATIONS,
    ids=[f"{m[0]}:{m[3]}:{i}" for i, m in enumerate(MUTATIONS)],
)
def test_each_mutation_is_caught(script: str, before: str, after: str, check: str) -> None:
    original = load_script(script)
    assert original.count(before) >= 1, f"{script} no longer holds {before!r}: update MUTATIONS"
    mutated = original.replace(before, after, 1).encode("utf-8")
    found = lint.findings(mutated)
    assert check in found, f"{check} missed {after!r} in {script}: {found}"


# Which host versions each script runs on (from harness.hyperv.signatures.SINCE_2016): the
# scripts that reach a guest over PowerShell Direct, and vm-secure-boot (-SecureBootTemplate),
# need 2016; the rest would run on 2012 R2 too, which the harness no longer drives.
HOST_VERSIONS = {
    "capacity-lease": ["2012R2", "2016", "2019", "2022"],  # no Hyper-V cmdlet at all
    "guest-ops": ["2012R2", "2016", "2019", "2022"],  # runs inside the guest
    "host-facts": ["2012R2", "2016", "2019", "2022"],  # and answers on older hosts too
    "new-vm-from-template": ["2012R2", "2016", "2019", "2022"],
    "remove-vm": ["2012R2", "2016", "2019", "2022"],
    "sample-vm": ["2016", "2019", "2022"],
    "sample-vms": ["2012R2", "2016", "2019", "2022"],
    "vm-address": ["2012R2", "2016", "2019", "2022"],
    "vm-invoke": ["2016", "2019", "2022"],
    "vm-secure-boot": ["2016", "2019", "2022"],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_runs_on_every_supported_host(name: str) -> None:
    source, root = tree(name)
    used = [(c.name, c.parameters) for c in calls(source, root)]
    versions = lint.host_versions(source, used)
    assert versions == HOST_VERSIONS[name]
    assert {v.value for v in SUPPORTED} <= set(versions)


def test_the_per_version_check_sees_a_2016_parameter() -> None:
    assert lint.host_versions(b"", [("Set-VMFirmware", ("VM", "SecureBootTemplate"))])[0] == "2016"
    assert lint.host_versions(b"", [("Set-VMFirmware", ("VM", "EnableSecureBoot"))])[0] == "2012R2"
