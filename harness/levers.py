"""Levers that make Dynamic Memory move, and prove it moved.

`force_hot_add` and `force_balloon` pick a strategy the host's version allows at runtime
(reference §2.3), apply it, and wait until assigned memory really moved; if it does not
move within the deadline, they raise LeverError (an infrastructure problem: the test is
broken, not failed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.deadline import wait_until
from harness.errors import BalloonBlocked, DeadlineError, LeverError
from harness.hyperv.guest import Guest, GuestProcess
from harness.hyperv.host import HyperVHost, VMInfo
from harness.settings import (
    ALIGNMENT,
    MINIMUM_FLOOR,
    Change,
    MemoryChange,
    MemorySettings,
    runtime_rules,
)
from harness.timeline import Timeline
from harness.units import MB, format_size, parse_size

log = logging.getLogger(__name__)

HOT_ADD_STRATEGIES = ("raise-maximum", "load", "raise-buffer")
BALLOON_STRATEGIES = ("drop-load", "lower-minimum", "lower-buffer")


@dataclass(frozen=True)
class LoadCommand:
    """How to start the load generator in the guest: command + args, MB appended last."""

    command: str
    arguments: Sequence[str] = ()
    environment: dict[str, str] = field(default_factory=dict)
    ready: str = "holding"  # what it prints once it holds all its memory


@dataclass(frozen=True)
class Move:
    """A verified memory movement: what was done and what the host then showed."""

    kind: str  # "hot-add" | "balloon"
    strategy: str
    before_mb: int
    after_mb: int
    seconds: float


StepHook = Callable[[str, dict[str, Any]], Any]


def _no_step(title: str, params: dict[str, Any]) -> None:
    return None


class MemoryLevers:
    """Changes one VM's memory and records every change on the timeline."""

    def __init__(
        self,
        host: HyperVHost,
        vm_name: str,
        timeline: Timeline,
        *,
        guest: Guest | None = None,
        load: LoadCommand | None = None,
        deadline: float = 60.0,
        step: StepHook = _no_step,
    ) -> None:
        self.host = host
        self.vm_name = vm_name
        self.timeline = timeline
        self.guest = guest
        self.load = load
        self.deadline = deadline
        self.step = step  # a report hook (an Allure step) wrapped around every change
        self.loads: list[GuestProcess] = []

    # -- plain changes ---------------------------------------------------------------------
    def set_bounds(
        self,
        *,
        minimum: str | int | None = None,
        maximum: str | int | None = None,
        startup: str | int | None = None,
        buffer: int | None = None,
        priority: int | None = None,
    ) -> MemorySettings:
        """Change memory settings; refused before sending if Hyper-V's rules forbid it."""
        change = MemoryChange(
            startup=None if startup is None else parse_size(startup, "startup"),
            minimum=None if minimum is None else parse_size(minimum, "minimum"),
            maximum=None if maximum is None else parse_size(maximum, "maximum"),
            buffer=buffer,
            priority=priority,
        )
        shown = change.shown()
        with _entered(self.step("set memory bounds", shown)):
            settings = self.host.change_memory(self.vm_name, change)
        self.timeline.add_event(
            "memory", "set " + ", ".join(f"{k}={v}" for k, v in shown.items()), shown
        )
        return settings

    def add_load(self, size: str | int, *, held_within: float | None = None) -> GuestProcess:
        """Start a load process in the guest that holds `size` of memory. With `held_within`,
        wait up to that many seconds until it says it holds it all (a load grows in steps, and
        slower on a busy machine), so the load event marks when the pressure is complete; the
        event's `seconds` says how long that took (its start is `t - seconds`)."""
        size_mb = parse_size(size, "load") // MB
        ready = self.load.ready if self.load is not None else ""

        def held(process: GuestProcess) -> bool:
            return ready in process.output or process.poll().exit_code is not None

        return self._load(size_mb, None if held_within is None else (held, held_within))

    def press_at_maximum(self, leave: float = 0.05, within: float | None = None) -> GuestProcess:
        """Pressure at the ceiling: a load sized so that the guest's committed memory comes to
        the VM's maximum less `leave` of it. The guest then has less than a tenth of its memory
        available once the host has added all it may, so an app must give memory back for the
        load to fit; a fixed size would either miss the ceiling or not fit beside the app, and
        a real kernel OOM-kills a load that does not fit. The load event marks when assigned
        memory reached the maximum (waited for up to `within` seconds: hot-add comes in steps,
        slowly on a slow guest); its `seconds` say how long after the load's start."""
        if self.guest is None:
            raise LeverError("no guest channel: cannot read the guest's committed memory")
        maximum = self.host.vm(self.vm_name).memory.maximum
        committed = self.guest.counters().committed_mb
        size_mb = maximum // MB - committed - int(maximum // MB * leave)
        if size_mb < 64:
            raise LeverError(
                f"the guest already commits {committed} MB of its {maximum // MB} MB maximum: "
                f"no room for a load that leaves {leave:.0%} free"
            )

        def at_maximum(process: GuestProcess) -> bool:
            return self.host.vm(self.vm_name).memory_assigned >= maximum

        wait = (at_maximum, self.deadline if within is None else within)
        return self._load(size_mb, wait, "assigned memory at the maximum")

    def _load(
        self,
        size_mb: int,
        wait: tuple[Callable[[GuestProcess], bool], float] | None,
        what: str = "",
    ) -> GuestProcess:
        if self.guest is None or self.load is None:
            raise LeverError("no guest channel or load command: cannot raise demand in the guest")
        started = time.monotonic()
        with _entered(self.step("add guest load", {"size": format_size(size_mb * MB)})):
            process = self.guest.start_process(
                self.load.command,
                [*self.load.arguments, str(size_mb)],
                self.load.environment,
                memory_mb=size_mb,  # checked against a WinRM channel's shell quota
            )
            self.loads.append(process)
            if wait is not None:
                done, seconds = wait
                what = what or f"the load holding {size_mb} MB"
                try:
                    wait_until(lambda: done(process), seconds, what=what,
                               interval=0.1, max_interval=0.5)  # fmt: skip
                except DeadlineError:
                    log.warning("%s: not within %gs", what, seconds)
        data: dict[str, float] = {"size_mb": size_mb, "pid": process.pid}
        if wait is not None:
            data["seconds"] = round(time.monotonic() - started, 2)
        self.timeline.add_event("load", f"load +{size_mb} MB", data)
        return process

    def drop_load(self) -> int:
        """Stop every load process; returns how many were stopped."""
        count = len(self.loads)
        with _entered(self.step("drop guest load", {"processes": count})):
            while self.loads:
                self.loads.pop().stop()
        if count:
            self.timeline.add_event(
                "load", f"load dropped ({count} processes)", {"processes": count}
            )
        return count

    # -- forced moves ----------------------------------------------------------------------
    def force_hot_add(
        self, at_least: str | int = "128MB", strategy: str | None = None, *, keep_load: bool = False
    ) -> Move:
        """Make the host add memory to the VM, and verify assigned memory grew. A load that
        forced it then gives its memory back (unless `keep_load`): Hyper-V keeps what it
        added for a while (reference §3.4), so the memory is offered to the app under test,
        as a hot-add for the app's own demand would be."""
        need = parse_size(at_least, "at_least") // MB
        loads = len(self.loads)
        vm = self.host.vm(self.vm_name)
        chosen = strategy or self._pick_hot_add(vm, need)
        before = vm.memory_assigned // MB
        started = time.monotonic()
        with _entered(
            self.step(f"force hot-add ({chosen})", {"at_least_mb": need, "assigned_mb": before})
        ):
            if chosen == "raise-maximum":
                target = max(vm.memory.maximum, vm.memory_assigned) + 2 * need * MB
                self.set_bounds(maximum=target)
                if self.guest is not None and self.load is not None:
                    self.add_load(need * 2 * MB)
            elif chosen == "load":
                self.add_load(need * 2 * MB)
            elif chosen == "raise-buffer":
                self.set_bounds(buffer=min(2000, max(vm.memory.buffer * 2, vm.memory.buffer + 100)))
            else:
                raise LeverError(
                    f"unknown hot-add strategy {chosen!r}; use one of {HOT_ADD_STRATEGIES}"
                )
            after = self._wait_assigned(
                lambda mb: mb >= before + need, f"assigned ≥ {before + need} MB", chosen
            )
        move = Move("hot-add", chosen, before, after, round(time.monotonic() - started, 2))
        self.timeline.add_event("hot-add", f"hot-add {before}→{after} MB ({chosen})", asdict(move))
        if not keep_load and len(self.loads) > loads:
            self._give_back(len(self.loads) - loads)
        return move

    def _give_back(self, count: int) -> None:
        with _entered(self.step("the forcing load gives its memory back", {"processes": count})):
            for _ in range(count):
                self.loads.pop().stop()
        self.timeline.add_event(
            "load", f"load dropped after the hot-add ({count} processes)", {"processes": count}
        )

    def force_balloon(self, at_least: str | int = "128MB", strategy: str | None = None) -> Move:
        """Make the host balloon memory out of the VM, and verify assigned memory shrank."""
        need = parse_size(at_least, "at_least") // MB
        vm = self.host.vm(self.vm_name)
        chosen = strategy or self._pick_balloon(vm)
        before = vm.memory_assigned // MB
        started = time.monotonic()
        with _entered(
            self.step(f"force balloon ({chosen})", {"at_least_mb": need, "assigned_mb": before})
        ):
            if chosen == "drop-load":
                self.drop_load()
                if self._rule(vm, "buffer") is Change.ANY and vm.memory.buffer > 5:
                    self.set_bounds(buffer=5)
            elif chosen == "lower-minimum":
                # Only helps a VM held up by its floor: its demand is below the minimum.
                lowered = max(
                    MINIMUM_FLOOR, (vm.memory.minimum - 2 * need * MB) // ALIGNMENT * ALIGNMENT
                )
                self.set_bounds(minimum=lowered)
                vm = self.host.vm(self.vm_name)
            elif chosen == "lower-buffer":
                self.set_bounds(buffer=5)
            else:
                raise LeverError(
                    f"unknown balloon strategy {chosen!r}; use one of {BALLOON_STRATEGIES}"
                )
            floor = vm.memory.minimum // MB
            wanted = max(before - need, floor)
            try:
                after = self._wait_assigned(
                    lambda mb: mb <= wanted, f"assigned ≤ {wanted} MB", chosen
                )
            except LeverError as exc:
                now = self.host.vm(self.vm_name)
                demand, assigned = now.memory_demand // MB, now.memory_assigned // MB
                # The balancer keeps demand plus the buffer (reference §3.2): when that is
                # still above the level wanted, the guest needs the memory.
                if demand * (100 + now.memory.buffer) / 100 <= wanted:
                    raise  # the guest did not need it, yet the host did not take it
                raise BalloonBlocked(
                    f"{exc}; the guest's demand stayed at {demand} MB",
                    wanted_mb=wanted,
                    assigned_mb=assigned,
                    demand_mb=demand,
                    seconds=self.deadline,
                ) from None
        move = Move("balloon", chosen, before, after, round(time.monotonic() - started, 2))
        self.timeline.add_event("balloon", f"balloon {before}→{after} MB ({chosen})", asdict(move))
        return move

    # -- internals -------------------------------------------------------------------------
    def _rule(self, vm: VMInfo, name: str) -> Change:
        return runtime_rules(self.host.version, vm.memory.dynamic)[name]

    def _pick_hot_add(self, vm: VMInfo, need_mb: int) -> str:
        if not vm.memory.dynamic:
            raise LeverError(f"VM {vm.name!r} has static memory: Dynamic Memory cannot hot-add")
        headroom = (vm.memory.maximum - vm.memory_assigned) // MB
        if headroom < need_mb:
            if self._rule(vm, "maximum") is Change.INCREASE:
                return "raise-maximum"
            raise LeverError(
                f"VM {vm.name!r} is {headroom} MB below its maximum and Hyper-V "
                f"{self.host.version.value} cannot raise the maximum while it runs"
            )
        loader = self.guest if self.load is not None else None  # a guest that can take a load
        if loader is not None and loader.fits(2 * need_mb):
            return "load"
        if self._rule(vm, "buffer") is Change.ANY:
            return "raise-buffer"  # also when the load would pass a WinRM shell's quota
        if loader is not None:
            return "load"  # too big for the channel: starting it names the quota
        raise LeverError("no hot-add strategy is possible: no guest load and the buffer is fixed")

    def _pick_balloon(self, vm: VMInfo) -> str:
        if self.loads:
            return "drop-load"
        pinned = vm.memory_assigned - vm.memory.minimum < 128 * MB
        if (
            pinned
            and vm.memory.minimum > MINIMUM_FLOOR
            and self._rule(vm, "minimum") is Change.DECREASE
        ):
            return "lower-minimum"
        if self._rule(vm, "buffer") is Change.ANY and vm.memory.buffer > 5:
            return "lower-buffer"
        raise LeverError(
            f"no balloon strategy is possible for {vm.name!r}: no load to drop and the buffer "
            f"is already {vm.memory.buffer}% or fixed on Hyper-V {self.host.version.value}"
        )

    def _wait_assigned(self, good: Callable[[int], bool], what: str, strategy: str) -> int:
        seen: list[int] = []

        def moved() -> bool:
            seen.append(self.host.vm(self.vm_name).memory_assigned // MB)
            return good(seen[-1])

        try:
            wait_until(moved, self.deadline, what=what, interval=0.1, max_interval=1.0)
            return seen[-1]
        except DeadlineError:
            raise LeverError(
                f"memory did not move: wanted {what} within {self.deadline:g}s using "
                f"{strategy}; assigned went {seen[0]} → {seen[-1]} MB "
                f"(min {min(seen)}, max {max(seen)})"
            ) from None


def _entered(context: object) -> AbstractContextManager[object]:
    """The step hook may return a context manager (an Allure step) or nothing."""
    return context if isinstance(context, AbstractContextManager) else nullcontext()
