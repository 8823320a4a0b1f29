"""ObjectShape writes exactly the CLIXML psrpcore's serializer writes for the same object, so
Get-VM's fast path cannot drift from the real shapes (and pypsrp reads it back the same)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psrpcore.types import serialize
from pypsrp.serializer import Serializer

from harness.emulator.cmdlets.shapes import VM_SHAPE, vm_object, vm_properties
from harness.emulator.host import CheckpointType, EmulatedHost, VMState
from harness.emulator.psobjects import ObjectShape, int64, make_enum, make_object
from harness.settings import MemoryChange
from harness.units import GB, MB

HOSTILE = 'it\'s "q" $(x) `t ; & | <b> ]]> _x000A_ _X1234_ \t\r\nünï 名 \x01\x7f 😀'


def psrpcore_clixml(types: tuple[str, ...], props: dict[str, Any], to_string: str) -> bytes:
    element = serialize(make_object(types, props, to_string), None)  # type: ignore[arg-type]
    return ElementTree.tostring(element, encoding="utf-8", method="xml")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[EmulatedHost]:
    # a clock that stands still: a started VM stays booting (Running, NoContact) meanwhile
    with EmulatedHost(
        "16GB", clock=lambda: 0.0, guest_root=tmp_path, disks={"C:\\d.vhdx": "linux"}
    ) as h:
        yield h


def test_vm_objects_in_every_state_match_psrpcore(host: EmulatedHost) -> None:
    off = host.new_vm("off " + HOSTILE, 1 * GB, vhd_path="C:\\d.vhdx")
    host.set_notes(off.id, HOSTILE)
    dm = host.new_vm("dm", 1 * GB)
    host.set_memory(dm.id, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
    host.set_checkpoint_type(dm.id, CheckpointType.Standard)
    host.start(dm.id)  # Running at once, heartbeat NoContact while the guest boots
    host.checkpoint(dm.id, "cp")
    paused = host.new_vm("paused", 1 * GB)
    host.start(paused.id)
    host.pause(paused.id)  # VMState Paused and Heartbeat Paused: same name, two enums
    states = set()
    for vm in host.find_vms("*"):
        states.add(vm.state)
        expected = psrpcore_clixml(
            VM_SHAPE.type_names[:-1],
            vm_properties(vm),
            f"VirtualMachine (Name = '{vm.name}') [Id = '{vm.id}']",
        )
        assert vm_object(vm).clixml == expected, vm.name
    assert states == {VMState.Off, VMState.Running, VMState.Paused}


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),
    st.integers(min_value=-(2**31), max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(int64),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([None, datetime.timezone.utc])),
    st.timedeltas(),
    st.sampled_from(["Running", "Off"]).map(lambda n: make_enum("Toy.State", n, len(n))),
    st.lists(st.text(max_size=8), max_size=3),
)


@given(
    props=st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True), _values),
    to_string=st.text(max_size=20),
)
def test_any_supported_values_match_psrpcore(props: dict[str, Any], to_string: str) -> None:
    shape = ObjectShape(("Toy.Thing", "Toy.Base"))
    expected = psrpcore_clixml(("Toy.Thing", "Toy.Base"), props, to_string)
    assert shape.render(props, to_string).clixml == expected


def test_pypsrp_reads_a_shaped_vm_like_any_other(host: EmulatedHost) -> None:
    vm = host.new_vm("vm", 2 * GB)
    parsed = Serializer().deserialize(vm_object(vm).clixml.decode())
    assert parsed.adapted_properties["MemoryStartup"] == 2 * GB
    assert str(parsed.adapted_properties["State"]) == "Off"
    assert parsed.adapted_properties["VMId"] == vm.id


def test_unsupported_values_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="cannot write a float"):
        ObjectShape(("Toy.Thing",)).render({"Ratio": 0.5})
    with pytest.raises(ValueError, match="at least one type name"):
        ObjectShape(())
