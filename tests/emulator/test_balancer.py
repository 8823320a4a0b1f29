"""The DM balancer (reference §3) and the values derived from it (§1.3, §4.1, §4.2), driven
by a fake clock: one `tick` is one balancer pass, no real time passes."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.emulator.balancer import (
    DEFAULT_BLOCK_MB,
    INVALID,
    Balancer,
    Timings,
    available_buffer_percent,
    derived_demand_mb,
    linux_balloon_floor_mb,
    memory_available_percent,
    memory_status,
)
from harness.emulator.errors import NotEnoughMemoryError
from harness.emulator.guestview import LinuxProfile, WindowsProfile
from harness.emulator.host import EmulatedHost, Heartbeat, VMState, default_reserve
from harness.expect import TRACK_WITHIN_S
from harness.settings import (
    DEFAULT_BUFFER,
    DEFAULT_PRIORITY,
    HostVersion,
    MemoryChange,
    MemorySettings,
)
from harness.units import GB, MB, parse_size

FAST = Timings.fast()
WINDOWS = WindowsProfile(baseline_commit_mb=700)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_host(
    clock: FakeClock, total: str = "16GB", reserve: str = "1GB", **kw: object
) -> EmulatedHost:
    return EmulatedHost(
        total,
        reserve=reserve,
        clock=clock,
        windows_profile=WINDOWS,
        linux_profile=LinuxProfile(baseline_commit_mb=250),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def host(clock: FakeClock) -> Iterator[EmulatedHost]:
    with make_host(clock) as h:
        yield h


def run(host: EmulatedHost, clock: FakeClock, seconds: float) -> None:
    """Advance the fake clock tick by tick, letting the balancer act at each."""
    ticks = round(seconds / host.timings.tick)
    for _ in range(ticks):
        clock.now = round(clock.now + host.timings.tick, 9)
        host.tick()


def dm_vm(
    host: EmulatedHost,
    name: str,
    *,
    startup: str = "1GB",
    minimum: str = "512MB",
    maximum: str = "8GB",
    buffer: int = DEFAULT_BUFFER,
    priority: int = DEFAULT_PRIORITY,
    guest_os: str = "windows",
    start: bool = True,
) -> uuid.UUID:
    vm = host.new_vm(name, startup, guest_os=guest_os)
    change = MemoryChange(
        dynamic=True,
        minimum=parse_size(minimum),
        maximum=parse_size(maximum),
        buffer=buffer,
        priority=priority,
    )
    host.set_memory(vm.id, change)
    if start:
        host.start(vm.id)
    return vm.id


def expected_target(demand_mb: int, buffer: int, minimum_mb: int, maximum_mb: int) -> int:
    """§3.2: demand × (1 + B/100), up to the 128 MB hot-add block, within [Minimum, Maximum]."""
    grown = -(-demand_mb * (100 + buffer) // 100)
    return min(max(-(-grown // 128) * 128, minimum_mb), maximum_mb)


def expected_settled(startup_mb: int, target_mb: int, minimum_mb: int = 0) -> int:
    """Where a VM starting at `startup_mb` settles: up to the target from below; from above,
    down to it only when the surplus is beyond one block, the dead band (§3.4) — no band
    when the target is the Minimum."""
    band = 0 if target_mb <= minimum_mb else DEFAULT_BLOCK_MB
    if startup_mb - target_mb > band:
        return target_mb
    return max(startup_mb, target_mb)


def load(host: EmulatedHost, vm: uuid.UUID, mb: int) -> None:
    host.guest(vm).synthetic_mb = mb


# -- convergence and bounds ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("buffer", "load_mb", "maximum"),
    [(20, 1000, "8GB"), (5, 3000, "8GB"), (100, 200, "8GB"), (50, 9000, "8GB"), (20, 0, "8GB")],
)
def test_assigned_converges_to_demand_plus_buffer_within_bounds(
    host: EmulatedHost, clock: FakeClock, buffer: int, load_mb: int, maximum: str
) -> None:
    vm = dm_vm(host, "vm", buffer=buffer, maximum=maximum)
    load(host, vm, load_mb)
    run(host, clock, 12)
    mem = host.memory(vm)
    demand = WINDOWS.baseline_commit_mb + load_mb
    assert mem.guest_demand_mb == demand
    assert mem.assigned_mb == expected_settled(1024, expected_target(demand, buffer, 512, 8192))
    # it stays there: a settled VM gets no more add or remove operations
    ops = (mem.add_operations, mem.remove_operations)
    run(host, clock, 3)
    later = host.memory(vm)
    assert (later.add_operations, later.remove_operations) == ops


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=12000),
    st.integers(min_value=5, max_value=300),
    st.integers(min_value=16, max_value=2048),
    st.integers(min_value=0, max_value=2048),
    st.integers(min_value=0, max_value=4096),
)
def test_target_formula_holds_for_any_demand_buffer_and_bounds(
    demand: int, buffer: int, min_half: int, startup_extra: int, max_extra: int
) -> None:
    minimum = 2 * min_half
    startup = minimum + 2 * startup_extra
    maximum = startup + 2 * max_extra
    balancer = Balancer(64 * 1024, 1024, dataclasses.replace(FAST, removal_step_mb=1024))
    balancer.add(
        "vm",
        MemorySettings(True, startup * MB, minimum * MB, maximum * MB, buffer, 50),
        WindowsProfile(baseline_commit_mb=0),
    )
    balancer.power_on("vm", 0.0)
    now = 0.0
    for _ in range(150):
        now += FAST.tick
        balancer.report("vm", demand)
        balancer.tick(now)
    target = expected_target(demand, buffer, minimum, maximum)
    assigned = balancer.memory("vm").assigned_mb
    assert assigned == expected_settled(startup, target, minimum)


def _invariants(balancer: Balancer, keys: list[str], bounds: dict[str, tuple[int, int]]) -> None:
    for key in keys:
        mem = balancer.memory(key)
        lo, hi = bounds[key]
        assert lo <= mem.assigned_mb <= hi, (key, mem)
        startup = balancer.capture(key).boot_startup_mb
        assert mem.added_mb - mem.removed_mb == mem.assigned_mb - startup, (key, mem)
    assert balancer.available_mb() >= 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=9000),
            st.integers(min_value=0, max_value=9000),
            st.integers(min_value=1, max_value=30),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=100),
)
def test_never_above_maximum_nor_below_minimum_and_counters_balance(
    phases: list[tuple[int, int, int]], priority: int
) -> None:
    """Two VMs on a host too small for both, demand jumping around: Minimum ≤ assigned ≤
    Maximum always, the host never over-commits, and Added − Removed = assigned − startup."""
    balancer = Balancer(8 * 1024, 1024, FAST)
    bounds = {"a": (512, 6144), "b": (768, 4096)}
    balancer.add("a", MemorySettings(True, 2 * GB, 512 * MB, 6 * GB, 20, priority), WINDOWS)
    balancer.add("b", MemorySettings(True, 1 * GB, 768 * MB, 4 * GB, 50, 50), LinuxProfile())
    balancer.power_on("a", 0.0)
    balancer.power_on("b", 0.0)
    now = 0.0
    for load_a, load_b, ticks in phases:
        for _ in range(ticks):
            now += 0.1
            balancer.report("a", 700 + load_a)
            balancer.report("b", 250 + load_b)
            balancer.tick(now)
            _invariants(balancer, ["a", "b"], bounds)


# -- speed: growth at once, removal after a hold-off and in steps ----------------------------
def test_removal_waits_for_the_holdoff_and_is_slower_than_growth(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = dm_vm(host, "vm")
    run(host, clock, 5)
    idle = host.memory(vm).assigned_mb
    assert idle == expected_settled(1024, expected_target(700, 20, 512, 8192))

    load(host, vm, 3000)
    growth_ticks = 0
    while host.memory(vm).assigned_mb < expected_target(3700, 20, 512, 8192):
        run(host, clock, FAST.tick)
        growth_ticks += 1
    # growth answers the latest report, in steps of add_step_mb per pass (§3.3)
    assert growth_ticks == -(-(expected_target(3700, 20, 512, 8192) - idle) // FAST.add_step_mb)
    grown = host.memory(vm)

    load(host, vm, 0)
    removal_ticks = 0
    previous = grown.assigned_mb
    while host.memory(vm).assigned_mb > idle:
        run(host, clock, FAST.tick)
        removal_ticks += 1
        now = host.memory(vm).assigned_mb
        if removal_ticks * FAST.tick < FAST.kept_after_add - 1e-9:
            assert now == previous, "ballooned within the time a hot-add is kept"
        assert previous - now <= FAST.removal_step_mb
        previous = now
        assert removal_ticks < 200
    assert removal_ticks * FAST.tick >= FAST.kept_after_add >= FAST.removal_holdoff
    assert removal_ticks > growth_ticks * 5
    assert host.memory(vm).remove_operations >= (grown.assigned_mb - idle) // FAST.removal_step_mb


def test_a_brief_dip_in_demand_does_not_balloon(host: EmulatedHost, clock: FakeClock) -> None:
    vm = dm_vm(host, "vm")
    load(host, vm, 2000)
    run(host, clock, 3)
    high = host.memory(vm)
    load(host, vm, 0)
    run(host, clock, FAST.removal_holdoff / 2)
    load(host, vm, 2000)
    run(host, clock, FAST.removal_holdoff)
    after = host.memory(vm)
    assert after.assigned_mb == high.assigned_mb
    assert after.remove_operations == high.remove_operations


def test_ballooning_never_goes_below_minimum(host: EmulatedHost, clock: FakeClock) -> None:
    vm = dm_vm(host, "vm", startup="4GB", minimum="2GB")
    run(host, clock, 30)
    mem = host.memory(vm)
    assert mem.assigned_mb == 2048  # demand 700 wants 896, Minimum wins
    assert mem.status == "OK"


# -- a host that is short -------------------------------------------------------------------
def test_weight_decides_who_gets_memory_when_the_host_is_short(clock: FakeClock) -> None:
    with make_host(clock, total="8GB", reserve="1GB") as host:  # 7168 MB for VMs
        high = dm_vm(host, "high", priority=90)
        low = dm_vm(host, "low", priority=10)
        load(host, high, 4000)
        load(host, low, 4000)
        run(host, clock, 5)
        hi, lo = host.memory(high), host.memory(low)
        assert hi.assigned_mb == 4736  # demand 4700 in whole blocks; its buffer was dropped
        assert lo.assigned_mb == 7168 - 4736
        assert (hi.status, lo.status) == ("Low", "Warning")
        assert host.balancer_counters()["Available Memory"] == 0


def test_buffers_are_dropped_before_memory_goes_by_weight(clock: FakeClock) -> None:
    with make_host(clock, total="5632MB", reserve="1GB") as host:  # 4608 MB for VMs
        high = dm_vm(host, "high", priority=80)
        low = dm_vm(host, "low", priority=20)
        load(host, high, 1300)
        load(host, low, 1300)  # demand 2000 each: need 2048, want 2432
        run(host, clock, 5)
        hi, lo = host.memory(high), host.memory(low)
        assert hi.assigned_mb == 2432  # full buffer for the higher weight
        assert 2048 <= lo.assigned_mb < 2432  # its demand is met, only its buffer is cut
        assert hi.assigned_mb + lo.assigned_mb == 4608


def test_a_starved_vm_takes_memory_from_a_lower_priority_vm_without_holdoff(
    clock: FakeClock,
) -> None:
    with make_host(clock, total="8GB", reserve="1GB") as host:
        high = dm_vm(host, "high", priority=90)
        low = dm_vm(host, "low", priority=10)
        load(host, low, 2300)
        run(host, clock, 5)
        before = host.memory(low).assigned_mb
        assert before == expected_target(3000, 20, 512, 8192)
        load(host, high, 4000)
        run(host, clock, 3 * FAST.tick)  # well inside the removal hold-off
        assert host.memory(low).assigned_mb < before
        run(host, clock, 5)
        hi, lo = host.memory(high), host.memory(low)
        assert hi.assigned_mb >= 4736
        assert lo.assigned_mb == 7168 - hi.assigned_mb


def test_free_memory_goes_to_the_higher_priority_vm_first(clock: FakeClock) -> None:
    unsmoothed = dataclasses.replace(FAST, demand_window=FAST.tick)  # one pass sees the jump
    with make_host(clock, total="8GB", reserve="1GB", timings=unsmoothed) as host:
        low = dm_vm(host, "low", priority=10)
        high = dm_vm(host, "high", priority=90)
        holder = dm_vm(host, "holder")
        load(host, holder, 3000)
        run(host, clock, 8)
        idle = expected_settled(1024, 896)
        assert host.balancer_counters()["Available Memory"] == 7168 - 2 * idle - 4480
        load(host, holder, 0)  # its memory comes back only after the hold-off
        load(host, low, 1000)
        load(host, high, 1000)
        run(host, clock, FAST.tick)
        free = 7168 - 2 * idle - 4480
        assert host.memory(high).assigned_mb == idle + free  # all that was free
        assert host.memory(low).assigned_mb == idle
        run(host, clock, 5)
        assert host.memory(low).assigned_mb == host.memory(high).assigned_mb == 2048


def test_a_linux_guest_refuses_to_balloon_below_its_floor(clock: FakeClock) -> None:
    with make_host(clock, total="6GB", reserve="1GB") as host:
        high = dm_vm(host, "high", priority=100)
        linux = dm_vm(host, "linux", priority=0, minimum="256MB", guest_os="linux")
        load(host, linux, 500)
        run(host, clock, 3)
        load(host, high, 6000)  # wants everything
        run(host, clock, 10)
        lin = host.memory(linux)
        committed = 250 + 500
        floor = committed + linux_balloon_floor_mb(lin.assigned_mb)
        assert lin.assigned_mb >= floor  # "Balloon floor reached" (§5.3)
        assert lin.assigned_mb - floor <= 2 + 128  # and it gave everything above it
        assert host.memory(high).assigned_mb > 3000


# -- Smart Paging ----------------------------------------------------------------------------
def test_smart_paging_covers_a_restart_when_the_host_lacks_startup(clock: FakeClock) -> None:
    windows = WindowsProfile(baseline_commit_mb=300)
    with EmulatedHost("4GB", reserve="512MB", clock=clock, windows_profile=windows) as host:
        a = dm_vm(host, "a", startup="2GB", minimum="512MB", maximum="4GB")
        run(host, clock, 20)
        assert host.memory(a).assigned_mb == 512  # ballooned down to Minimum
        b = host.new_vm("b", "2560MB").id
        host.start(b)  # static; leaves 3584 − 512 − 2560 = 512 MB free

        snap = host.restart(a)
        assert snap.smart_paging_file_in_use
        assert snap.memory_status == "Paging"
        assert snap.memory_assigned == 2 * GB
        assert host.vm_counters(a)["Smart Paging Working Set Size"] == 1024
        assert host.available_memory() == 0

        run(host, clock, 10)  # after boot the paged part is ballooned out (§3.6)
        mem = host.memory(a)
        assert not mem.smart_paging_in_use
        assert mem.status != "Paging"
        assert mem.assigned_mb <= 1024
        assert mem.added_mb - mem.removed_mb == mem.assigned_mb - 2048

        # a start from Off never uses Smart Paging: it fails like Hyper-V
        host.stop(a)
        host.start(b)
        with pytest.raises(NotEnoughMemoryError) as info:
            host.start(a)
        assert info.value.category == "ResourceUnavailable"
        assert "Not enough memory in the system to start the virtual machine a" in str(info.value)
        assert "ram size 2048 megabytes" in str(info.value)
        assert host.get_vm(a).state is VMState.Off


# -- quiet period and boot -------------------------------------------------------------------
def test_the_quiet_period_after_boot_is_honoured(clock: FakeClock) -> None:
    timings = dataclasses.replace(FAST, boot=0.3, quiet_after_boot=2.0)
    with make_host(clock, timings=timings) as host:
        vm = dm_vm(host, "vm", start=False)
        load(host, vm, 3000)
        host.start(vm)
        snap = host.get_vm(vm)
        assert snap.state is VMState.Running  # at once; the guest still boots
        assert snap.heartbeat is Heartbeat.NoContact
        assert (snap.memory_demand, snap.memory_status) == (0, "")  # no reports while booting
        run(host, clock, 0.5)
        snap = host.get_vm(vm)
        assert snap.state is VMState.Running
        assert snap.memory_status == "Warning"  # reports arrive, DM does not act yet
        run(host, clock, 1.0)  # t = 1.5
        mem = host.memory(vm)
        assert (mem.assigned_mb, mem.add_operations, mem.balancing) == (1024, 0, False)
        run(host, clock, 0.5)  # t = 2.0: the quiet period is over
        mem = host.memory(vm)
        assert mem.balancing and mem.add_operations == 1
        run(host, clock, 1.0)  # hot-add comes in steps of add_step_mb per pass
        assert host.memory(vm).assigned_mb == expected_target(3700, 20, 512, 8192)


def test_realistic_timings_wait_fifty_seconds() -> None:
    real = Timings.realistic()
    assert (real.tick, real.quiet_after_boot) == (1.0, 50.0)
    assert real.removal_holdoff > FAST.removal_holdoff
    assert FAST.tick <= 0.25 and FAST.quiet_after_boot <= 0.5


def test_fast_is_the_realistic_dynamic_on_a_uniform_time_scale() -> None:
    """`fast` compresses time, it does not change the dynamic: every duration that shapes
    how adding and removing interact keeps its ratio to the cadence, and each step its size."""
    real = Timings.realistic()
    for name in ("removal_holdoff", "kept_after_add", "demand_window", "pressure_window"):
        assert getattr(FAST, name) / FAST.tick == pytest.approx(getattr(real, name) / real.tick)
    assert (FAST.removal_step_mb, FAST.add_step_mb) == (real.removal_step_mb, real.add_step_mb)
    assert FAST.removal_holdoff >= 5 * FAST.tick  # removal waits several passes (§3.4)
    # what was hot-added outlasts the tracking window, so a view frozen before it is seen
    assert FAST.kept_after_add > TRACK_WITHIN_S


# -- MemoryStatus and the derived values -----------------------------------------------------
@pytest.mark.parametrize(
    ("dynamic", "paging", "buffer", "spans", "status"),
    [
        (True, True, 500, False, "Paging"),
        (True, True, INVALID, False, "Paging"),
        (True, False, INVALID, False, ""),
        (True, False, -1, False, "Warning"),
        (True, False, 0, False, "Low"),
        (True, False, 80, False, "Low"),
        (True, False, 81, False, "OK"),
        (True, False, 100, True, "OK"),
        (False, False, INVALID, True, "Spanning"),
        (False, True, 50, False, ""),
    ],
)
def test_memory_status_rule(
    dynamic: bool, paging: bool, buffer: int, spans: bool, status: str
) -> None:
    assert (
        memory_status(
            dynamic=dynamic, smart_paging=paging, available_buffer=buffer, spans_numa=spans
        )
        == status
    )


def test_memory_status_on_vms(clock: FakeClock) -> None:
    with make_host(clock, numa_node_memory="1GB") as host:
        dm_vm(host, "ok")
        capped = dm_vm(host, "capped", maximum="2GB")
        tight = dm_vm(host, "tight", maximum="2GB")
        static = host.new_vm("static", "1GB").id
        spanning = host.new_vm("spanning", "2GB").id
        off = dm_vm(host, "off", start=False)
        host.start(static)
        host.start(spanning)
        load(host, capped, 3000)
        load(host, tight, 1300)  # demand 2000 under a 2 GB cap: 48 MB of a 400 MB buffer
        run(host, clock, 5)
        status = {
            name: host.get_vm(name).memory_status
            for name in ("ok", "capped", "tight", "static", "spanning", "off")
        }
        assert status == {
            "ok": "OK",
            "capped": "Warning",
            "tight": "Low",
            "static": "",
            "spanning": "Spanning",
            "off": "",
        }
        assert host.get_vm(tight).available_memory_buffer == 48 * 100 // 400
        assert host.get_vm(static).memory_demand == 0  # MemoryAvailable is DM only (§6.3)
        assert host.get_vm(off).memory_assigned == 0


@pytest.mark.parametrize(
    ("demand", "assigned", "available", "derived"),
    [
        (433, 1000, 56, 440),  # demand moves in steps of 1 % of assigned (§1.3)
        (500, 1000, 50, 500),
        (1234, 1000, -23, 1230),  # short: negative MemoryAvailable
        (0, 1024, 100, 0),
    ],
)
def test_memory_demand_derivation(demand: int, assigned: int, available: int, derived: int) -> None:
    assert memory_available_percent(demand, assigned) == available
    assert derived_demand_mb(assigned, available) == derived


def test_demand_is_zero_without_data_and_buffer_percent_is_buffer_relative() -> None:
    assert derived_demand_mb(1024, INVALID) == 0
    assert memory_available_percent(100, 0) == INVALID
    assert available_buffer_percent(1000, 1200, 20) == 100  # exactly at target
    assert available_buffer_percent(1000, 1100, 20) == 50
    assert available_buffer_percent(1000, 900, 20) == -50


def test_get_vm_demand_is_derived_from_the_integer_available_percent(
    host: EmulatedHost, clock: FakeClock
) -> None:
    vm = dm_vm(host, "vm")
    load(host, vm, 333)
    run(host, clock, 0.5)
    snap = host.get_vm(vm)
    assigned_mb = snap.memory_assigned // MB
    available = memory_available_percent(1033, assigned_mb)
    assert snap.memory_available == available
    assert snap.memory_demand == assigned_mb * (100 - available) // 100 * MB


@pytest.mark.parametrize(
    ("total_mb", "floor"), [(100, 58), (256, 104), (2048, 360), (8192, 744), (32768, 1512)]
)
def test_linux_balloon_floor(total_mb: int, floor: int) -> None:
    assert linux_balloon_floor_mb(total_mb) == floor


# -- counters --------------------------------------------------------------------------------
VM_COUNTERS = {
    "Physical Memory",
    "Guest Visible Physical Memory",
    "Current Pressure",
    "Average Pressure",
    "Minimum Pressure",
    "Maximum Pressure",
    "Added Memory",
    "Removed Memory",
    "Memory Add Operations",
    "Memory Remove Operations",
    "Smart Paging Working Set Size",
}


@pytest.mark.parametrize(
    ("version", "guest_available"), [(HostVersion.V2022, True), (HostVersion.V2019, False)]
)
def test_vm_counters_follow_section_4_1(
    clock: FakeClock, version: HostVersion, guest_available: bool
) -> None:
    with make_host(clock, version=version) as host:
        vm = dm_vm(host, "vm")
        load(host, vm, 1300)
        run(host, clock, 4)
        load(host, vm, 0)
        run(host, clock, 6)
        counters = host.vm_counters(vm)
        mem = host.memory(vm)
        names = VM_COUNTERS | ({"Guest Available Memory"} if guest_available else set())
        assert set(counters) == names
        assert counters["Physical Memory"] == mem.assigned_mb
        assert counters["Added Memory"] - counters["Removed Memory"] == mem.assigned_mb - 1024
        assert counters["Memory Add Operations"] >= 1
        assert counters["Memory Remove Operations"] >= 1
        peak = expected_target(2000, 20, 512, 8192)
        assert counters["Guest Visible Physical Memory"] == mem.high_water_mb == peak
        assert counters["Current Pressure"] == 700 * 100 // mem.assigned_mb
        assert counters["Minimum Pressure"] <= counters["Average Pressure"]
        assert counters["Average Pressure"] <= counters["Maximum Pressure"]
        if guest_available:
            assert counters["Guest Available Memory"] == mem.assigned_mb - 700


def test_balancer_counters_follow_section_4_2(host: EmulatedHost, clock: FakeClock) -> None:
    a = dm_vm(host, "a")
    b = dm_vm(host, "b")
    load(host, a, 1300)
    run(host, clock, 5)
    counters = host.balancer_counters()
    assert set(counters) == {
        "Available Memory",
        "Available Memory For Balancing",
        "Average Pressure",
        "System Current Pressure",
    }
    ma, mb = host.memory(a), host.memory(b)
    assert counters["Available Memory"] == 16384 - 1024 - ma.assigned_mb - mb.assigned_mb
    assert counters["Available Memory For Balancing"] > counters["Available Memory"]
    assert counters["Average Pressure"] == (ma.pressure + mb.pressure) // 2
    assert counters["System Current Pressure"] == 2700 * 100 // (ma.assigned_mb + mb.assigned_mb)


def test_default_reserve_follows_the_2008r2_formula_with_a_cap() -> None:
    assert default_reserve(16 * GB) == (384 + 16 * 64) * MB
    assert default_reserve(256 * GB) == 4 * GB
    assert default_reserve(1 * GB) == 448 * MB
    assert default_reserve(512 * MB) == 256 * MB


# -- dynamics with an adaptive app: add and remove do not chase each other ------------------
class _AdaptiveApp:
    """A cache of 25 % of MemAvailable, re-read every 0.5 s, beside `other_mb` of other load
    (the harness's own, after a hot-add); a resize briefly holds the old and the new buffers
    (one pass), and a real guest's MemAvailable moves by a few MB, so it resizes often."""

    def __init__(self, host: EmulatedHost, clock: FakeClock, vm: uuid.UUID) -> None:
        self.host, self.clock, self.vm = host, clock, vm
        self.noise = random.Random(21)
        self.cache = 0
        self.next_read = 0.0

    def run(self, seconds: float, other_mb: int = 1024) -> int:
        """Run for `seconds`; returns how often the guest's total changed meanwhile."""
        host, vm = self.host, self.vm
        changes, spike = 0, 0
        total = host.guest_view(vm).total_mb  # type: ignore[union-attr]
        for _ in range(round(seconds / host.timings.tick)):
            if self.clock.now >= self.next_read:
                view = host.guest_view(vm)
                assert view is not None
                target = (view.available_mb + self.noise.randint(-8, 8)) // 4
                spike = self.cache if target != self.cache else 0  # new buffer, then old freed
                self.cache = target
                self.next_read = self.clock.now + 0.5
            load(host, vm, other_mb + self.cache + spike)
            spike = 0
            run(host, self.clock, host.timings.tick)
            now = host.guest_view(vm).total_mb  # type: ignore[union-attr]
            changes += now != total
            total = now
        return changes


@pytest.mark.parametrize("timings", [FAST, Timings.realistic()], ids=["fast", "realistic"])
@pytest.mark.parametrize("guest_os", ["windows", "linux"])
def test_an_adaptive_app_and_the_balancer_settle(
    clock: FakeClock, timings: Timings, guest_os: str
) -> None:
    """Issue #21: in `fast` the old balancer moved MemTotal 66 times a minute under such an
    app. With hysteresis and smoothed demand, it settles, and each level lasts several
    passes, in every timing profile alike (in passes, not seconds)."""
    with make_host(clock, timings=timings) as host:
        vm = dm_vm(host, "vm", guest_os=guest_os, maximum="4GB")
        passes = 240
        run(host, clock, timings.quiet_after_boot + timings.tick)
        app = _AdaptiveApp(host, clock, vm)
        app.run(passes * timings.tick)
        settled = host.memory(vm)
        later = app.run(passes * timings.tick)
        after = host.memory(vm)
        assert later == 0, f"still moving after {passes} passes: {later} changes"
        assert (after.add_operations, after.remove_operations) == (
            settled.add_operations,
            settled.remove_operations,
        )
