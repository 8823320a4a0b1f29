"""The emulator's Hyper-V WMI provider driven by pypsrp's own WS-Man client over loopback:
values equal the cmdlets' at the same instant (one model), Enumerate/Pull with WQL, Get,
Invoke of GetSummaryInformation and ModifyResourceSettings with Set-VMMemory's refusals,
v1/v2 namespaces per host version, and faults as Windows sends them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import NAMESPACES, WSMan

from harness.emulator.service import EmbeddedEmulator
from harness.emulator.wmi.wql import WqlError, parse
from harness.settings import MemoryChange
from suites.tools.wmiclient import WmiClient, embedded
from tests.embedded import running_emulator

MB = 1024**2
SENTINEL = 2147483647
V2, V1 = "root/virtualization/v2", "root/virtualization"
RESOURCE_NOT_FOUND, INVALID_SELECTORS = 0x80338000, 0x8033805B
ACCESS_DENIED, CANNOT_PROCESS_FILTER, INVALID_CONTEXT = 0x80338104, 0x8033801A, 0x8033801B


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:g}s: {what}")
        time.sleep(0.05)


def wsman(em: EmbeddedEmulator) -> WSMan:
    return WSMan(
        "127.0.0.1", port=em.server.port, path="wsman", auth="basic", username=em.username,
        password=em.password, ssl=False, encryption="never",
    )  # fmt: skip


@contextlib.contextmanager
def emulator(version: str) -> Iterator[EmbeddedEmulator]:
    with running_emulator(version=version, guest_os="linux") as started:
        em = started.emu
        em.host.new_vm("dm1", "1GB")
        em.host.set_memory(
            "dm1",
            MemoryChange(dynamic=True, minimum=512 * MB, maximum=4096 * MB, buffer=35, priority=80),
        )
        em.host.start("dm1")
        em.host.new_vm("static(1)", "768MB")
        yield em


@pytest.fixture(scope="module")
def em() -> Iterator[EmbeddedEmulator]:
    with emulator("2022") as served:
        wait_for(lambda: served.host.get_vm("dm1").memory_status == "OK", 30, "DM reports in")
        yield served


@pytest.fixture
def client(em: EmbeddedEmulator) -> Iterator[WmiClient]:
    with wsman(em) as connection:
        yield WmiClient(connection)


def cmdlet(em: EmbeddedEmulator, name: str, **params: Any) -> list[Any]:
    with RunspacePool(wsman(em)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet(name)
        for key, value in params.items():
            ps.add_parameter(key, value)
        out = ps.invoke()
        assert not ps.had_errors, [str(e) for e in ps.streams.error]
        return list(out)


def prop(obj: Any, name: str) -> Any:
    return obj.adapted_properties.get(name, obj.extended_properties.get(name))


def by_name(records: list[dict[str, Any]], key: str = "ElementName") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


# -- one model: WMI equals the cmdlets at the same instant ---------------------------------


def test_wmi_values_equal_the_cmdlets_at_the_same_instant(em: EmbeddedEmulator) -> None:
    em.driver.stop()  # hold the balancer still, so both reads see the same instant
    try:
        with wsman(em) as connection:
            client = WmiClient(connection)
            code, summaries = client.summaries([0, 1, 103, 112, 113, 120])
            settings = {
                r["InstanceID"].split(":")[1].split("\\")[0]: r
                for r in client.instances("Msvm_MemorySettingData")
            }
            runtime = by_name(client.instances("Msvm_Memory"), "SystemName")
            perf = by_name(
                WmiClient(connection, "root/cimv2").instances(
                    "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM"
                ),
                "Name",
            )
        vms = {prop(v, "Name"): v for v in cmdlet(em, "Get-VM")}
        memory = {prop(m, "VMName"): m for m in cmdlet(em, "Get-VMMemory")}
        counter = cmdlet(
            em, "Get-Counter", Counter="\\Hyper-V Dynamic Memory VM(dm1)\\Physical Memory"
        )
    finally:
        em.driver.start()
    assert code == 0 and set(by_name(summaries)) == {"dm1", "static(1)"}
    for name, summary in by_name(summaries).items():
        vm, mem = vms[name], memory[name]
        usage, available = int(summary["MemoryUsage"]), int(summary["MemoryAvailable"])
        assert usage * MB == prop(vm, "MemoryAssigned")
        demand = 0 if available == SENTINEL else usage * (100 - available) // 100
        assert demand * MB == prop(vm, "MemoryDemand")
        s = settings[summary["Name"]]
        assert int(s["VirtualQuantity"]) * MB == prop(mem, "Startup")
        assert int(s["Reservation"]) * MB == prop(mem, "Minimum")
        assert int(s["Limit"]) * MB == prop(mem, "Maximum")
        assert int(s["TargetMemoryBuffer"]) == prop(mem, "Buffer")
        assert int(s["Weight"]) == prop(mem, "Priority") * 100
        assert (s["DynamicMemoryEnabled"] == "true") == prop(mem, "DynamicMemoryEnabled")
        assert s["AllocationUnits"] == "byte * 2^20"
    dm1 = by_name(summaries)["dm1"]
    assert int(dm1["MemoryAvailable"]) != SENTINEL and prop(vms["dm1"], "MemoryStatus") == "OK"
    assert int(dm1["AvailableMemoryBuffer"]) > 80  # OK means > 80 (§1.3)
    off = by_name(summaries)["static(1)"]  # off: the "invalid" sentinels (§6.3)
    assert (off["MemoryUsage"], off["MemoryAvailable"], off["AvailableMemoryBuffer"]) == (
        "0",
        str(SENTINEL),
        str(SENTINEL),
    )
    assigned = int(dm1["MemoryUsage"])
    assert int(runtime[dm1["Name"]]["NumberOfBlocks"]) == assigned
    assert int(perf["dm1"]["PhysicalMemory"]) == assigned
    assert "static(1)" not in perf  # an off VM has no counter instance
    assert prop(counter[0], "CounterSamples")[0].adapted_properties["CookedValue"] == assigned


def test_a_change_through_wmi_is_seen_by_the_cmdlets_and_back(
    em: EmbeddedEmulator, client: WmiClient
) -> None:
    msd = memory_settings(client, em, "dm1")
    code, job = client.modify("ModifyResourceSettings", "ResourceSettings", [
        embedded("Msvm_MemorySettingData", {**msd, "TargetMemoryBuffer": 45, "Weight": 6000})
    ])  # fmt: skip
    assert code == 4096 and job  # a running VM: a job (§6.2)
    done = client.get("Msvm_ConcreteJob", InstanceID=job)
    assert (done["JobState"], done["ErrorCode"]) == ("7", "0")
    # a datetime as WinRM writes it: <cim:Datetime>ISO 8601</cim:Datetime> (read from within)
    submitted = datetime.fromisoformat(done["TimeSubmitted"].replace("Z", "+00:00"))
    assert submitted.tzinfo is not None and done["StartTime"] == done["TimeSubmitted"]
    mem = cmdlet(em, "Get-VMMemory", VMName="dm1")[0]
    assert (prop(mem, "Buffer"), prop(mem, "Priority")) == (45, 60)
    cmdlet(em, "Set-VMMemory", VMName="dm1", Buffer=35, Priority=80)
    after = memory_settings(client, em, "dm1")
    assert (after["TargetMemoryBuffer"], after["Weight"]) == ("35", "8000")


# -- enumeration, WQL, Get ----------------------------------------------------------------


def test_wql_enumerate_and_pull_in_batches(em: EmbeddedEmulator, client: WmiClient) -> None:
    for i in range(5):
        em.host.new_vm(f"batch-{i}", "512MB")
    try:
        found = client._enumerate(client.uri("*"), (
            "SELECT ElementName, Name FROM Msvm_ComputerSystem "
            "WHERE Caption = 'Virtual Machine' AND ElementName LIKE 'batch-%'"
        ), batch=2)  # fmt: skip
        assert sorted(r["ElementName"] for r in found) == [f"batch-{i}" for i in range(5)]
        assert all(r["EnabledState"] is None for r in found)  # not selected: nil
        host = client.query(
            "SELECT * FROM Msvm_ComputerSystem WHERE NOT Caption = 'Virtual Machine'"
        )
        assert [r["Caption"] for r in host] == ["Hosting Computer System"]
        none = client.query("SELECT * FROM Msvm_MemorySettingData WHERE Limit > 999999999")
        assert none == []
    finally:
        for i in range(5):
            em.host.remove(f"batch-{i}")


def test_get_by_key_selectors(em: EmbeddedEmulator, client: WmiClient) -> None:
    vm_id = str(em.host.get_vm("dm1").id).upper()
    got = client.get("Msvm_ComputerSystem", CreationClassName="Msvm_ComputerSystem", Name=vm_id)
    assert (got["ElementName"], got["EnabledState"]) == ("dm1", "2")
    with pytest.raises(WSManFaultError) as missing:
        client.get("Msvm_ComputerSystem", CreationClassName="Msvm_ComputerSystem", Name="NOPE")
    assert missing.value.code == RESOURCE_NOT_FOUND and missing.value.provider == "WMI Provider"
    with pytest.raises(WSManFaultError) as bad:
        client.get("Msvm_ComputerSystem", Colour="blue")
    assert bad.value.code == INVALID_SELECTORS


# -- faults ---------------------------------------------------------------------------------


def test_unknown_class_and_namespace_are_resource_not_found(client: WmiClient) -> None:
    with pytest.raises(WSManFaultError) as unknown:
        client.instances("Msvm_NoSuchClass")
    assert unknown.value.code == RESOURCE_NOT_FOUND
    assert "cannot find the resource" in (unknown.value.reason or "")
    with pytest.raises(WSManFaultError) as v1:  # a 2022 host has no v1 namespace
        WmiClient(client.wsman, V1).instances("Msvm_ComputerSystem")
    assert v1.value.code == RESOURCE_NOT_FOUND


@pytest.mark.parametrize(
    "query",
    [
        "SELEKT * FROM Msvm_ComputerSystem",
        "SELECT * FROM Msvm_ComputerSystem WHERE",
        "SELECT * FROM Msvm_NoSuchClass",
        "REFERENCES OF {Msvm_ComputerSystem.Name='x'}",
        "ASSOCIATORS OF {Msvm_ComputerSystem.Name='x'} WHERE ClassDefsOnly",
    ],
)
def test_a_bad_filter_is_cannot_process_filter(client: WmiClient, query: str) -> None:
    with pytest.raises(WSManFaultError) as fault:
        client.query(query)
    assert fault.value.code == CANNOT_PROCESS_FILTER


def test_wql_on_a_class_uri_is_refused(client: WmiClient) -> None:
    with pytest.raises(WSManFaultError) as fault:
        client._enumerate(client.uri("Msvm_ComputerSystem"), "SELECT * FROM Msvm_ComputerSystem")
    assert fault.value.code == CANNOT_PROCESS_FILTER


def test_pull_with_an_unknown_context_is_refused(client: WmiClient) -> None:
    import xml.etree.ElementTree as ET

    pull = ET.Element(f"{{{NAMESPACES['wsen']}}}Pull")
    ET.SubElement(pull, f"{{{NAMESPACES['wsen']}}}EnumerationContext").text = "uuid:NOPE"
    with pytest.raises(WSManFaultError) as fault:
        client.wsman.pull(client.uri("Msvm_ComputerSystem"), pull)
    assert fault.value.code == INVALID_CONTEXT


def test_access_denied_for_a_user_without_rights(em: EmbeddedEmulator, client: WmiClient) -> None:
    try:
        em.wmi.grant(em.username, "read")  # Remote Enable, no Execute Methods
        assert client.instances("Msvm_MemorySettingData")
        with pytest.raises(WSManFaultError) as denied:
            client.summaries([103])
        assert denied.value.code == ACCESS_DENIED
        em.wmi.grant(em.username, "none")
        with pytest.raises(WSManFaultError) as none:
            client.instances("Msvm_ComputerSystem")
        assert none.value.code == ACCESS_DENIED
    finally:
        em.wmi.grant(em.username, "full")


# -- ModifyResourceSettings refuses what Set-VMMemory refuses --------------------------------


def memory_settings(client: WmiClient, em: EmbeddedEmulator, name: str) -> dict[str, Any]:
    guid = str(em.host.get_vm(name).id).upper()
    return client.query(
        f"SELECT * FROM Msvm_MemorySettingData WHERE InstanceID LIKE 'Microsoft:{guid}%'"
    )[0]


KEEP = ("InstanceID", "VirtualQuantity", "Reservation", "Limit", "Weight",
        "DynamicMemoryEnabled", "TargetMemoryBuffer")  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code", "why"),
    [
        ({"VirtualQuantity": 2048}, 4096, "startup cannot change while a DM VM runs (§2.3)"),
        ({"Limit": 2048}, 4096, "the maximum can only be raised while it runs"),
        ({"Reservation": 1023}, 4, "odd MB is not 2 MB aligned (§2.1)"),
        ({"Reservation": 2048}, 4, "minimum above startup (§2.2)"),
        ({"TargetMemoryBuffer": 3}, 4, "buffer below 5 (§2.2)"),
        ({"Weight": 20000}, 4, "weight above 10000"),
        ({"DynamicMemoryEnabled": "maybe"}, 4, "not a boolean"),
    ],
)
def test_modify_refuses_what_set_vmmemory_refuses(
    em: EmbeddedEmulator, client: WmiClient, change: dict[str, Any], code: int, why: str
) -> None:
    before = em.host.get_vm("dm1").memory
    msd = {k: v for k, v in memory_settings(client, em, "dm1").items() if k in KEEP}
    result, job = client.modify("ModifyResourceSettings", "ResourceSettings", [
        embedded("Msvm_MemorySettingData", {**msd, **change})
    ])  # fmt: skip
    assert result == code, why
    if code == 4096:  # v2, a running VM: the state's refusal comes as a failed job
        failed = client.get("Msvm_ConcreteJob", InstanceID=job)
        assert (failed["JobState"], failed["ErrorCode"]) == ("10", "32775"), why
        assert failed["ErrorDescription"]
    else:
        assert job is None
    assert em.host.get_vm("dm1").memory == before


def test_modify_of_a_vm_that_is_off_returns_0(em: EmbeddedEmulator, client: WmiClient) -> None:
    msd = {k: v for k, v in memory_settings(client, em, "static(1)").items() if k in KEEP}
    result, job = client.modify("ModifyResourceSettings", "ResourceSettings", [
        embedded("Msvm_MemorySettingData", {**msd, "VirtualQuantity": 1024})
    ])  # fmt: skip
    assert (result, job) == (0, None)
    assert prop(cmdlet(em, "Get-VM", Name="static(1)")[0], "MemoryStartup") == 1024 * MB


# -- v1 and v2 per host version (§6.1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "has_v1", "has_v2"),
    [("2008R2SP1", True, False), ("2012", True, True), ("2016", False, True)],
)
def test_namespaces_per_host_version(version: str, has_v1: bool, has_v2: bool) -> None:
    with emulator(version) as em, wsman(em) as connection:
        for namespace, present in ((V1, has_v1), (V2, has_v2)):
            client = WmiClient(connection, namespace)
            if not present:
                with pytest.raises(WSManFaultError) as fault:
                    client.instances("Msvm_MemorySettingData")
                assert fault.value.code == RESOURCE_NOT_FOUND
                continue
            msd = by_name(client.instances("Msvm_MemorySettingData"), "InstanceID")
            dm = next(r for r in msd.values() if r["DynamicMemoryEnabled"] == "true")
            assert dm["AllocationUnits"] == ("MB" if namespace == V1 else "byte * 2^20")
            assert (dm["VirtualQuantity"], dm["TargetMemoryBuffer"]) == ("1024", "35")
            assert ("SwapFilesInUse" in dm) == (version != "2008R2SP1")  # Smart Paging: 2012
            code, summaries = client.summaries([1, 103, 112, 120])
            assert code == 0 and len(summaries) == 2
            assert ("SwapFilesInUse" in summaries[0]) == (version != "2008R2SP1")


def test_v1_modify_uses_v1_method_and_codes() -> None:
    with emulator("2008R2SP1") as em, wsman(em) as connection:
        client = WmiClient(connection, V1)
        msd = {k: v for k, v in memory_settings(client, em, "dm1").items() if k in KEEP}
        text = embedded("Msvm_MemorySettingData", {**msd, "TargetMemoryBuffer": 50})
        # 2008 R2 SP1 changes nothing while the VM runs (§2.3): invalid state, v1's 32775
        assert client.modify("ModifyVirtualSystemResources", "ResourceSettingData", [text]) == (
            32775,
            None,
        )
        with pytest.raises(WSManFaultError) as v2_method:
            client.modify("ModifyResourceSettings", "ResourceSettings", [text])
        assert v2_method.value.code == RESOURCE_NOT_FOUND
        em.host.stop("dm1", turn_off=True)
        assert client.modify("ModifyVirtualSystemResources", "ResourceSettingData", [text]) == (
            0,
            None,
        )
        assert em.host.get_vm("dm1").memory.buffer == 50


# -- WQL parser (pure) ---------------------------------------------------------------------


def test_wql_parser_semantics() -> None:
    row = {"ElementName": "Web[1]", "Limit": 4096, "DynamicMemoryEnabled": True, "Notes": None}
    assert parse("select * from X where elementname = 'web[1]'").matches(row)  # case-blind
    assert parse("SELECT * FROM X WHERE ElementName LIKE 'Web[[]%'").matches(row)
    assert parse("SELECT * FROM X WHERE Limit >= 4096 AND NOT (Limit > 5000)").matches(row)
    assert parse("SELECT * FROM X WHERE DynamicMemoryEnabled = TRUE").matches(row)
    assert parse("SELECT * FROM X WHERE Notes IS NULL").matches(row)
    assert not parse("SELECT * FROM X WHERE Notes = NULL").matches(row)
    assert parse("SELECT a, b FROM X").properties == ("a", "b")
    with pytest.raises(WqlError, match="expected FROM"):
        parse("SELECT * Msvm_ComputerSystem")


def test_summary_of_a_vm_that_is_gone_is_an_empty_entry_not_an_error(client: WmiClient) -> None:
    """One entry per SettingData, in order; one naming no VM is empty and ReturnValue is 0
    (MicrosoftDocs/win32 HyperV_v2 getsummaryinformation-msvm-virtualsystemmanagementservice.md)."""
    dm1 = client.query("SELECT Name FROM Msvm_ComputerSystem WHERE ElementName = 'dm1'")[0]
    gone = "Microsoft:0A1B2C3D-0000-4000-8000-00000000DEAD"
    code, found = client.summaries([1, 103], [gone, f"Microsoft:{dm1['Name']}"])
    assert code == 0
    assert [s["ElementName"] for s in found] == [None, "dm1"]
    assert found[0]["MemoryUsage"] is None and int(found[1]["MemoryUsage"]) > 0


def test_associators_of_a_vm_walk_to_its_settings_and_its_checkpoints() -> None:
    """`ASSOCIATORS OF {Msvm_ComputerSystem...} WHERE ResultClass=...`, the path real tools
    walk (PowerShell's GetRelated): the VM's realized settings and each checkpoint's, told
    apart by VirtualSystemType and the InstanceID's GUID; AssocClass narrows to one link."""
    with emulator("2022") as em, wsman(em) as connection:
        em.host.checkpoint("dm1", "before-upgrade")
        client = WmiClient(connection)
        guid = client.query("SELECT Name FROM Msvm_ComputerSystem WHERE ElementName = 'dm1'")[0][
            "Name"
        ]
        path = f'{{Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="{guid}"}}'
        related = client.query(
            f"ASSOCIATORS OF {path} WHERE ResultClass = Msvm_VirtualSystemSettingData"
        )
        kinds = sorted(
            (r["VirtualSystemType"], r["InstanceID"] == f"Microsoft:{guid}") for r in related
        )
        assert kinds == [
            ("Microsoft:Hyper-V:Snapshot:Realized", False),
            ("Microsoft:Hyper-V:System:Realized", True),
        ]
        own = client.query(
            f"ASSOCIATORS OF {path} WHERE AssocClass = Msvm_SettingsDefineState "
            "ResultClass = Msvm_VirtualSystemSettingData"
        )
        assert [r["InstanceID"] for r in own] == [f"Microsoft:{guid}"]
        memory = client.query(
            f"ASSOCIATORS OF {{Msvm_VirtualSystemSettingData.InstanceID='Microsoft:{guid}'}} "
            "WHERE ResultClass = Msvm_MemorySettingData"
        )
        assert [(m["InstanceID"].split("\\")[0], m["Limit"]) for m in memory] == [
            (f"Microsoft:{guid}", "4096")
        ]
        everything = client.query("SELECT InstanceID FROM Msvm_MemorySettingData")
        assert len(everything) == 3  # dm1, its checkpoint, static(1): a careless sum double-counts
        with pytest.raises(WSManFaultError) as gone:  # WBEM_E_NOT_FOUND, as a Get of it
            client.query("ASSOCIATORS OF {Msvm_ComputerSystem.Name='no-such-vm'}")
        assert gone.value.code == RESOURCE_NOT_FOUND


@pytest.mark.parametrize(
    ("version", "guest_available", "for_balancing"),
    [("2016", False, False), ("2019", False, True), ("2022", True, True)],
)
def test_counter_sets_per_build_in_wmi_and_get_counter_alike(
    version: str, guest_available: bool, for_balancing: bool
) -> None:
    """A counter a build lacks is absent from both surfaces (windows_exporter#2433: "Guest
    Available Memory" on 2019; #1924: "Available Memory For Balancing" on 2016)."""
    with emulator(version) as em, wsman(em) as connection:
        perf = WmiClient(connection, "root/cimv2")
        vm = perf.instances("Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM")
        balancer = perf.instances("Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryBalancer")
        assert [("GuestAvailableMemory" in r, "PhysicalMemory" in r) for r in vm] == [
            (guest_available, True)
        ]
        assert ("AvailableMemoryForBalancing" in balancer[0]) == for_balancing
        paths = [
            s.adapted_properties.get("Path", s.extended_properties.get("Path"))
            for sample_set in cmdlet(
                em, "Get-Counter", Counter="\\Hyper-V Dynamic Memory Balancer(*)\\*"
            )
            for s in prop(sample_set, "CounterSamples")
        ]
        assert any(p.endswith("\\available memory for balancing") for p in paths) == for_balancing
