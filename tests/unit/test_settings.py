"""Hyper-V's memory-setting rules (reference §2.2) and what may change while a VM runs, per
host version (§2.3), as harness.settings enforces them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from harness.errors import RuntimeChangeError, SettingError
from harness.settings import (
    DEFAULT_BUFFER,
    DEFAULT_PRIORITY,
    SET_VMMEMORY_PARAMETERS,
    HostVersion,
    MemoryChange,
    MemorySettings,
    check_runtime_change,
    max_memory_per_vm,
)
from harness.units import GB, MB, TB

V = HostVersion
DM = MemorySettings(dynamic=True, startup=2 * GB, minimum=1 * GB, maximum=8 * GB)
STATIC = MemorySettings(dynamic=False, startup=2 * GB, minimum=1 * GB, maximum=8 * GB)


def _error(settings: MemorySettings, version: V = V.V2022, generation: int = 2) -> SettingError:
    with pytest.raises(SettingError) as info:
        settings.validate(version, generation)
    return info.value


# -- versions and per-VM maximum -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("2016", V.V2016),
        ("WS2019", V.V2019),
        ("v2022", V.V2022),
        ("2008 R2 SP1", V.V2008R2SP1),
        ("ws 2012 r2", V.V2012R2),
        (V.V2012, V.V2012),
    ],
)
def test_host_version_parses_common_spellings(text: str | V, version: V) -> None:
    assert HostVersion.parse(text) is version


def test_host_version_refuses_unknown_versions_naming_the_allowed_ones() -> None:
    with pytest.raises(SettingError) as info:
        HostVersion.parse("2003")
    assert "2012R2" in info.value.rule


@pytest.mark.parametrize(
    ("version", "generation", "limit"),
    [
        (V.V2008R2SP1, 1, 64 * GB),
        (V.V2008R2SP1, 2, 64 * GB),
        (V.V2012, 1, TB),
        (V.V2012, 2, TB),
        (V.V2012R2, 2, TB),
        (V.V2016, 1, TB),
        (V.V2016, 2, 12 * TB),
        (V.V2019, 2, 12 * TB),
        (V.V2022, 1, TB),
        (V.V2022, 2, 12 * TB),
    ],
)
def test_per_vm_maximum_follows_version_and_generation(
    version: V, generation: int, limit: int
) -> None:
    assert max_memory_per_vm(version, generation) == limit
    at_limit = MemorySettings(dynamic=True, startup=GB, minimum=512 * MB, maximum=limit)
    at_limit.validate(version, generation)
    over = at_limit.with_changes(maximum=limit + 2 * MB)
    error = _error(over, version, generation)
    assert error.field == "maximum"
    assert version.value in error.rule


def test_startup_above_the_per_vm_maximum_is_refused_even_for_static_memory() -> None:
    error = _error(STATIC.with_changes(startup=66 * GB), V.V2008R2SP1)
    assert error.field == "startup"


# -- sizes ---------------------------------------------------------------------------------
def test_build_parses_sizes_and_defaults_minimum_and_maximum_to_startup() -> None:
    settings = MemorySettings.build(startup="2GB")
    assert (settings.startup, settings.minimum, settings.maximum) == (2 * GB, 2 * GB, 2 * GB)
    assert (settings.buffer, settings.priority) == (20, 50)  # §2.2 defaults
    assert (DEFAULT_BUFFER, DEFAULT_PRIORITY) == (20, 50)
    built = MemorySettings.build(startup="1GB", minimum="512MB", maximum="4GiB", buffer=30)
    assert built == MemorySettings(True, GB, 512 * MB, 4 * GB, 30, 50)


@pytest.mark.parametrize("field", ["startup", "minimum", "maximum"])
def test_sizes_must_be_2mb_aligned(field: str) -> None:
    odd = {"startup": 2049 * MB, "minimum": 1023 * MB, "maximum": 4097 * MB}[field]
    error = _error(DM.with_changes(**{field: odd}))
    assert error.field == field
    assert "2 MB aligned" in error.rule


@pytest.mark.parametrize("field", ["startup", "minimum", "maximum"])
def test_sizes_must_be_integers(field: str) -> None:
    assert _error(DM.with_changes(**{field: 2.0 * GB})).field == field
    assert _error(DM.with_changes(**{field: True})).field == field


def test_startup_is_at_least_32mb_even_when_static() -> None:
    MemorySettings(dynamic=False, startup=32 * MB, minimum=32 * MB, maximum=32 * MB).validate()
    error = _error(MemorySettings(dynamic=False, startup=30 * MB, minimum=30 * MB, maximum=GB))
    assert error.field == "startup"
    assert "32MB" in error.rule


def test_minimum_is_at_least_32mb() -> None:
    DM.with_changes(minimum=32 * MB).validate()
    error = _error(DM.with_changes(minimum=30 * MB))
    assert (error.field, error.value) == ("minimum", "30MB")


def test_static_memory_ignores_minimum_and_maximum() -> None:
    MemorySettings(dynamic=False, startup=2 * GB, minimum=4 * GB, maximum=GB).validate()


@given(
    st.integers(min_value=16, max_value=64 * 1024),
    st.integers(min_value=16, max_value=64 * 1024),
    st.integers(min_value=16, max_value=64 * 1024),
)
def test_dynamic_ordering_minimum_startup_maximum(lo: int, mid: int, hi: int) -> None:
    """Even MB sizes ≥ 32 MB pass exactly when minimum ≤ startup ≤ maximum (§2.2)."""
    minimum, startup, maximum = (2 * n * MB for n in (lo, mid, hi))
    settings = MemorySettings(True, startup, minimum, maximum)
    if minimum <= startup <= maximum:
        settings.validate()
        return
    error = _error(settings)
    assert error.field == ("minimum" if minimum > startup else "maximum")
    assert "minimum ≤ startup ≤ maximum" in error.rule


@given(st.integers(min_value=-5000, max_value=5000))
def test_buffer_is_5_to_2000_percent(buffer: int) -> None:
    settings = DM.with_changes(buffer=buffer)
    if 5 <= buffer <= 2000:
        settings.validate()
    else:
        error = _error(settings)
        assert (error.field, error.value) == ("buffer", buffer)
        assert "5 to 2000" in error.rule


@given(st.integers(min_value=-500, max_value=500))
def test_priority_is_0_to_100(priority: int) -> None:
    settings = DM.with_changes(priority=priority)
    if 0 <= priority <= 100:
        settings.validate()
    else:
        error = _error(settings)
        assert (error.field, error.value) == ("priority", priority)
        assert "0 to 100" in error.rule


@pytest.mark.parametrize("dynamic", [True, False])
def test_buffer_and_priority_must_be_integers(dynamic: bool) -> None:
    base = DM.with_changes(dynamic=dynamic)
    assert _error(base.with_changes(buffer=True)).field == "buffer"
    assert _error(base.with_changes(priority=50.0)).field == "priority"


# -- runtime changes (§2.3) ------------------------------------------------------------------
CHANGES: dict[str, dict[str, object]] = {
    "dynamic": {},  # toggled: on for a static VM, off for a DM VM
    "startup up": {"startup": 3 * GB},
    "startup down": {"startup": GB + 512 * MB},
    "maximum up": {"maximum": 16 * GB},
    "maximum down": {"maximum": 4 * GB},
    "minimum up": {"minimum": GB + 512 * MB},
    "minimum down": {"minimum": 512 * MB},
    "buffer": {"buffer": 50},
    "priority": {"priority": 80},
}
# The §2.3 table written out row by row; 2016+ DM VMs take the 2012 R2 row (§8.1 assumption,
# stated in harness.settings) and 2008 R2 SP1 allows nothing (§8.2: the conservative answer).
ALLOWED_DM_2012 = {"maximum up", "minimum down", "buffer", "priority"}
EXPECTED_DM = {
    V.V2008R2SP1: set(),
    V.V2012: ALLOWED_DM_2012,
    V.V2012R2: ALLOWED_DM_2012,
    V.V2016: ALLOWED_DM_2012,
    V.V2019: ALLOWED_DM_2012,
    V.V2022: ALLOWED_DM_2012,
}
# Static VMs: minimum/maximum/buffer are stored but unused, so changing them is not refused;
# 2016+ adds Runtime Memory Resize (startup both ways).
UNUSED_WHEN_STATIC = {"maximum up", "maximum down", "minimum up", "minimum down", "buffer"}
EXPECTED_STATIC = {
    V.V2008R2SP1: UNUSED_WHEN_STATIC,
    V.V2012: UNUSED_WHEN_STATIC | {"priority"},
    V.V2012R2: UNUSED_WHEN_STATIC | {"priority"},
    V.V2016: UNUSED_WHEN_STATIC | {"priority", "startup up", "startup down"},
    V.V2019: UNUSED_WHEN_STATIC | {"priority", "startup up", "startup down"},
    V.V2022: UNUSED_WHEN_STATIC | {"priority", "startup up", "startup down"},
}


@pytest.mark.parametrize(
    ("version", "dynamic", "change"),
    list(itertools.product(list(V), [True, False], list(CHANGES))),
    ids=lambda v: v.value if isinstance(v, V) else str(v),
)
def test_runtime_change_matrix(version: V, dynamic: bool, change: str) -> None:
    old = DM if dynamic else STATIC
    new = old.with_changes(**CHANGES[change])
    if change == "dynamic":
        new = old.with_changes(dynamic=not dynamic)
    allowed = change in (EXPECTED_DM if dynamic else EXPECTED_STATIC)[version]
    if allowed:
        check_runtime_change(old, new, version)
        return
    with pytest.raises(RuntimeChangeError) as info:
        check_runtime_change(old, new, version)
    error = info.value
    assert error.field == change.split()[0]
    assert error.host_version == version.value
    assert version.value in str(error)
    assert "while the VM runs" in error.rule


@pytest.mark.parametrize("version", list(V))
def test_no_change_is_always_allowed(version: V) -> None:
    check_runtime_change(DM, DM, version)
    check_runtime_change(STATIC, STATIC, version)


def test_runtime_change_error_shows_new_and_old_value() -> None:
    with pytest.raises(RuntimeChangeError) as info:
        check_runtime_change(DM, DM.with_changes(maximum=4 * GB), V.V2012R2)
    assert info.value.value == "4GB (was 8GB)"
    assert "increased" in info.value.rule


@given(st.integers(min_value=-20, max_value=20), st.integers(min_value=-20, max_value=20))
def test_2012r2_dm_bounds_only_widen_while_running(max_step: int, min_step: int) -> None:
    """Any mix in one write: allowed exactly when Maximum does not fall and Minimum does not rise."""
    assume(max_step or min_step)
    new = DM.with_changes(
        maximum=DM.maximum + max_step * 128 * MB, minimum=DM.minimum + min_step * 8 * MB
    )
    if max_step >= 0 and min_step <= 0:
        check_runtime_change(DM, new, V.V2012R2)
    else:
        with pytest.raises(RuntimeChangeError):
            check_runtime_change(DM, new, V.V2012R2)


# -- a memory change as one value ---------------------------------------------------------------
def test_a_change_names_only_what_it_sets() -> None:
    change = MemoryChange(maximum=16 * GB, buffer=30)
    assert change.fields() == {"maximum": 16 * GB, "buffer": 30}
    assert change.parameters() == {"MaximumBytes": 16 * GB, "Buffer": 30}
    assert change.shown() == {"maximum": "16GB", "buffer": 30}
    assert change.applied_to(DM) == MemorySettings(True, 2 * GB, 1 * GB, 16 * GB, 30, 50)
    assert MemoryChange().fields() == {} and MemoryChange().applied_to(DM) == DM


def test_every_setting_has_one_set_vmmemory_parameter() -> None:
    assert list(SET_VMMEMORY_PARAMETERS) == [
        "dynamic", "startup", "minimum", "maximum", "buffer", "priority"
    ]  # fmt: skip
    assert MemoryChange.full(DM).applied_to(STATIC) == DM
    assert MemoryChange.full(DM).parameters() == {
        "DynamicMemoryEnabled": True,
        "StartupBytes": 2 * GB,
        "MinimumBytes": 1 * GB,
        "MaximumBytes": 8 * GB,
        "Buffer": 20,
        "Priority": 50,
    }


def test_a_full_change_of_static_memory_leaves_out_what_only_dm_takes() -> None:
    """Set-VMMemory takes -MinimumBytes, -MaximumBytes and -Buffer only with DM enabled (§1.1)."""
    assert MemoryChange.full(STATIC).parameters() == {
        "DynamicMemoryEnabled": False,
        "StartupBytes": 2 * GB,
        "Priority": 50,
    }


def test_false_is_a_change_and_none_is_not() -> None:
    assert MemoryChange(dynamic=False).parameters() == {"DynamicMemoryEnabled": False}
    assert MemoryChange(priority=0).fields() == {"priority": 0}
