"""Cost of one balancer pass: an emulated host with 500 running DM VMs whose (synthetic)
demand varies per VM, in microseconds per VM per tick, against a same-process baseline.

The baseline is a plain loop over the same 500 VMs computing only the target formula
clamp(ceil_to_block(demand × (1 + buffer/100)), minimum, maximum) — the least any balancer
must do — so the ratio says what the rest (arbitration, hold-off, counters, guest reports
and views) costs on top. Run: python benchmarks/balancer.py [--vms 500] [--ticks 200]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.emulator.balancer import Timings
from harness.emulator.host import EmulatedHost
from harness.settings import MemoryChange
from harness.units import GB, MB


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(vms: int, seed: int) -> tuple[EmulatedHost, Clock, list[tuple[float, float, float]]]:
    clock = Clock()
    # ~1.4 GB wanted per VM on average against 1.25 GB per VM of host: short at the peaks,
    # so weight arbitration runs too
    host = EmulatedHost(vms * 5 * GB // 4 + 4 * GB, clock=clock, timings=Timings.fast())
    rng = random.Random(seed)
    waves = []
    for i in range(vms):
        vm = host.new_vm(f"bench-{i:04d}", "1GB", guest_os=rng.choice(("windows", "linux")))
        change = MemoryChange(
            dynamic=True,
            minimum=512 * MB,
            maximum=4 * GB,
            buffer=rng.choice((10, 20, 50)),
            priority=rng.randrange(0, 101),
        )
        host.set_memory(vm.id, change)
        host.start(vm.id)
        waves.append((rng.uniform(0, 800), rng.uniform(0.05, 0.5), rng.uniform(0, math.tau)))
    return host, clock, waves


def bench_host(vms: int, ticks: int, seed: int, *, balancer_only: bool) -> list[float]:
    """µs per VM per tick of EmulatedHost.tick (guest reports, balancer, guest views), or
    with `balancer_only` of Balancer.tick alone (reports fed outside the timing)."""
    host, clock, waves = build(vms, seed)
    guests = [(vm.id, host.guest(vm.id)) for vm in host.find_vms("bench-*")]
    keys = [str(vm_id) for vm_id, _ in guests]
    times: list[float] = []
    warmup = 20  # past boot and the quiet period
    for n in range(warmup + ticks):
        clock.now += host.timings.tick
        for (_, guest), (amplitude, speed, phase) in zip(guests, waves, strict=True):
            guest.synthetic_mb = int(amplitude * (1 + math.sin(n * speed + phase)))
        if balancer_only:
            for key, (_, guest) in zip(keys, guests, strict=True):
                host.balancer.report(key, guest.committed_mb())
            started = time.perf_counter()
            host.balancer.tick(clock.now)
        else:
            started = time.perf_counter()
            host.tick()
        elapsed = time.perf_counter() - started
        if n >= warmup:
            times.append(elapsed / vms * 1e6)
    host.close()
    return times


def bench_baseline(vms: int, ticks: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    rows = [(rng.randrange(300, 2500), rng.choice((10, 20, 50)), 512, 4096) for _ in range(vms)]
    block = 128
    times: list[float] = []
    sink = 0
    for _ in range(ticks):
        started = time.perf_counter()
        for demand, buffer, low, high in rows:
            grown = -(-demand * (100 + buffer) // 100)
            sink += min(max(-(-grown // block) * block, low), high)
        times.append((time.perf_counter() - started) / vms * 1e6)
    assert sink > 0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    host_times = bench_host(args.vms, args.ticks, args.seed, balancer_only=False)
    balancer_times = bench_host(args.vms, args.ticks, args.seed, balancer_only=True)
    baseline = bench_baseline(args.vms, args.ticks, args.seed)
    host_median = statistics.median(host_times)
    balancer_median = statistics.median(balancer_times)
    base_median = statistics.median(baseline)
    print(f"{args.vms} running DM VMs, median of {args.ticks} ticks (µs per VM per tick)")
    print(f"  EmulatedHost.tick (reports + balancer + guest views): {host_median:8.2f}")
    print(f"  Balancer.tick alone:                                   {balancer_median:8.2f}")
    print(f"  baseline (clamp formula only, same VMs):               {base_median:8.3f}")
    print(
        f"  ratio host/baseline: {host_median / base_median:.1f}x,"
        f" balancer/baseline: {balancer_median / base_median:.1f}x"
    )
    print(f"  one host tick for all VMs: {host_median * args.vms / 1000:.2f} ms")


if __name__ == "__main__":
    main()
