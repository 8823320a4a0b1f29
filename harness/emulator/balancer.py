"""Pure model of the Hyper-V Dynamic Memory balancer (reference §3, sketch §3.10) and the
values Get-VM and the DM performance counters derive from it (§1.3, §4.1, §4.2).

Longer than ~500 lines on purpose: one pure model (no I/O, an injected clock) whose phases,
pressure, hot-add, balloon and arbitration rules read best side by side with the reference.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.errors import HarnessError, SettingError
from harness.settings import MemorySettings
from harness.units import MB

#: Msvm_SummaryInformation's "no data" sentinel for MemoryAvailable and AvailableMemoryBuffer
#: (int.MaxValue, §1.3, §6.3).
INVALID = 2**31 - 1
_INT32_MIN = -(2**31)
DEFAULT_BLOCK_MB = 128  # Linux memory block / old HA_CHUNK (§5.2); Hyper-V's own is unknown (§8.5)


@dataclass(frozen=True)
class Timings:
    """How fast the emulated host reacts; all durations in seconds of the injected clock.

    Documented: the 1 s cadence (§3.3), the guest reporting about once a second (§3.1), the
    ≈50 s after-boot quiet period (§3.1), and that removal is slower than growth and does not
    follow a drop in demand at once (§3.4). Inferred (§8.4, tune against a real host): the
    removal hold-off, the step sizes, the demand-smoothing window and the pressure window.
    """

    tick: float = 1.0  # balancer cadence; the guest reports once per tick (§3.1, §3.3)
    boot: float = 10.0  # Starting -> Running; the guest reports from then on
    quiet_after_boot: float = 50.0  # from power-on to the first DM action (§3.1)
    # A surplus must last this long before it is ballooned (§3.4), and no removal comes
    # within `kept_after_add` of a hot-add: Hyper-V does not reclaim right after demand drops
    # (§3.4, [S52]); the hysteresis that keeps add and remove from chasing each other. Both
    # inferred (§8.4); what was added stays longer than an app's usual re-read interval.
    removal_holdoff: float = 10.0
    kept_after_add: float = 30.0
    removal_step_mb: int = 128  # balloon at most this much per tick: removal is slower (§3.4)
    add_step_mb: int = 1024  # hot-add at most this much per tick
    # What a removal keeps is judged on the guest's reports averaged over this window, as
    # Average Pressure smooths pressure (§4.1): one report caught mid-spike does not set it.
    demand_window: float = 3.0
    pressure_window: float = 10.0  # Average/Minimum/Maximum Pressure window (unknown, §8.4)
    # The guest's own counters (MemAvailable, Available MBytes) are the kernel's, live between
    # the host's passes; the emulated guest rewrites them at this cadence. Not a DM dynamic:
    # it is not scaled with the rest.
    guest_refresh: float = 0.25

    def __post_init__(self) -> None:
        for name in ("tick", "pressure_window", "demand_window", "guest_refresh"):
            if getattr(self, name) <= 0:
                raise SettingError(f"timings.{name}", getattr(self, name), "must be > 0")
        for name in ("boot", "quiet_after_boot", "removal_holdoff", "kept_after_add"):
            if getattr(self, name) < 0:
                raise SettingError(f"timings.{name}", getattr(self, name), "must be ≥ 0")
        for name in ("removal_step_mb", "add_step_mb"):
            value = getattr(self, name)
            if value <= 0 or value % 2:
                raise SettingError(f"timings.{name}", value, "must be a positive even MB count")

    @classmethod
    def realistic(cls) -> Timings:
        """Close to a real host: 1 s cadence (§3.3), 50 s quiet after boot (§3.1, as QEMU
        assumes), 10 s boot; the hold-off, steps and windows are inferred (§8.4)."""
        return cls()

    @classmethod
    def fast(cls) -> Timings:
        """For tests: the realistic dynamic on a uniform time scale of ¼ (cadence, hold-off,
        windows; per-tick steps unchanged, so rates scale too). Only the start-up phases are
        cut further (boot 0.2 s, quiet 0.5 s): they delay the first DM action, they do not
        shape how add and remove interact."""
        return cls.realistic().scaled(0.25, boot=0.2, quiet_after_boot=0.5)

    def scaled(self, factor: float, *, boot: float, quiet_after_boot: float) -> Timings:
        """These timings with every duration of the balancing dynamic × `factor`."""
        if factor <= 0:
            raise SettingError("timings scale", factor, "must be > 0")
        return Timings(
            tick=self.tick * factor,
            boot=boot,
            quiet_after_boot=quiet_after_boot,
            removal_holdoff=self.removal_holdoff * factor,
            kept_after_add=self.kept_after_add * factor,
            removal_step_mb=self.removal_step_mb,
            add_step_mb=self.add_step_mb,
            demand_window=self.demand_window * factor,
            pressure_window=self.pressure_window * factor,
            guest_refresh=self.guest_refresh,
        )


class GuestModel(Protocol):
    """What the balancer needs from a guest OS profile; sizes in MB.

    `committed_mb` is the guest's commit (Windows Committed Bytes, Linux Committed_AS);
    `high_water_mb` is the most memory the guest has had since boot.
    """

    def demand_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        """The committed figure the guest's DM driver reports, which the host takes as demand."""
        ...

    def lowest_assigned_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        """The guest refuses to balloon below this (e.g. the Linux balloon floor, §5.3)."""
        ...

    def visible_mb(self, assigned_mb: int, high_water_mb: int) -> int:
        """The memory the guest believes it has (the "Guest Visible Physical Memory")."""
        ...

    def available_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        """The available memory the guest reports (the "Guest Available Memory")."""
        ...


class NotEnoughMemory(HarnessError):
    """The host cannot give a VM the memory it needs to start or resume."""

    def __init__(self, needed_mb: int, available_mb: int) -> None:
        self.needed_mb = needed_mb
        self.available_mb = available_mb
        super().__init__(f"needs {needed_mb} MB, the host has {available_mb} MB available")


class Phase(enum.Enum):
    OFF = "off"
    RUNNING = "running"  # includes booting: the guest reports once `boot` has passed
    PAUSED = "paused"  # memory stays assigned; the guest does not report
    SAVED = "saved"  # memory written to disk and released


@dataclass(frozen=True)
class MemoryState:
    """A partition's memory as a Standard checkpoint keeps it (§1.5)."""

    phase: Phase
    assigned_mb: int
    paged_mb: int
    high_water_mb: int
    boot_startup_mb: int
    added_mb: int
    removed_mb: int
    add_operations: int
    remove_operations: int


@dataclass(frozen=True)
class VmMemory:
    """One VM's memory as Get-VM derives it (§1.3) plus the balancer's counts (§4.1)."""

    assigned_mb: int  # MemoryAssigned / Msvm_SummaryInformation.MemoryUsage
    demand_mb: int  # MemoryDemand, derived from MemoryAvailable in integer MB (§1.3)
    guest_demand_mb: int  # the guest's report before that rounding (0 when not reporting)
    memory_available: int  # MemoryAvailable % (WMI), INVALID when there is no data
    available_memory_buffer: int  # AvailableMemoryBuffer % (WMI), INVALID when no data
    status: str  # MemoryStatus (§1.3)
    smart_paging_mb: int  # the part of assigned memory backed by the Smart Paging file
    guest_visible_mb: int
    high_water_mb: int
    reporting: bool  # the guest sends status reports (booted, running)
    balancing: bool  # DM acts on this VM (running, dynamic, past the quiet period)
    added_mb: int
    removed_mb: int
    add_operations: int
    remove_operations: int
    pressure: int
    average_pressure: int
    minimum_pressure: int
    maximum_pressure: int

    @property
    def smart_paging_in_use(self) -> bool:
        return self.smart_paging_mb > 0


def memory_status(
    *, dynamic: bool, smart_paging: bool, available_buffer: int, spans_numa: bool = False
) -> str:
    """MemoryStatus exactly as the Hyper-V module computes it (§1.3)."""
    if dynamic:
        if smart_paging:
            return "Paging"
        if available_buffer == INVALID:
            return ""
        if available_buffer < 0:
            return "Warning"
        if available_buffer > 80:
            return "OK"
        return "Low"
    return "Spanning" if spans_numa else ""


def derived_demand_mb(usage_mb: int, memory_available: int) -> int:
    """MemoryDemand from MemoryUsage and MemoryAvailable% in integer MB (§1.3)."""
    if memory_available == INVALID:
        return 0
    return usage_mb * (100 - memory_available) // 100


def memory_available_percent(demand_mb: int, assigned_mb: int) -> int:
    """MemoryAvailable% = 100 − pressure, truncated like a C# int cast (§3.10)."""
    if assigned_mb <= 0:
        return INVALID
    return _clamp_int32(_trunc_div(100 * (assigned_mb - demand_mb), assigned_mb))


def available_buffer_percent(demand_mb: int, assigned_mb: int, buffer: int) -> int:
    """AvailableMemoryBuffer% = available buffer ÷ ideal buffer × 100 (inferred, §3.2)."""
    ideal = demand_mb * buffer  # × 1/100 folded into the numerator below
    if assigned_mb <= 0:
        return INVALID
    if ideal <= 0:
        return INVALID - 1  # no demand: the buffer is as large as it can be
    return _clamp_int32(_trunc_div(10000 * (assigned_mb - demand_mb), ideal))


def linux_balloon_floor_mb(total_mb: int) -> int:
    """hv_balloon's balloon floor for `total_mb` of RAM (§5.3)."""
    if total_mb < 128:
        return 8 + total_mb // 2
    if total_mb < 512:
        return 40 + total_mb // 4
    if total_mb < 2048:
        return 104 + total_mb // 8
    if total_mb < 8192:
        return 232 + total_mb // 16
    return 488 + total_mb // 32


def _trunc_div(num: int, den: int) -> int:
    quotient = abs(num) // abs(den)
    return quotient if (num >= 0) == (den > 0) else -quotient


def _clamp_int32(value: int) -> int:
    return max(_INT32_MIN, min(INVALID - 1, value))


def _even_up(mb: int) -> int:
    return mb + (mb & 1)  # sizes move in 2 MB units (§2.1)


def _ceil_to(mb: int, block: int) -> int:
    return -(-mb // block) * block


class _Partition:
    """Mutable balancer state of one VM (MB throughout)."""

    __slots__ = (
        "add_ops",
        "added",
        "assigned",
        "boot_startup",
        "committed",
        "demands",
        "high_water",
        "hold_from",
        "key",
        "model",
        "paged",
        "phase",
        "pressures",
        "remove_ops",
        "removed",
        "removing",
        "reporting",
        "settings",
        "smoothed",
        "started_at",
    )

    def __init__(self, key: str, settings: MemorySettings, model: GuestModel) -> None:
        self.key = key
        self.settings = settings
        self.model = model
        self.phase = Phase.OFF
        self.started_at = 0.0
        self.reporting = False
        self.committed: int | None = None
        self.assigned = 0
        self.paged = 0
        self.high_water = 0
        self.boot_startup = 0
        self.added = self.removed = self.add_ops = self.remove_ops = 0
        self.pressures: deque[tuple[float, int]] = deque()
        self.demands: deque[tuple[float, int]] = deque()  # the guest's reports, recent
        self.smoothed: deque[tuple[float, int]] = deque()  # their means, over the hold-off
        self.hold_from: float | None = None  # no removal before this (§3.4)
        self.removing = False  # a removal under way goes on down to what it keeps

    @property
    def physical(self) -> int:
        return self.assigned - self.paged if self.phase in _HOLDS_MEMORY else 0

    def demand(self) -> int:
        assert self.committed is not None
        return self.model.demand_mb(self.committed, self.assigned, self.high_water)

    def lowest(self) -> int:
        """The least this VM can be ballooned to now: Minimum, or the guest's refusal point."""
        lo = self.settings.minimum // MB
        if self.committed is None:
            return max(lo, self.assigned)
        guest = self.model.lowest_assigned_mb(self.committed, self.assigned, self.high_water)
        return max(lo, _even_up(guest))

    def forget_demand(self) -> None:
        """After a power change the guest's past reports say nothing about it now."""
        self.demands.clear()
        self.smoothed.clear()
        self.hold_from = None
        self.removing = False

    def smooth(self, now: float, timings: Timings) -> tuple[int, int]:
        """Feed this pass's report; returns (the demand to grow to, the highest demand the
        hold-off saw). Growth answers the latest report at once, so a guest that needs memory
        gets it at the next pass (§3.3); what a removal keeps is the peak of the demand's
        means over the demand window during the hold-off (§4.1 smoothing, §3.4 hysteresis)."""
        latest = self.demand()
        self.demands.append((now, latest))
        while self.demands[0][0] <= now - timings.demand_window:
            self.demands.popleft()
        mean = -(-sum(d for _, d in self.demands) // len(self.demands))
        self.smoothed.append((now, mean))
        while self.smoothed[0][0] <= now - timings.removal_holdoff:
            self.smoothed.popleft()
        if self.hold_from is None:
            self.hold_from = now + timings.removal_holdoff  # a surplus must last the hold-off
        return max(latest, mean), max(d for _, d in self.smoothed)

    def grow(self, mb: int, now: float | None = None, kept: float = 0.0) -> None:
        if now is not None:  # a balancer hot-add: no removal for `kept` seconds after it
            self.hold_from = max(self.hold_from or 0.0, now + kept)
            self.removing = False
        self.assigned += mb
        self.high_water = max(self.high_water, self.assigned)
        self.added += mb
        self.add_ops += 1

    def shrink(self, mb: int) -> None:
        self.assigned -= mb
        self.removed += mb
        self.remove_ops += 1


_HOLDS_MEMORY = (Phase.RUNNING, Phase.PAUSED)


class Balancer:
    """The DM balancer of one host. Pure: no threads, no clock; `tick(now)` advances it.

    Sizes are MB (Hyper-V's unit, §2.1). Keys are opaque VM identifiers.
    """

    def __init__(
        self,
        total_mb: int,
        reserve_mb: int,
        timings: Timings | None = None,
        *,
        block_mb: int = DEFAULT_BLOCK_MB,
        numa_node_mb: int | None = None,
        guest_available_counter: bool = True,
    ) -> None:
        if block_mb <= 0 or block_mb % 2:
            raise SettingError("hot-add block", block_mb, "must be a positive even MB count")
        if not 0 <= reserve_mb < total_mb:
            raise SettingError("host reserve", reserve_mb, f"must be in [0, {total_mb}) MB")
        self.total_mb = total_mb
        self.reserve_mb = reserve_mb
        self.timings = timings or Timings.fast()
        self.block_mb = block_mb
        self.numa_node_mb = numa_node_mb
        self.guest_available_counter = guest_available_counter  # WS2022+ only (§4.1)
        self._parts: dict[str, _Partition] = {}
        self._now = 0.0

    # -- membership and power -----------------------------------------------------------
    def add(self, key: str, settings: MemorySettings, model: GuestModel) -> None:
        self._parts[key] = _Partition(key, settings, model)

    def remove(self, key: str) -> None:
        del self._parts[key]

    def keys(self) -> Iterator[str]:
        return iter(self._parts)

    def phase(self, key: str) -> Phase:
        return self._parts[key].phase

    def set_model(self, key: str, model: GuestModel) -> None:
        self._parts[key].model = model

    def available_mb(self) -> int:
        """Memory left for VMs after the host reserve (§3.8, "Available Memory" §4.2)."""
        used = sum(p.physical for p in self._parts.values())
        return self.total_mb - self.reserve_mb - used

    def power_on(self, key: str, now: float, *, restart: bool = False) -> None:
        """Start with Startup memory (§3.1); on a restart that lacks it, use Smart Paging (§3.6).

        Smart Paging covers the gap between what is free and Startup only on a restart, only
        for a DM VM with Minimum < Startup, and only if what is free covers Minimum. Other
        VMs are not ballooned synchronously: that is too slow for a boot, which is why Smart
        Paging exists.
        """
        p = self._parts[key]
        if p.phase is not Phase.OFF:
            raise ValueError(f"partition {key} is {p.phase.value}, not off")
        s = p.settings
        startup = s.startup // MB
        free = self.available_mb()
        paged = 0
        if free < startup:
            smart = restart and s.dynamic and s.minimum < s.startup and free >= s.minimum // MB
            if not smart:
                raise NotEnoughMemory(startup, max(free, 0))
            paged = startup - (free - free % 2)
        p.phase = Phase.RUNNING
        p.started_at = now
        p.reporting = False
        p.committed = None
        p.assigned = p.high_water = p.boot_startup = startup
        p.paged = paged
        p.forget_demand()
        p.added = p.removed = p.add_ops = p.remove_ops = 0
        p.pressures.clear()

    def power_off(self, key: str) -> None:
        p = self._parts[key]
        p.phase = Phase.OFF
        p.assigned = p.paged = 0
        p.reporting = False
        p.committed = None
        p.pressures.clear()
        p.forget_demand()

    def pause(self, key: str) -> None:
        p = self._parts[key]
        if p.phase is Phase.RUNNING:
            p.phase = Phase.PAUSED
            p.reporting = False

    def save(self, key: str) -> None:
        """Saved: the memory goes to disk and the host gets it back."""
        p = self._parts[key]
        if p.phase in _HOLDS_MEMORY:
            p.phase = Phase.SAVED
            p.reporting = False

    def resume(self, key: str, now: float) -> None:
        """Back to running from Paused or Saved; a Saved VM needs its memory free again."""
        p = self._parts[key]
        if p.phase is Phase.SAVED:
            need = p.assigned - p.paged
            free = self.available_mb()
            if free < need:
                raise NotEnoughMemory(need, max(free, 0))
        if p.phase in (Phase.SAVED, Phase.PAUSED):
            p.phase = Phase.RUNNING
            p.forget_demand()
            # the guest was booted before; it reports again at the next tick
            p.reporting = now >= p.started_at + self.timings.boot

    def update(self, key: str, settings: MemorySettings) -> None:
        """New settings (already validated by the caller against §2.2/§2.3).

        A running static VM on 2016+ gets Runtime Memory Resize: the new Startup is applied
        now, up only if the host has the memory, down not below what the guest uses (§2.3).
        """
        p = self._parts[key]
        old = p.settings
        p.settings = settings
        if p.phase is not Phase.RUNNING and p.phase is not Phase.PAUSED:
            return
        if settings.dynamic or old.dynamic or settings.startup == old.startup:
            return
        new = settings.startup // MB
        if new > p.assigned:
            free = self.available_mb()
            if free < new - p.assigned:
                p.settings = old
                raise NotEnoughMemory(new - p.assigned, max(free, 0))
            p.grow(new - p.assigned)
        elif new < p.assigned:
            in_use = _even_up(p.committed or 0)
            target = max(new, in_use)
            if target < p.assigned:
                p.shrink(p.assigned - target)

    def report(self, key: str, committed_mb: int) -> None:
        """A guest status report: its committed memory (§3.2)."""
        p = self._parts[key]
        if p.phase is Phase.RUNNING:
            p.committed = max(0, committed_mb)

    def capture(self, key: str) -> MemoryState:
        p = self._parts[key]
        return MemoryState(
            phase=p.phase,
            assigned_mb=p.assigned,
            paged_mb=p.paged,
            high_water_mb=p.high_water,
            boot_startup_mb=p.boot_startup,
            added_mb=p.added,
            removed_mb=p.removed,
            add_operations=p.add_ops,
            remove_operations=p.remove_ops,
        )

    def restore(self, key: str, state: MemoryState, now: float) -> Phase:
        """Apply a Standard checkpoint's memory: a running one comes back Saved (its memory
        state on disk), an off one comes back Off. Returns the resulting phase."""
        self.power_off(key)
        if state.phase is Phase.OFF:
            return Phase.OFF
        p = self._parts[key]
        p.phase = Phase.SAVED
        p.started_at = now - max(self.timings.quiet_after_boot, self.timings.boot)
        p.assigned = state.assigned_mb
        p.paged = state.paged_mb
        p.high_water = state.high_water_mb
        p.boot_startup = state.boot_startup_mb
        p.added, p.removed = state.added_mb, state.removed_mb
        p.add_ops, p.remove_ops = state.add_operations, state.remove_operations
        return Phase.SAVED

    # -- the balancing pass -----------------------------------------------------------
    def tick(self, now: float) -> None:
        """One balancer pass (§3.10): demand → target; hot-add, balloon, arbitrate, page."""
        self._now = now
        t = self.timings
        active: list[_Partition] = []
        budget = self.total_mb - self.reserve_mb
        for p in self._parts.values():
            if p.phase is Phase.RUNNING:
                if not p.reporting and now >= p.started_at + t.boot:
                    p.reporting = True
                if (
                    p.settings.dynamic
                    and p.reporting
                    and p.committed is not None
                    and now >= p.started_at + t.quiet_after_boot
                ):
                    active.append(p)
                    continue
            budget -= p.physical
        if active:
            self._balance(active, budget, now)
        window = t.pressure_window
        for p in self._parts.values():
            if p.reporting and p.settings.dynamic and p.committed is not None and p.assigned:
                samples = p.pressures
                samples.append((now, p.demand() * 100 // p.assigned))
                while samples[0][0] <= now - window:
                    samples.popleft()

    def _balance(self, active: list[_Partition], budget: int, now: float) -> None:
        t = self.timings
        block = self.block_mb
        free = budget - sum(p.assigned - p.paged for p in active)
        balanced: list[_Partition] = []
        for p in active:
            if p.paged:
                free = self._release_paged(p, free)
            else:
                balanced.append(p)
        wants: list[int] = []
        needs: list[int] = []
        keeps: list[int] = []  # what a removal leaves: the hold-off's peak demand + buffer
        total_want = 0
        for p in balanced:
            s = p.settings
            demand, peak = p.smooth(now, t)
            need = self._target(demand, 0, s)
            want = self._target(demand, s.buffer, s)
            needs.append(need)
            wants.append(want)
            keeps.append(max(want, self._target(peak, s.buffer, s)))
            total_want += want
        pool = budget - sum(p.assigned - p.paged for p in active if p.paged)
        short = total_want > pool
        targets = self._arbitrate(balanced, needs, wants, pool) if short else wants
        # removals first, so what they free can go to VMs that grow in this same pass
        for p, target, want, keep in zip(balanced, targets, wants, keeps, strict=True):
            if target >= p.assigned:
                continue
            if short and target < want:  # squeezed by a short host: taken now (§3.5)
                floor = target
            elif now >= (p.hold_from or now) and (
                p.removing or keep + self._band(keep, p) < p.assigned
            ):
                floor = keep  # once started, a removal goes down to what it keeps
                p.removing = True
            else:
                continue
            new = max(floor, p.assigned - t.removal_step_mb, p.lowest())
            if new < p.assigned:
                free += p.assigned - new
                p.shrink(p.assigned - new)
            p.removing = p.removing and new > floor
        growers = [(p, tg) for p, tg in zip(balanced, targets, strict=True) if tg > p.assigned]
        growers.sort(key=lambda item: -item[0].settings.priority)
        for p, target in growers:
            gap = target - p.assigned
            grant = min(gap, free - free % 2, t.add_step_mb)
            if grant < gap:
                grant -= grant % block  # hot-add goes in whole blocks (§3.3, §5.2)
            if grant > 0:
                p.grow(grant, now, t.kept_after_add)
                free -= grant

    def _band(self, keep: int, p: _Partition) -> int:
        """The dead band above what a removal keeps (inferred, §3.4, §8.4): a removal starts
        only for a surplus beyond one block that lasted the hold-off (and then goes down to
        what it keeps), so a target that wobbles by a block moves nothing. Minimum is a hard
        floor, not a wobbling target: no band."""
        return 0 if keep <= p.settings.minimum // MB else self.block_mb

    def _target(self, demand: int, buffer: int, s: MemorySettings) -> int:
        """Demand plus `buffer` %, in whole blocks, within the VM's bounds (§3.2, §3.10)."""
        grown = -(-demand * (100 + buffer) // 100)
        return min(max(_ceil_to(grown, self.block_mb), s.minimum // MB), s.maximum // MB)

    def _release_paged(self, p: _Partition, free: int) -> int:
        """After boot, move a Smart Paging VM's paged part to RAM if the host has it free,
        else balloon it out (§3.6). Returns what is left free."""
        if free > 0:
            moved = min(p.paged, free - free % 2)
            p.paged -= moved
            free -= moved
        if p.paged:
            amount = min(self.timings.removal_step_mb, p.paged, p.assigned - p.lowest())
            if amount > 0:
                p.shrink(amount)
                p.paged -= amount
        return free

    @staticmethod
    def _arbitrate(
        parts: list[_Partition], needs: list[int], wants: list[int], pool: int
    ) -> list[int]:
        """Share a short host (§3.5): each VM keeps what cannot be taken from it; then demand
        is met by priority (equal priorities share in proportion), and buffers come last."""
        targets = [max(p.settings.minimum // MB, min(p.lowest(), p.assigned)) for p in parts]
        remaining = pool - sum(targets)
        by_priority: dict[int, list[int]] = {}
        for i, p in enumerate(parts):
            by_priority.setdefault(p.settings.priority, []).append(i)
        order = sorted(by_priority, reverse=True)
        for goals in (needs, wants):  # demand first: buffers are dropped first (§3.2, §3.5)
            for priority in order:
                if remaining <= 0:
                    return targets
                group = by_priority[priority]
                gaps = [max(0, goals[i] - targets[i]) for i in group]
                wanted = sum(gaps)
                if wanted <= remaining:
                    for i, gap in zip(group, gaps, strict=True):
                        targets[i] += gap
                    remaining -= wanted
                    continue
                for i, gap in zip(group, gaps, strict=True):
                    share = remaining * gap // wanted
                    targets[i] += share - share % 2
                return targets
        return targets

    # -- views ------------------------------------------------------------------------
    def sizes(self, key: str) -> tuple[int, int]:
        """(assigned, high-water mark) in MB, cheaply: what a guest's own view needs."""
        p = self._parts[key]
        if p.phase in _HOLDS_MEMORY:
            return p.assigned, p.high_water
        return 0, 0

    def memory(self, key: str) -> VmMemory:
        p = self._parts[key]
        s = p.settings
        holds = p.phase in _HOLDS_MEMORY
        assigned = p.assigned if holds else 0
        reporting = holds and p.reporting and p.committed is not None
        spans = (
            not s.dynamic
            and holds
            and self.numa_node_mb is not None
            and assigned > self.numa_node_mb
        )
        guest_demand = avail = buffer_pct = 0
        if reporting and s.dynamic and p.phase is Phase.RUNNING:
            guest_demand = p.demand()
            avail = memory_available_percent(guest_demand, assigned)
            buffer_pct = available_buffer_percent(guest_demand, assigned, s.buffer)
        else:
            avail = buffer_pct = INVALID
        pressures = [v for _, v in p.pressures] if holds else []
        current = guest_demand * 100 // assigned if guest_demand else 0
        return VmMemory(
            assigned_mb=assigned,
            demand_mb=derived_demand_mb(assigned, avail),
            guest_demand_mb=guest_demand,
            memory_available=avail,
            available_memory_buffer=buffer_pct,
            status=memory_status(
                dynamic=s.dynamic,
                smart_paging=holds and p.paged > 0,
                available_buffer=buffer_pct,
                spans_numa=spans,
            ),
            smart_paging_mb=p.paged if holds else 0,
            guest_visible_mb=p.model.visible_mb(assigned, p.high_water) if holds else 0,
            high_water_mb=p.high_water if holds else 0,
            reporting=reporting,
            balancing=(
                reporting
                and s.dynamic
                and p.phase is Phase.RUNNING
                and self._now >= p.started_at + self.timings.quiet_after_boot
            ),
            added_mb=p.added,
            removed_mb=p.removed,
            add_operations=p.add_ops,
            remove_operations=p.remove_ops,
            pressure=current,
            average_pressure=sum(pressures) // len(pressures) if pressures else 0,
            minimum_pressure=min(pressures) if pressures else 0,
            maximum_pressure=max(pressures) if pressures else 0,
        )

    def counters(self, key: str) -> Mapping[str, float]:
        """The "Hyper-V Dynamic Memory VM" counters of one VM (§4.1): MB and percent.

        Minimum/Maximum Pressure ("pressure band") are the extremes over the pressure window,
        an inference (§8.4). "Guest Available Memory" exists only on WS2022+ hosts.
        """
        m = self.memory(key)
        p = self._parts[key]
        values: dict[str, float] = {
            "Physical Memory": m.assigned_mb,
            "Guest Visible Physical Memory": m.guest_visible_mb,
            "Current Pressure": m.pressure,
            "Average Pressure": m.average_pressure,
            "Minimum Pressure": m.minimum_pressure,
            "Maximum Pressure": m.maximum_pressure,
            "Added Memory": m.added_mb,
            "Removed Memory": m.removed_mb,
            "Memory Add Operations": m.add_operations,
            "Memory Remove Operations": m.remove_operations,
            "Smart Paging Working Set Size": m.smart_paging_mb,
        }
        if self.guest_available_counter:
            available = 0
            if m.reporting and p.committed is not None:
                available = p.model.available_mb(p.committed, p.assigned, p.high_water)
            values["Guest Available Memory"] = available
        return values

    def balancer_counters(self) -> Mapping[str, float]:
        """The "Hyper-V Dynamic Memory Balancer" counters (§4.2).

        Available Memory For Balancing adds what VMs hold above their demand (inferred);
        System Current Pressure is total demand ÷ total assigned (inferred).
        """
        available = self.available_mb()
        reclaimable = demand_sum = assigned_sum = 0
        pressures: list[int] = []
        for p in self._parts.values():
            if not (p.phase is Phase.RUNNING and p.reporting and p.settings.dynamic):
                continue
            if p.committed is None or not p.assigned:
                continue
            demand = p.demand()
            floor = max(p.settings.minimum // MB, _ceil_to(demand, 2))
            reclaimable += max(0, p.assigned - floor)
            demand_sum += demand
            assigned_sum += p.assigned
            pressures.append(demand * 100 // p.assigned)
        return {
            "Available Memory": available,
            "Available Memory For Balancing": max(0, available) + reclaimable,
            "Average Pressure": sum(pressures) // len(pressures) if pressures else 0,
            "System Current Pressure": demand_sum * 100 // assigned_sum if assigned_sum else 0,
        }
