"""The host inventory (dmh-hosts.toml, or [tool.dmh.hosts] in pyproject.toml) read from real
files: what a good one gives, what each broken rule says (file, host, key, value and rule; a
credential's value never), how a credential reference resolves; and fleet specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.emulator.fleet import parse_fleet
from harness.errors import ConfigError, SettingError
from harness.inventory import HostEntry, InventoryError, load_inventory, render_inventory
from harness.settings import HostVersion

GOOD = r"""
[hosts.lab-a]
url = "https://hv-a.lab:5986"     # like --dm-host today
credential = "env:DMH_LAB_A"
labels = ["gpu", "fast-disk"]
budget_mb = 16384
vm_limit = 8
reserve_mb = 2048
[hosts.lab-a.templates]
linux = "C:\\VMs\\ubuntu.vhdx"
windows = "C:\\VMs\\ws2022.vhdx"

[hosts.lab-b]
url = "psrp://qa@hv-b.lab:5986?auth=ntlm"
budget_mb = 8192
"""


def write(tmp_path: Path, text: str, name: str = "dmh-hosts.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_inventory_gives_each_host_checked(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, GOOD))
    a, b = inventory.hosts
    assert a == HostEntry(
        name="lab-a",
        url="psrp://hv-a.lab:5986?ssl=true",
        credential="env:DMH_LAB_A",
        labels=("gpu", "fast-disk"),
        budget_mb=16384,
        vm_limit=8,
        reserve_mb=2048,
        templates={"linux": "C:\\VMs\\ubuntu.vhdx", "windows": "C:\\VMs\\ws2022.vhdx"},
    )
    assert (b.credential, b.vm_limit, b.reserve_mb, dict(b.templates)) == ("", 0, 2048, {})
    assert inventory.matching(["gpu"], "linux") == (a,)
    assert inventory.matching(guest_os="windows") == (a,)
    assert inventory.matching() == (a, b)
    with pytest.raises(ConfigError, match="no host 'lab-c' \\(there are: lab-a, lab-b\\)"):
        inventory.named("lab-c")


def test_pyproject_holds_the_same_tables_under_tool_dmh_hosts(tmp_path: Path) -> None:
    text = GOOD.replace("[hosts.", "[tool.dmh.hosts.")
    inventory = load_inventory(write(tmp_path, '[project]\nname = "x"\n' + text, "pyproject.toml"))
    assert [h.name for h in inventory] == ["lab-a", "lab-b"]


def test_a_credential_reference_resolves_when_the_host_is_reached(tmp_path: Path) -> None:
    a, b = load_inventory(write(tmp_path, GOOD)).hosts
    target = a.target({"DMH_HOST_USERNAME": "qa", "DMH_LAB_A": "s3cret-A"})
    assert (target.hostname, target.port, target.username, target.ssl) == (
        "hv-a.lab",
        5986,
        "qa",
        True,
    )
    assert target.password.reveal() == "s3cret-A"
    assert "s3cret-A" not in repr(target)
    with pytest.raises(ConfigError, match="host 'lab-a': credential env:DMH_LAB_A: the variable "
                       "DMH_LAB_A is not set"):  # fmt: skip
        a.target({"DMH_HOST_USERNAME": "qa"})
    # No reference: resolved as --dm-host's are (the per-host variable, then DMH_HOST_PASSWORD)
    target = b.target({"DMH_HOST_PASSWORD_HV_B_LAB": "s3cret-B"})
    assert (target.username, target.auth, target.password.reveal()) == ("qa", "ntlm", "s3cret-B")


BROKEN = [
    ("budget_mb = 8192", "budget_mb = -1", "lab-b', budget_mb: -1 is not allowed: must be a whole number ≥ 64"),
    ("budget_mb = 8192", "", "lab-b', budget_mb: missing is not allowed: say how much memory"),
    ("vm_limit = 8", 'vm_limit = "8"', "lab-a', vm_limit: '8' is not allowed: must be a whole number ≥ 0"),
    ("vm_limit = 8", "vm_limt = 8", "lab-a', vm_limt: 8 is not allowed: unknown key; known: url,"),
    ("vm_limit = 8", 'version = "2019"', "lab-a', version: '2019' is not allowed: the Hyper-V version and"),
    ('"gpu", ', '"2019", ', "lab-a', labels: '2019' is not allowed: the Hyper-V version is read from the host"),
    ('"gpu", ', '"bad label", ', "lab-a', labels: 'bad label' is not allowed: a label is"),
    ("linux = ", "freebsd = ", "lab-a', templates.freebsd: 'C:\\\\VMs\\\\ubuntu.vhdx' is not allowed: a template"),
    ("[hosts.lab-b]", "[hosts.'lab b']", "host 'lab b': 'lab b' is not allowed: a host name is"),
    ('url = "psrp://qa@hv-b.lab:5986?auth=ntlm"', 'url = "ftp://b"', "lab-b', url: 'ftp://b' is not allowed: a URL"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "said"),
    BROKEN,
    ids=[
        "budget-negative",
        "budget-missing",
        "vm-limit-text",
        "unknown-key",
        "version-key",
        "version-label",
        "bad-label",
        "template-os",
        "host-name",
        "url-scheme",
    ],
)
def test_each_broken_rule_names_the_file_host_key_value_and_rule(
    tmp_path: Path, old: str, new: str, said: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert isinstance(caught.value, SettingError)
    assert str(caught.value).startswith(f"{path}: host '"), str(caught.value)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('credential = "hunter2-Pa55"', "hunter2-Pa55"),
        ('url = "https://qa:hunter2-Pa55@hv-a.lab:5986"', "hunter2-Pa55"),
    ],
    ids=["credential", "url"],
)
def test_a_secret_where_a_reference_belongs_is_refused_without_echoing_it(
    tmp_path: Path, line: str, secret: str
) -> None:
    key = line.split(" ", 1)[0]
    text = GOOD.replace('credential = "env:DMH_LAB_A"', "").replace(
        'url = "https://hv-a.lab:5986"', 'url = "https://hv-a.lab:5986"\n' + line
        if key == "credential" else line
    )  # fmt: skip
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path, text))
    assert f"host 'lab-a', {key}: (value not shown)" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value.args)


def test_a_file_that_is_not_an_inventory_says_so(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(tmp_path / "missing.toml")
    with pytest.raises(InventoryError, match="is not valid TOML"):
        load_inventory(write(tmp_path, "[hosts.a\n"))
    with pytest.raises(InventoryError, match="list at least one host"):
        load_inventory(write(tmp_path, "# nothing\n"))
    with pytest.raises(InventoryError, match=r"\[tool.dmh.hosts\]: missing"):
        load_inventory(write(tmp_path, '[project]\nname = "x"\n', "pyproject.toml"))


def test_a_rendered_inventory_reads_back_as_the_same_hosts(tmp_path: Path) -> None:
    hosts = load_inventory(write(tmp_path, GOOD)).hosts
    again = load_inventory(write(tmp_path, render_inventory(hosts, "made here"), "again.toml"))
    assert again.hosts == hosts


def test_a_fleet_spec_gives_versions_with_their_own_memory() -> None:
    members = parse_fleet("2016,2019,2022:8GB", default_memory="16GB")
    assert [(m.name, m.version, m.memory >> 30) for m in members] == [
        ("emu-2016", HostVersion.V2016, 16),
        ("emu-2019", HostVersion.V2019, 16),
        ("emu-2022", HostVersion.V2022, 8),
    ]
    assert [m.name for m in parse_fleet("2022,2022")] == ["emu-2022", "emu-2022-2"]
    for spec, said in [
        ("", "fleet: '' is not allowed: a comma list of Hyper-V versions"),
        ("2016,,2019", "fleet: '2016,,2019' is not allowed"),
        ("2017", "host version: 2017 is not allowed: must be one of"),
        ("2022:8XB", "fleet entry '2022:8XB' memory: '8XB' is not allowed"),
        ("2022:512MB", "fleet entry '2022:512MB': 512MB is not allowed: an emulated host needs at least 1GB"),
    ]:  # fmt: skip
        with pytest.raises(SettingError) as caught:
            parse_fleet(spec)
        assert said in str(caught.value)
