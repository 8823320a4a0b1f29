"""Scripted memory timelines: steps at offsets, oscillation, and a seeded random walk that
stays within what the host's version lets a running VM change (reference §2.3).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.deadline import Deadline
from harness.levers import MemoryLevers
from harness.settings import Change, runtime_rules
from harness.units import MB


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the schedule starts
    label: str
    action: Callable[[MemoryLevers], object]


def _load(mb: int) -> Callable[[MemoryLevers], object]:
    return lambda levers: levers.add_load(mb * MB)


def _bounds(**changes: int) -> Callable[[MemoryLevers], object]:
    return lambda levers: levers.set_bounds(**changes)


def oscillate(low_mb: int, high_mb: int, period: float, cycles: int) -> list[Step]:
    """Guest load swinging between `low_mb` and `high_mb` of demand every half period."""
    steps: list[Step] = []
    for i in range(cycles):
        base = i * period
        steps.append(
            Step(
                base,
                f"load up to {high_mb} MB",
                _load(high_mb - low_mb),
            )
        )
        steps.append(Step(base + period / 2, "load down", lambda lv: lv.drop_load()))
    return steps


def random_walk(
    levers: MemoryLevers, seed: int, count: int, interval: float, max_load_mb: int
) -> list[Step]:
    """A reproducible walk of load changes, and of buffer and bound changes the host allows."""
    rng = random.Random(seed)
    vm = levers.host.vm(levers.vm_name)
    rules = runtime_rules(levers.host.version, vm.memory.dynamic)
    maximum, minimum = vm.memory.maximum // MB, vm.memory.minimum // MB
    steps: list[Step] = []
    for i in range(count):
        at = i * interval
        choice = rng.choice(("load", "drop", "buffer", "maximum", "minimum"))
        if choice == "load":
            mb = rng.randrange(64, max_load_mb + 1, 64)
            steps.append(Step(at, f"load +{mb} MB", _load(mb)))
        elif choice == "buffer" and rules["buffer"] is Change.ANY:
            buffer = rng.choice((5, 10, 20, 50, 100))
            steps.append(Step(at, f"buffer {buffer}%", _bounds(buffer=buffer)))
        elif choice == "maximum" and rules["maximum"] is Change.INCREASE:
            maximum += 128 * rng.randint(1, 4)
            steps.append(Step(at, f"maximum {maximum} MB", _bounds(maximum=maximum * MB)))
        elif choice == "minimum" and rules["minimum"] is Change.DECREASE and minimum - 128 >= 256:
            minimum -= 128
            steps.append(Step(at, f"minimum {minimum} MB", _bounds(minimum=minimum * MB)))
        else:
            steps.append(Step(at, "drop load", lambda lv: lv.drop_load()))
    return steps


def run_schedule(
    levers: MemoryLevers, steps: Sequence[Step], stop: threading.Event | None = None
) -> list[Step]:
    """Run the steps at their offsets (waiting on the clock, interruptible); returns those run."""
    stop = stop or threading.Event()
    start = time.monotonic()
    done: list[Step] = []
    for step in sorted(steps, key=lambda s: s.at):
        # In short sleeps, so a guarded wait (the app under test ended) stops the schedule.
        due = Deadline.at(start + step.at)
        while not due.expired and not stop.is_set():
            due.sleep(0.1)
        if stop.is_set():
            break
        levers.timeline.add_event("schedule", step.label, {"at": step.at})
        step.action(levers)
        done.append(step)
    return done
