"""The embedded emulator as a Hyper-V endpoint for an unmodified pypsrp client: Hyper-V's
cmdlets over real WinRM/PSRP (HTTP and HTTPS), their object shapes, their error records and
the DM behaviour they show. Protocol details with toy handlers are in test_wsman_server.py.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psrpcore import types as pst
from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

import harness
from harness.deadline import wait_until
from harness.emulator.cmdlets import script_handlers
from harness.emulator.service import EmbeddedEmulator
from harness.wildcards import has_wildcards, literal
from tests.embedded import emulator_pool

MB = 1024**2
GB = 1024**3
TB = 1024**4
NS = "Microsoft.HyperV.PowerShell"
SWITCH = object()  # a parameter sent without a value, like -Force
SCRIPTS = Path(harness.__file__).parent / "hyperv" / "scripts"
SCRIPT_LINE = re.compile(r"^#\s*dmh-script:\s*(\S+)\s*$", re.MULTILINE)
VM_COUNTERS = {
    "physical memory",
    "guest visible physical memory",
    "current pressure",
    "average pressure",
    "minimum pressure",
    "maximum pressure",
    "added memory",
    "removed memory",
    "memory add operations",
    "memory remove operations",
    "smart paging working set size",
    "guest available memory",  # WS2022 only (§4.1)
}


def i64(value: int) -> TaggedValue:
    """Byte counts go as Int64: pypsrp sends a plain int as Int32 (notes pitfall 5)."""
    return TaggedValue("I64", value)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `condition()` is truthy; its value, or DeadlineError at the deadline."""
    return wait_until(condition, timeout, what=what)


# -- a client's view of the host ---------------------------------------------------------


class HostClient:
    """One runspace pool on the emulator, driven the way any pypsrp user would."""

    def __init__(self, pool: RunspacePool) -> None:
        self.pool = pool

    def run(self, cmdlet: str, *positional: Any, **params: Any) -> PowerShell:
        ps = PowerShell(self.pool).add_cmdlet(cmdlet)
        for value in positional:
            ps.add_argument(value)
        for name, value in params.items():
            if value is SWITCH:
                ps.add_parameter(name)
            else:
                ps.add_parameter(name, value)
        ps.invoke()
        return ps

    def ok(self, cmdlet: str, *positional: Any, **params: Any) -> list[Any]:
        ps = self.run(cmdlet, *positional, **params)
        errors = [str(e) for e in ps.streams.error]
        assert not ps.had_errors and not errors, f"{cmdlet} failed: {errors}"
        return list(ps.output)

    def fail(self, cmdlet: str, *positional: Any, **params: Any) -> Any:
        """The one error record of a command that must end Failed."""
        ps = self.run(cmdlet, *positional, **params)
        assert ps.had_errors, f"{cmdlet} should have failed; output {ps.output}"
        [error] = ps.streams.error
        return error

    def vm(self, name: str) -> dict[str, Any]:
        [vm] = self.ok("Get-VM", Name=name)
        props: dict[str, Any] = vm.adapted_properties
        return props

    def memory(self, name: str) -> dict[str, Any]:
        [mem] = self.ok("Get-VMMemory", VMName=name)
        props: dict[str, Any] = mem.adapted_properties
        return props

    def state(self, name: str) -> str:
        return str(self.vm(name)["State"])

    def wait_state(self, name: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        """The VM once in `state`; for Running, once its guest is up too (heartbeat OK): a VM
        is Running at once after Start-VM while its guest still boots."""

        def reached() -> dict[str, Any] | None:
            vm = self.vm(name)
            if str(vm["State"]) != state:
                return None
            if state == "Running" and not str(vm["Heartbeat"]).startswith("Ok"):
                return None
            return vm

        result: dict[str, Any] = wait_for(reached, timeout, f"{name} to be {state}")
        return result

    def new_dm_vm(
        self,
        name: str,
        *,
        startup: int = 1 * GB,
        minimum: int = 512 * MB,
        maximum: int = 4 * GB,
        generation: int = 2,
    ) -> None:
        self.ok(
            "New-VM",
            Name=name,
            MemoryStartupBytes=i64(startup),
            Generation=generation,
            NoVHD=SWITCH,
        )
        self.ok(
            "Set-VMMemory",
            VMName=name,
            DynamicMemoryEnabled=True,
            StartupBytes=i64(startup),
            MinimumBytes=i64(minimum),
            MaximumBytes=i64(maximum),
        )

    def counter(self, *paths: str) -> list[dict[str, Any]]:
        [sample_set] = self.ok("Get-Counter", Counter=list(paths))
        return [s.adapted_properties for s in sample_set.adapted_properties["CounterSamples"]]

    def remove(self, name: str) -> None:
        self.ok("Stop-VM", Name=name, TurnOff=SWITCH, Force=SWITCH)
        self.ok("Remove-VM", Name=name, Force=SWITCH)


def connect(emu: EmbeddedEmulator, **overrides: Any) -> WSMan:
    options: dict[str, Any] = {
        "port": emu.server.port,
        "path": "wsman",
        "auth": "basic",
        "username": emu.username,
        "password": emu.password,
        "ssl": emu.tls,
        # Basic over plain HTTP needs encryption='never'; over HTTPS the defaults work.
        "encryption": "auto" if emu.tls else "never",
        "cert_validation": emu.server.cert_path if emu.tls else False,
    }
    options.update(overrides)
    return WSMan("127.0.0.1", **options)


@pytest.fixture(scope="module", autouse=True)
def _trust_only_the_emulator_cert() -> Iterator[None]:
    # requests may let REQUESTS_CA_BUNDLE override an explicit CA path; keep it out.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        patch.delenv("CURL_CA_BUNDLE", raising=False)
        yield


@pytest.fixture(scope="module")
def emulator_factory() -> Iterator[Callable[..., EmbeddedEmulator]]:
    with emulator_pool(guest_os="linux") as start:
        yield lambda **options: start(**options).emu


@pytest.fixture(scope="module")
def emu(emulator_factory: Callable[..., EmbeddedEmulator]) -> EmbeddedEmulator:
    return emulator_factory()


@pytest.fixture(scope="module")
def emu_tls(emulator_factory: Callable[..., EmbeddedEmulator]) -> EmbeddedEmulator:
    return emulator_factory(tls=True)


@contextlib.contextmanager
def open_client(emu: EmbeddedEmulator) -> Iterator[HostClient]:
    with connect(emu) as conn, RunspacePool(conn) as pool:
        yield HostClient(pool)


@pytest.fixture
def host(emu: EmbeddedEmulator) -> Iterator[HostClient]:
    with open_client(emu) as client:
        yield client


@pytest.fixture(params=["http", "https"])
def any_transport(
    request: pytest.FixtureRequest, emu: EmbeddedEmulator, emu_tls: EmbeddedEmulator
) -> Iterator[tuple[EmbeddedEmulator, HostClient]]:
    server = emu_tls if request.param == "https" else emu
    with open_client(server) as client:
        yield server, client


# -- the full lifecycle ------------------------------------------------------------------


def test_vm_lifecycle(any_transport: tuple[EmbeddedEmulator, HostClient]) -> None:
    emu, host = any_transport
    name = f"life-{'tls' if emu.tls else 'http'}"

    [created] = host.ok(
        "New-VM",
        Name=name,
        MemoryStartupBytes=i64(1 * GB),
        Generation=2,
        VHDPath=emu.template_path("linux"),
    )
    assert created.types[0] == f"{NS}.VirtualMachine"
    assert (
        str(created)
        == f"VirtualMachine (Name = '{name}') [Id = '{created.adapted_properties['Id']}']"
    )
    props = created.adapted_properties
    # Remote output is serialized one level deep: enums and drives arrive as their strings
    # (real-host facts, "Depth-1 serialisation"; issue 23).
    assert props["State"] == "Off" and props["CheckpointType"] == "Production"
    assert props["Heartbeat"] is None  # null while the VM is off (§1.3)
    [drive] = props["HardDrives"]
    assert drive.startswith("HardDiskDrive (Name = 'Hard Drive on SCSI controller number 0")
    assert f"VMName = '{name}'" in drive
    assert (props["MemoryStartup"], props["DynamicMemoryEnabled"]) == (1 * GB, False)

    # One Set-VMMemory is one write: Minimum 1.5 GB alone would exceed Startup 1 GB (§1.1).
    [memory] = host.ok(
        "Set-VMMemory",
        VMName=name,
        DynamicMemoryEnabled=True,
        MinimumBytes=i64(1536 * MB),
        StartupBytes=i64(2 * GB),
        MaximumBytes=i64(8 * GB),
        Buffer=25,
        Priority=80,
        Passthru=SWITCH,
    )
    assert memory.types[0] == f"{NS}.VMMemory"
    assert 'I64 N="Maximum">8589934592<' in memory._xml
    assert 'I64 N="Minimum">1610612736<' in memory._xml
    assert host.memory(name) | {"VMId": None, "Id": None} == memory.adapted_properties | {
        "VMId": None,
        "Id": None,
    }
    got = host.memory(name)
    assert (got["DynamicMemoryEnabled"], got["Startup"], got["Minimum"], got["Maximum"]) == (
        True,
        2 * GB,
        1536 * MB,
        8 * GB,
    )
    assert (got["Buffer"], got["Priority"], got["ResourcePoolName"]) == (25, 80, "Primordial")

    host.ok("Set-VM", Name=name, Notes="owned by test_vm_lifecycle")
    assert host.vm(name)["Notes"] == "owned by test_vm_lifecycle"

    # -Passthru shows the VM as Start-VM left it, before the balancer can move anything.
    [vm] = host.ok("Start-VM", Name=name, Passthru=SWITCH)
    assert vm.types[0] == f"{NS}.VirtualMachine"
    # Running at once while the guest boots (issue 13, item 9): no heartbeat yet.
    assert (str(vm.adapted_properties["State"]), str(vm.adapted_properties["Heartbeat"])) == (
        "Running",
        "NoContact",
    )
    assert vm.adapted_properties["MemoryAssigned"] == 2 * GB  # Startup at boot (§3.1)
    assert 'I64 N="MemoryAssigned">2147483648<' in vm._xml
    assert 'I64 N="MemoryDemand">' in vm._xml
    running = host.wait_state(name, "Running")
    assert running["State"] == "Running"
    assert running["Heartbeat"] == "OkApplicationsUnknown"
    assert running["Status"] == "Operating normally"
    assert running["MemoryStartup"] == 2 * GB
    assert 1536 * MB <= running["MemoryAssigned"] <= 8 * GB

    # Maximum may grow while the VM runs; shrinking it is refused (§2.3).
    host.ok("Set-VMMemory", VMName=name, MaximumBytes=i64(16 * GB))
    assert host.memory(name)["Maximum"] == 16 * GB
    error = host.fail("Set-VMMemory", VMName=name, MaximumBytes=i64(4 * GB))
    assert error.fq_error == f"InvalidState,{NS}.Commands.SetVMMemory"
    assert error.category == pst.ErrorCategory.InvalidOperation.value
    assert (
        error.message
        == f"InvalidOperation: ({name}:String) [Set-VMMemory], VirtualizationException"
    )
    assert str(error).startswith("Failed to modify device 'Memory'.\n")
    assert "maximum: 4GB (was 16GB) is not allowed: can only be increased while the VM runs" in str(
        error
    )
    assert host.memory(name)["Maximum"] == 16 * GB  # a refused write changes nothing
    error = host.fail("Remove-VM", Name=name, Force=SWITCH)
    assert error.fq_error == f"InvalidState,{NS}.Commands.RemoveVM"

    # A Production checkpoint (the default) keeps no memory state: restored, the VM is Off.
    [checkpoint] = host.ok("Checkpoint-VM", Name=name, SnapshotName="production", Passthru=SWITCH)
    assert checkpoint.types[0] == f"{NS}.VMSnapshot"
    assert str(checkpoint.adapted_properties["CheckpointType"]) == "Production"
    [listed] = host.ok("Get-VMCheckpoint", VMName=name)
    [alias] = host.ok("Get-VMSnapshot", VMName=name)
    assert listed.adapted_properties["Id"] == alias.adapted_properties["Id"]
    assert listed.adapted_properties["Id"] == checkpoint.adapted_properties["Id"]
    host.ok("Restore-VMCheckpoint", VMName=name, Name="production", Confirm=False)
    restored = host.vm(name)
    assert (str(restored["State"]), restored["MemoryAssigned"]) == ("Off", 0)
    assert restored["ParentCheckpointId"] == checkpoint.adapted_properties["Id"]

    # A Standard checkpoint keeps the memory state: restored, the VM is Saved and resumes.
    host.ok("Set-VM", Name=name, CheckpointType="Standard")
    assert str(host.vm(name)["CheckpointType"]) == "Standard"
    host.ok("Start-VM", Name=name)
    host.wait_state(name, "Running")
    host.ok("Checkpoint-VM", Name=name, SnapshotName="standard")
    host.ok("Stop-VM", Name=name, TurnOff=SWITCH, Force=SWITCH)
    assert host.state(name) == "Off"
    host.ok("Restore-VMCheckpoint", VMName=name, Name="standard", Confirm=False)
    assert host.state(name) == "Saved"
    host.ok("Start-VM", Name=name)
    resumed = host.vm(name)
    assert str(resumed["State"]) == "Running"
    assert resumed["MemoryAssigned"] >= 1536 * MB

    saved = host.ok("Save-VM", Name=name, Passthru=SWITCH)[0].adapted_properties
    assert (str(saved["State"]), saved["MemoryAssigned"], saved["Heartbeat"]) == ("Saved", 0, None)

    host.ok("Remove-VMCheckpoint", VMName=name, Name="production")
    names = [c.adapted_properties["Name"] for c in host.ok("Get-VMCheckpoint", VMName=name)]
    assert names == ["standard"]

    host.ok("Stop-VM", Name=name, TurnOff=SWITCH, Force=SWITCH)
    host.ok("Remove-VM", Name=name, Force=SWITCH)
    assert host.ok("Get-VM", Name=f"{name}*") == []
    assert emu.host.disk_os(emu.template_path("linux")) == "linux"  # the template stays


# -- runtime changes per host version (§2.3) ----------------------------------------------


@pytest.mark.parametrize("version", ["2012R2", "2016"])
def test_runtime_changes_follow_the_version_rules(
    emulator_factory: Callable[..., EmbeddedEmulator], version: str
) -> None:
    emu = emulator_factory(version=version)
    with open_client(emu) as host:
        host.new_dm_vm("rt", startup=1 * GB, minimum=512 * MB, maximum=4 * GB)
        host.ok("Start-VM", Name="rt")
        host.ok("Set-VMMemory", VMName="rt", MaximumBytes=i64(8 * GB))
        host.ok("Set-VMMemory", VMName="rt", MinimumBytes=i64(256 * MB))
        host.ok("Set-VMMemory", VMName="rt", Buffer=50, Priority=90)
        refused = {
            "MaximumBytes": ("maximum: 6GB (was 8GB)", "can only be increased while the VM runs"),
            "MinimumBytes": ("minimum: 1GB (was 256MB)", "can only be decreased while the VM runs"),
            "StartupBytes": ("startup: 2GB (was 1GB)", "cannot change while the VM runs"),
        }
        sizes = {"MaximumBytes": 6 * GB, "MinimumBytes": 1 * GB, "StartupBytes": 2 * GB}
        for parameter, (value, rule) in refused.items():
            error = host.fail("Set-VMMemory", VMName="rt", **{parameter: i64(sizes[parameter])})
            assert error.fq_error == f"InvalidState,{NS}.Commands.SetVMMemory", parameter
            assert error.category == pst.ErrorCategory.InvalidOperation.value
            assert f"{value} is not allowed: {rule} (host version {version})" in str(error)
        memory = host.memory("rt")
        assert (memory["Startup"], memory["Minimum"], memory["Maximum"]) == (
            1 * GB,
            256 * MB,
            8 * GB,
        )
        assert (memory["Buffer"], memory["Priority"]) == (50, 90)


def test_2008r2sp1_refuses_every_runtime_change(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(version="2008R2SP1")
    with open_client(emu) as host:
        host.new_dm_vm("old", startup=1 * GB, minimum=512 * MB, maximum=4 * GB, generation=1)
        host.ok("Start-VM", Name="old")
        changes: dict[str, Any] = {
            "MaximumBytes": i64(8 * GB),
            "MinimumBytes": i64(256 * MB),
            "Buffer": 30,
            "Priority": 60,
        }
        for parameter, value in changes.items():
            error = host.fail("Set-VMMemory", VMName="old", **{parameter: value})
            assert error.fq_error == f"InvalidState,{NS}.Commands.SetVMMemory"
            assert "cannot change while the VM runs (host version 2008R2SP1)" in str(error)
        memory = host.memory("old")
        assert (memory["Minimum"], memory["Maximum"], memory["Buffer"], memory["Priority"]) == (
            512 * MB,
            4 * GB,
            20,
            50,
        )
        host.ok("Stop-VM", Name="old", TurnOff=SWITCH, Force=SWITCH)
        host.ok("Set-VMMemory", VMName="old", MaximumBytes=i64(8 * GB))  # fine while off


# -- values and refusals -----------------------------------------------------------------


def test_byte_values_round_trip_exactly(host: HostClient) -> None:
    host.ok("New-VM", Name="bytes", MemoryStartupBytes=i64(8 * GB), Generation=2, NoVHD=SWITCH)
    host.ok("Set-VMMemory", VMName="bytes", DynamicMemoryEnabled=True, MaximumBytes=i64(1 * TB))
    [vm] = host.ok("Get-VM", Name="bytes")
    assert (vm.adapted_properties["MemoryStartup"], vm.adapted_properties["MemoryMaximum"]) == (
        8 * GB,
        1 * TB,
    )
    [memory] = host.ok("Get-VMMemory", VMName="bytes")
    assert 'I64 N="Startup">8589934592<' in memory._xml
    assert 'I64 N="Maximum">1099511627776<' in memory._xml

    # An untagged Python int above 2 GiB is invalid CLIXML (an Int32): a clear fault ...
    with pytest.raises(WSManFaultError, match="tag byte counts as I64"):
        host.run("Set-VMMemory", VMName="bytes", MaximumBytes=16 * GB)
    # ... that changed nothing and left the pool usable.
    assert host.memory("bytes")["Maximum"] == 1 * TB
    host.ok("Remove-VM", Name="bytes", Force=SWITCH)


REFUSED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "odd-mb": ({"StartupBytes": i64(1001 * MB)}, ["('1001' MB)", "not properly aligned"]),
    "min-over-startup": (
        {"MinimumBytes": i64(2 * GB)},
        ["minimum: 2GB is not allowed", "must not exceed startup 1GB"],
    ),
    "buffer-2001": ({"Buffer": 2001}, ["buffer: 2001 is not allowed", "from 5 to 2000 percent"]),
    "priority-101": ({"Priority": 101}, ["priority: 101 is not allowed", "from 0 to 100"]),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_settings_are_error_records(host: HostClient, case: str) -> None:
    params, wanted = REFUSED[case]
    name = f"refuse-{case}"
    host.new_dm_vm(name, startup=1 * GB, minimum=512 * MB, maximum=4 * GB)
    before = host.memory(name)
    try:
        error = host.fail("Set-VMMemory", VMName=name, **params)
        assert error.fq_error == f"InvalidParameter,{NS}.Commands.SetVMMemory"
        assert error.category == pst.ErrorCategory.InvalidArgument.value
        assert error.target_name == name
        message = str(error)
        # Hyper-V's own lines first (§1.9), then the specific rule.
        assert message.startswith(
            f"Failed to modify device 'Memory'.\n'{name}' failed to modify device 'Memory'."
        )
        for text in wanted:
            assert text in message
        assert host.memory(name) == before
    finally:
        host.ok("Remove-VM", Name=name, Force=SWITCH)


def test_parameter_mismatch_and_bad_enum_are_refused(host: HostClient) -> None:
    host.ok("New-VM", Name="static", MemoryStartupBytes=i64(1 * GB), NoVHD=SWITCH)
    error = host.fail("Set-VMMemory", VMName="static", MaximumBytes=i64(4 * GB))
    assert error.fq_error == f"InvalidParameter,{NS}.Commands.SetVMMemory"
    assert "dynamic memory is not enabled" in str(error)
    host.ok("Set-VM", Name="static", CheckpointType="standard")  # enum names ignore case
    error = host.fail("Set-VM", Name="static", CheckpointType="Sometimes", Notes="not applied")
    assert error.fq_error == f"CannotConvertArgumentNoMessage,{NS}.Commands.SetVM"
    assert "Disabled, Production, ProductionOnly, Standard" in str(error)
    vm = host.vm("static")
    assert (str(vm["CheckpointType"]), vm["Notes"]) == ("Standard", "")
    host.ok("Remove-VM", Name="static", Force=SWITCH)


# -- clients and names -------------------------------------------------------------------


def test_two_clients_with_their_own_pools_at_once(emu: EmbeddedEmulator) -> None:
    both_open = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []
    seen: dict[int, set[str]] = {}

    def client(index: int) -> None:
        name = f"pair-{index}"
        try:
            with open_client(emu) as host:
                host.new_dm_vm(name, startup=512 * MB, minimum=256 * MB, maximum=2 * GB)
                host.ok("Start-VM", Name=name)
                both_open.wait()
                assert emu.server.shell_count >= 2
                for _ in range(15):
                    assert host.vm(name)["Name"] == name
                seen[index] = {vm.adapted_properties["Name"] for vm in host.ok("Get-VM")}
                both_open.wait()  # neither removes its VM before the other has listed
                host.remove(name)
        except BaseException as exc:
            both_open.abort()
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert seen[1] >= {"pair-1", "pair-2"} and seen[2] >= {"pair-1", "pair-2"}


TRICKY_NAMES = [
    'it\'s "quoted"',
    "$(Remove-VM keep-me)",
    "back`tick `$x",
    "with  spaces",
    "a; Remove-VM keep-me",
    "line1\nline2",
    "Grüße-日本語-ÆØÅ",
    "vm[1]*?",
]


def escape(name: str) -> str:
    """WildcardPattern.Escape, which the old client sent and which misses on a real host."""
    return re.sub(r"([`*?\[\]])", r"`\1", name)


@pytest.mark.parametrize("name", TRICKY_NAMES, ids=range(len(TRICKY_NAMES)))
def test_vm_names_are_plain_names(host: HostClient, name: str) -> None:
    """Issue 13, item 6: -Name is a pattern only with an unescaped wildcard, else compared
    exactly, backticks included (real-host facts, "VM name matching")."""
    host.ok("New-VM", Name="keep-me", NoVHD=SWITCH)
    host.ok("New-VM", Name="vm1", NoVHD=SWITCH)  # what `vm[1]` would match as a pattern
    try:
        [created] = host.ok("New-VM", Name=name, NoVHD=SWITCH)
        assert created.adapted_properties["Name"] == name
        assert host.vm(literal(name))["Name"] == name
        if not has_wildcards(name):
            assert literal(name) == name  # sent as it is: an exact name
        if escape(name) != name:
            # escaped, the value holds no unescaped wildcard: compared exactly, and missed
            error = host.fail("Get-VM", Name=escape(name))
            assert str(error) == (
                f'Hyper-V was unable to find a virtual machine with name "{escape(name)}".'
            )
        assert {vm.adapted_properties["Name"] for vm in host.ok("Get-VM")} >= {
            name,
            "keep-me",
            "vm1",
        }  # nothing in the name ran
        host.ok("Remove-VM", Name=literal(name), Force=SWITCH)
        assert name not in {vm.adapted_properties["Name"] for vm in host.ok("Get-VM")}
        assert host.vm("keep-me")["Name"] == "keep-me"
        assert host.vm("vm1")["Name"] == "vm1"
    finally:
        host.ok("Remove-VM", Name="keep-me", Force=SWITCH)
        host.ok("Remove-VM", Name="vm1", Force=SWITCH)


def test_a_pattern_is_a_pattern_and_duplicate_names_are_allowed(host: HostClient) -> None:
    """Issue 13, items 6 and 9: a name with an unescaped wildcard matches as a pattern; Hyper-V
    allows two VMs with one name, and -Name then acts on both."""
    host.ok("New-VM", Name="dup", NoVHD=SWITCH)
    host.ok("New-VM", Name="dup", NoVHD=SWITCH)
    host.ok("New-VM", Name="vm1", NoVHD=SWITCH)
    try:
        assert len(host.ok("Get-VM", Name="dup")) == 2
        assert len(host.ok("Get-VM", Name="DUP")) == 2  # case-insensitive, as Hyper-V
        assert [v.adapted_properties["Name"] for v in host.ok("Get-VM", Name="vm[1]")] == ["vm1"]
        assert host.ok("Get-VM", Name="vm[x]") == []  # a pattern matching nothing: no error
    finally:
        host.ok("Remove-VM", Name="dup", Force=SWITCH)
        host.ok("Remove-VM", Name="vm1", Force=SWITCH)
    assert host.ok("Get-VM", Name="dup*") == []


def test_wrong_password_is_an_authentication_error(emu: EmbeddedEmulator) -> None:
    with (
        pytest.raises(AuthenticationError, match="Failed to authenticate the user dmh"),
        connect(emu, password=emu.password + "x") as conn,
    ):
        RunspacePool(conn).open()


# -- how failures look -------------------------------------------------------------------


def test_unknown_cmdlet_is_command_not_found(host: HostClient) -> None:
    error = host.fail("Get-Nothing", Name="x")
    assert error.fq_error == "CommandNotFoundException"
    assert error.category == pst.ErrorCategory.ObjectNotFound.value
    assert str(error).startswith(
        "The term 'Get-Nothing' is not recognized as the name of a cmdlet, function, script file,"
    )
    assert error.message == "ObjectNotFound: (Get-Nothing:String) [], CommandNotFoundException"
    assert error.exception.types[0] == "System.Management.Automation.CommandNotFoundException"


def test_unknown_parameter_is_named_parameter_not_found(host: HostClient) -> None:
    error = host.fail("Get-VM", Bogus=1)
    assert error.fq_error == f"NamedParameterNotFound,{NS}.Commands.GetVM"
    assert error.category == pst.ErrorCategory.InvalidArgument.value
    assert str(error) == "A parameter cannot be found that matches parameter name 'Bogus'."
    assert error.exception.types[0] == "System.Management.Automation.ParameterBindingException"


def test_get_vm_of_a_missing_vm(host: HostClient) -> None:
    error = host.fail("Get-VM", Name="ghost")
    assert str(error) == 'Hyper-V was unable to find a virtual machine with name "ghost".'
    assert error.fq_error == f"InvalidParameter,{NS}.Commands.GetVM"
    assert error.message == "InvalidArgument: (ghost:String) [Get-VM], VirtualizationException"
    assert error.exception.types[0] == f"{NS}.VirtualizationException"
    assert host.ok("Get-VM", Name="ghost*") == []  # a pattern matching nothing is no error


def test_scripts_are_refused_clearly_and_client_cmdlets_work(emu: EmbeddedEmulator) -> None:
    with Client(
        "127.0.0.1",
        port=emu.server.port,
        path="wsman",
        ssl=False,  # pypsrp defaults to HTTPS
        auth="basic",
        encryption="never",
        username=emu.username,
        password=emu.password,
    ) as client:
        # execute_ps sends `Invoke-Expression -Command <script> | Out-String -Stream`.
        output, streams, had_errors = client.execute_ps("Get-VM | Stop-VM -TurnOff")
        assert had_errors and output == ""
        [error] = streams.error
        assert error.fq_error == "ScriptNotSupported"
        assert error.category == pst.ErrorCategory.NotImplemented.value
        assert "runs only the harness's named scripts" in str(error)
        assert "not arbitrary PowerShell (here through Invoke-Expression)" in str(error)

        with RunspacePool(client.wsman) as pool:
            host = HostClient(pool)
            [vmhost] = host.ok("Get-VMHost")
            assert vmhost.types[0] == f"{NS}.VMHost"
            ps = PowerShell(pool).add_script("Get-VM | Remove-VM -Force")
            ps.invoke()
            assert ps.had_errors
            assert "not arbitrary PowerShell." in str(ps.streams.error[0])


# -- host objects and counters -----------------------------------------------------------


def test_get_vmhost(host: HostClient, emu: EmbeddedEmulator) -> None:
    [vmhost] = host.ok("Get-VMHost")
    props = vmhost.adapted_properties
    assert vmhost.types[:2] == [f"{NS}.VMHost", f"{NS}.VirtualizationObject"]
    assert (props["Name"], props["MemoryCapacity"]) == (emu.host.name, 64 * GB)
    assert 'I64 N="MemoryCapacity">68719476736<' in vmhost._xml


def test_start_vm_moves_host_memory_as_the_model_says(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(guest_os="linux")
    with open_client(emu) as host:
        host.new_dm_vm("boot", startup=1 * GB, minimum=512 * MB, maximum=4 * GB)
        [before] = host.counter(r"\Hyper-V Dynamic Memory Balancer(*)\Available Memory")
        off = host.vm("boot")
        assert (off["MemoryAssigned"], off["MemoryDemand"], off["MemoryStatus"]) == (0, 0, "")

        # Start and look in one pipeline, so the boot cannot finish in between.
        ps = PowerShell(host.pool)
        ps.add_cmdlet("Start-VM").add_parameter("Name", "boot").add_statement()
        ps.add_cmdlet("Get-VM").add_parameter("Name", "boot").add_statement()
        ps.add_cmdlet("Get-Counter").add_parameter(
            "Counter", r"\Hyper-V Dynamic Memory VM(boot)\Physical Memory"
        )
        ps.invoke()
        assert not ps.had_errors, [str(e) for e in ps.streams.error]
        vm, sample_set = ps.output
        booting = vm.adapted_properties
        assert booting["MemoryAssigned"] == 1 * GB  # Startup, from power-on (§3.1)
        [physical] = [s.adapted_properties for s in sample_set.adapted_properties["CounterSamples"]]
        assert physical["CookedValue"] == 1024.0  # MB (§4.1)
        assert str(booting["State"]) == "Running"  # at once, while the guest boots
        if str(booting["Heartbeat"]) == "NoContact":
            assert (booting["MemoryDemand"], booting["MemoryStatus"]) == (0, "")

        # Once the guest reports and the quiet period is over, demand and status appear.
        def settled() -> dict[str, Any] | None:
            now = host.vm("boot")
            return now if now["MemoryDemand"] > 0 and now["MemoryStatus"] == "OK" else None

        running = wait_for(settled, 15, "MemoryDemand > 0 and MemoryStatus OK")
        assert str(running["State"]) == "Running"
        assert 512 * MB <= running["MemoryAssigned"] <= 4 * GB
        assert running["MemoryDemand"] <= running["MemoryAssigned"]
        assert running["MemoryDemand"] % MB == 0  # whole MB, from integer MB math (§1.3)
        samples = {
            s["Path"].rsplit("\\", 1)[1]: s
            for s in host.counter(r"\Hyper-V Dynamic Memory VM(boot)\*")
        }
        assert samples["current pressure"]["CookedValue"] > 0
        assert 512 <= samples["physical memory"]["CookedValue"] <= 4096
        [after] = host.counter(r"\Hyper-V Dynamic Memory Balancer(*)\Available Memory")
        assert after["CookedValue"] <= before["CookedValue"] - 512
        host.remove("boot")
        [freed] = host.counter(r"\Hyper-V Dynamic Memory Balancer(*)\Available Memory")
        assert freed["CookedValue"] == before["CookedValue"]


def test_get_counter_paths_and_wildcards(host: HostClient, emu: EmbeddedEmulator) -> None:
    prefix = f"\\\\{emu.host.name.lower()}\\hyper-v dynamic memory vm"
    for name in ("ctr-a", "ctr-b", "ctr-off"):
        host.new_dm_vm(name, startup=512 * MB, minimum=256 * MB, maximum=2 * GB)
    host.ok("Start-VM", Name="ctr-a")
    host.ok("Start-VM", Name="ctr-b")
    try:
        [one] = host.counter(r"\Hyper-V Dynamic Memory VM(ctr-a)\Physical Memory")
        assert one["Path"] == f"{prefix}(ctr-a)\\physical memory"
        assert one["InstanceName"] == "ctr-a"
        assert 256 <= one["CookedValue"] <= 2048

        every_vm = host.counter(r"\Hyper-V Dynamic Memory VM(*)\Physical Memory")
        instances = {s["InstanceName"] for s in every_vm}
        assert {"ctr-a", "ctr-b"} <= instances and "ctr-off" not in instances

        all_counters = host.counter(r"\Hyper-V Dynamic Memory VM(ctr-b)\*")
        assert {s["Path"].rsplit("\\", 1)[1] for s in all_counters} == VM_COUNTERS

        balancer = host.counter(r"\Hyper-V Dynamic Memory Balancer(*)\*")
        assert {s["InstanceName"] for s in balancer} == {"system balancer"}
        assert {s["Path"].rsplit("\\", 1)[1] for s in balancer} == {
            "available memory",
            "available memory for balancing",
            "average pressure",
            "system current pressure",
        }
        two = host.counter(
            r"\Hyper-V Dynamic Memory VM(ctr-a)\Physical Memory",
            r"\Hyper-V Dynamic Memory Balancer(System Balancer)\Available Memory",
        )
        assert [s["InstanceName"] for s in two] == ["ctr-a", "system balancer"]
        [sample_set] = host.ok("Get-Counter", Counter=r"\Hyper-V Dynamic Memory VM(ctr-a)\*")
        readings = sample_set.adapted_properties["Readings"]
        assert f"{prefix}(ctr-a)\\physical memory :\n" in readings

        missing = {
            r"\Hyper-V Dynamic Memory VM(ctr-off)\Physical Memory": "The specified instance is not present.",
            r"\No Such Set(*)\Anything": "The specified object was not found on the computer.",
            r"\Hyper-V Dynamic Memory VM(ctr-a)\No Such Counter": "The specified counter could not be found.",
        }
        for path, message in missing.items():
            error = host.fail("Get-Counter", Counter=path)
            assert str(error) == message, path
            assert (
                error.fq_error == "CounterApiError,Microsoft.PowerShell.Commands.GetCounterCommand"
            )
            assert error.category == pst.ErrorCategory.InvalidResult.value
    finally:
        for name in ("ctr-a", "ctr-b", "ctr-off"):
            host.remove(name)


def test_get_vmintegrationservice(host: HostClient) -> None:
    host.new_dm_vm("ics", startup=512 * MB, minimum=256 * MB, maximum=1 * GB)
    host.ok("Start-VM", Name="ics")
    try:
        host.wait_state("ics", "Running")
        services = [s.adapted_properties for s in host.ok("Get-VMIntegrationService", VMName="ics")]
        assert [s["Name"] for s in services] == [
            "Guest Service Interface",
            "Heartbeat",
            "Key-Value Pair Exchange",
            "Shutdown",
            "Time Synchronization",
            "VSS",
        ]
        by_name = {s["Name"]: s for s in services}
        assert by_name["Guest Service Interface"]["Enabled"] is False  # off by default (§1.7)
        assert by_name["Heartbeat"]["PrimaryStatusDescription"] == "OK"
        [heartbeat] = host.ok("Get-VMIntegrationService", VMName="ics", Name="Heart*")
        assert heartbeat.types[0] == f"{NS}.VMIntegrationComponent"
        host.ok("Stop-VM", Name="ics", TurnOff=SWITCH, Force=SWITCH)
        off = host.ok("Get-VMIntegrationService", VMName="ics")
        assert {s.adapted_properties["PrimaryStatusDescription"] for s in off} == {""}
    finally:
        host.remove("ics")


# -- the harness's named scripts ---------------------------------------------------------


def test_every_named_script_has_an_emulator_handler() -> None:
    names: dict[str, str] = {}
    for path in sorted(SCRIPTS.glob("*.ps1")):
        found = SCRIPT_LINE.findall(path.read_text(encoding="utf-8"))
        assert len(found) == 1, f"{path.name}: needs exactly one '# dmh-script: <name>' line"
        names[path.name] = found[0]
    assert names, f"no scripts found under {SCRIPTS}"
    missing = {file: name for file, name in names.items() if name not in script_handlers()}
    assert missing == {}, f"scripts without an emulator handler: {missing}"


def test_a_named_script_runs_by_its_text(host: HostClient, emu: EmbeddedEmulator) -> None:
    ps = PowerShell(host.pool).add_script((SCRIPTS / "host-facts.ps1").read_text("utf-8"))
    [facts] = ps.invoke()
    assert not ps.had_errors
    assert facts.extended_properties["ComputerName"] == emu.host.name
    assert facts.extended_properties["MemoryCapacity"] == 64 * GB


def test_vm_secure_boot_takes_the_exact_name_and_any_case(
    host: HostClient, emu: EmbeddedEmulator
) -> None:
    """Issue 23: vm-secure-boot finds its VM by the exact name (as a pattern `vm[1]` would match
    vm1) and its ValidateSet ignores case; Get-VMMemory's MaximumPerNumaNode is what the host's
    NUMA node holds, not the VM's Maximum."""
    host.ok("New-VM", Name="vm[1]", NoVHD=SWITCH, Generation=2)
    host.ok("New-VM", Name="vm1", NoVHD=SWITCH, Generation=2)
    try:
        ps = PowerShell(host.pool).add_script((SCRIPTS / "vm-secure-boot.ps1").read_text("utf-8"))
        ps.add_parameter("VMName", "vm[1]")
        ps.add_parameter("SecureBoot", "microsoftUEFIcertificateAuthority")
        ps.invoke()
        assert not ps.had_errors, ps.streams.error
        [exact] = host.ok("Get-VMFirmware", VMName=literal("vm[1]"))
        [other] = host.ok("Get-VMFirmware", VMName="vm1")
        assert (
            exact.extended_properties["SecureBootTemplate"] == "MicrosoftUEFICertificateAuthority"
        )
        assert other.extended_properties["SecureBootTemplate"] == "MicrosoftWindows"
        assert host.memory("vm1")["MaximumPerNumaNode"] == emu.host.total_memory >> 20
    finally:
        host.ok("Remove-VM", Name=literal("vm[1]"), Force=SWITCH)
        host.ok("Remove-VM", Name="vm1", Force=SWITCH)


@pytest.mark.parametrize("version", ["2012", "2012R2", "2016"])
def test_cmdlets_and_parameters_per_host_version(
    emulator_factory: Callable[..., EmbeddedEmulator], version: str
) -> None:
    """Issue 23: 2012 has the *-VMSnapshot names only and no *-VMFirmware; 2012 R2's
    Set-VMFirmware has no -SecureBootTemplate (harness.hostcmdlets, per-version docsets)."""
    emu = emulator_factory(version=version)
    with open_client(emu) as host:
        host.ok("New-VM", Name="fw", NoVHD=SWITCH, Generation=2)
        try:
            assert host.ok("Get-VMSnapshot", VMName="fw") == []
            if version == "2012":
                error = host.fail("Get-VMCheckpoint", VMName="fw")
                assert "CommandNotFoundException" in error.fq_error
            else:
                assert host.ok("Get-VMCheckpoint", VMName="fw") == []
            template = {"SecureBootTemplate": "MicrosoftUEFICertificateAuthority"}
            if version == "2012":
                error = host.fail("Set-VMFirmware", VMName="fw", EnableSecureBoot="Off")
                assert "CommandNotFoundException" in error.fq_error
            elif version == "2012R2":
                error = host.fail("Set-VMFirmware", VMName="fw", **template)
                assert "SecureBootTemplate" in str(error)
                host.ok("Set-VMFirmware", VMName="fw", EnableSecureBoot="Off")
            else:
                host.ok("Set-VMFirmware", VMName="fw", **template)
        finally:
            host.ok("Remove-VM", Name="fw", Force=SWITCH)
