"""Levers and schedules against the emulator: memory really moves, or the lever says it is
broken; schedules are reproducible and stay within what the host version allows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.errors import BalloonBlocked, LeverError, RuntimeChangeError
from harness.hyperv.guest import DirectChannel, Guest
from harness.hyperv.host import HyperVHost
from harness.levers import LoadCommand, MemoryLevers
from harness.schedule import Step, oscillate, random_walk, run_schedule
from harness.settings import MemorySettings
from harness.timeline import Timeline

from .support import Emulator, memory, running_emulator, running_vm

LOAD = Path(__file__).resolve().parents[2] / "suites" / "apps" / "load.py"


def levers_for(
    host: HyperVHost, name: str, emulator: Emulator, deadline: float = 20.0
) -> MemoryLevers:
    guest = Guest(DirectChannel(host.session, name, emulator.credentials))
    guest.copy_in(str(LOAD), "load.py")
    load = LoadCommand(sys.executable, ["load.py"])
    return MemoryLevers(host, name, Timeline(), guest=guest, load=load, deadline=deadline)


def test_hot_add_by_load_then_balloon_by_dropping_it(http_emulator: Emulator, vm_name: str) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator, memory("1GB", "512MB", "4GB")):
            levers = levers_for(host, vm_name, http_emulator)
            up = levers.force_hot_add("256MB")
            assert up.strategy == "load" and up.after_mb >= up.before_mb + 256
            down = levers.force_balloon("256MB")
            assert down.strategy == "drop-load" and down.after_mb <= down.before_mb - 256
            kinds = [e.kind for e in levers.timeline.events]
            assert kinds.count("hot-add") == 1 and kinds.count("balloon") == 1
            assert not levers.loads


def test_hot_add_at_the_ceiling_raises_the_maximum(http_emulator: Emulator, vm_name: str) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator, memory("1GB", "512MB", "1GB")):
            levers = levers_for(host, vm_name, http_emulator)
            move = levers.force_hot_add("128MB")
            assert move.strategy == "raise-maximum"
            assert host.vm(vm_name).memory.maximum > 1 << 30
            levers.drop_load()


def test_a_lever_that_cannot_move_memory_is_broken_not_failed(
    http_emulator: Emulator, vm_name: str
) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        # Well above its minimum (the Windows guest needs ~750 MB), no load, and a 5% buffer
        # already: no balloon strategy applies.
        settings = MemorySettings.build(startup="1GB", minimum="256MB", maximum="2GB", buffer=5)
        with running_vm(host, vm_name, http_emulator, settings):
            levers = levers_for(host, vm_name, http_emulator, deadline=2.0)
            with pytest.raises(LeverError, match="no balloon strategy"):
                levers.force_balloon()
            with pytest.raises(LeverError, match="memory did not move"):
                levers.force_hot_add("64GB", strategy="raise-buffer")


def test_a_balloon_the_guests_demand_blocks_says_so(http_emulator: Emulator, vm_name: str) -> None:
    """A process the levers did not start holds the memory: the balloon cannot take it, and
    the error carries the guest's demand (the app fixture turns that into the app's failure
    when the app is what holds it)."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator, memory("1GB", "512MB", "4GB")):
            levers = levers_for(host, vm_name, http_emulator, deadline=3.0)
            assert levers.guest is not None and levers.load is not None
            holder = levers.guest.start_process(
                levers.load.command, [*levers.load.arguments, "768"]
            )
            levers.force_hot_add("256MB", strategy="raise-buffer")
            with pytest.raises(BalloonBlocked) as blocked:
                levers.force_balloon("512MB", strategy="lower-buffer")
            assert blocked.value.demand_mb * 1.05 > blocked.value.wanted_mb
            assert blocked.value.shortfall_mb > 0
            assert "the guest's demand stayed at" in str(blocked.value)
            holder.stop()


def test_set_bounds_refuses_what_the_version_forbids_before_sending(
    http_emulator: Emulator, vm_name: str
) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator, memory("1GB", "512MB", "2GB")):
            levers = levers_for(host, vm_name, http_emulator)
            before = len(http_emulator.recorder.statements)
            with pytest.raises(RuntimeChangeError, match="maximum"):
                levers.set_bounds(maximum="1GB")
            sent = http_emulator.recorder.statements[before:]
            assert not any(s.startswith("Set-VMMemory") for s in sent)
            assert not [e for e in levers.timeline.events if e.kind == "memory"]


def test_random_walk_is_reproducible_and_within_the_runtime_rules() -> None:
    # 2012 R2: the oldest host the harness drives (older ones are refused at connect time).
    with running_emulator(version="2012R2") as old, old.session() as session:
        host = HyperVHost(session)
        with running_vm(host, "walk-2012r2", old, memory("1GB", "512MB", "2GB")):
            levers = levers_for(host, "walk-2012r2", old)
            first = [
                s.label
                for s in random_walk(levers, seed=7, count=30, interval=0.1, max_load_mb=256)
            ]
            second = [
                s.label
                for s in random_walk(levers, seed=7, count=30, interval=0.1, max_load_mb=256)
            ]
            other = [
                s.label
                for s in random_walk(levers, seed=8, count=30, interval=0.1, max_load_mb=256)
            ]
            assert first == second and first != other


def test_schedule_runs_steps_in_order_at_their_offsets(
    http_emulator: Emulator, vm_name: str
) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator, memory("1GB", "512MB", "2GB")):
            levers = levers_for(host, vm_name, http_emulator)
            steps = [
                Step(0.6, "buffer 50", lambda lv: lv.set_bounds(buffer=50)),
                Step(0.0, "buffer 30", lambda lv: lv.set_bounds(buffer=30)),
                *oscillate(256, 384, period=0.8, cycles=1),
            ]
            done = run_schedule(levers, steps)
            assert [s.label for s in done] == [
                "buffer 30",
                "load up to 384 MB",
                "load down",
                "buffer 50",
            ]
            times = [e.t for e in levers.timeline.events if e.kind == "schedule"]
            assert times == sorted(times) and times[-1] - times[0] >= 0.6
            assert host.vm(vm_name).memory.buffer == 50


def test_balloon_of_a_vm_held_by_its_floor_lowers_the_minimum(
    http_emulator: Emulator, vm_name: str
) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        settings = MemorySettings.build(startup="2GB", minimum="2GB", maximum="4GB", buffer=5)
        with running_vm(host, vm_name, http_emulator, settings):
            levers = levers_for(host, vm_name, http_emulator)
            move = levers.force_balloon("128MB")
            assert move.strategy == "lower-minimum"
            assert move.after_mb <= move.before_mb - 128
            assert host.vm(vm_name).memory.minimum < 2 << 30
