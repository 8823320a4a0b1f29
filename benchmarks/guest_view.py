"""Cost of an emulated guest that real runtimes cannot tell from a VM.

1. Per guest, at the balancer tick: measuring its processes (commit from their mappings, the
   cgroup's usage and OOM counters), building and publishing its view (meminfo, node meminfo,
   counters) and keeping its cgroup limit current. Baseline: the same tick for a guest that
   runs no process (synthetic load only). Figures are CPU time of this process per tick.
2. Per call, in the app: sysinfo() and sysconf(_SC_PHYS_PAGES) through the preload library
   (inside a real guest) against a bare process, timed by a small C program in a loop.

Run:  .venv/bin/python benchmarks/guest_view.py [--ticks 200] [--processes 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from _timing import stats  # noqa: E402

from harness.emulator.host import EmulatedHost, VMState  # noqa: E402
from harness.emulator.process.sandbox.containment import support  # noqa: E402
from harness.emulator.process.sandbox.preload import library  # noqa: E402
from harness.settings import MemoryChange  # noqa: E402
from harness.units import GB, MB  # noqa: E402

APP = "import time\nblock = bytearray(32 << 20)\nwhile True: time.sleep(1)\n"
CALLS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    long n = atol(argv[1]); struct sysinfo info; volatile long sink = 0;
    double start = now();
    for (long i = 0; i < n; i++) { sysinfo(&info); sink += info.totalram; }
    double mid = now();
    for (long i = 0; i < n; i++) sink += sysconf(_SC_PHYS_PAGES);
    double end = now();
    printf("%.1f %.1f %lu\n", (mid - start) / n * 1e9, (end - mid) / n * 1e9, info.totalram * info.mem_unit);
    return 0;
}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tick_cpu(host: EmulatedHost, clock: FakeClock, ticks: int) -> list[float]:
    """CPU seconds of this process for each of `ticks` balancer ticks."""
    samples = []
    for _ in range(ticks):
        clock.now = round(clock.now + host.timings.tick, 9)
        start = time.process_time()
        host.tick()
        samples.append(time.process_time() - start)
    return samples


def boot(host: EmulatedHost, clock: FakeClock, name: str) -> uuid.UUID:
    vm = host.new_vm(name, "1GB", guest_os="linux").id
    host.set_memory(vm, MemoryChange(dynamic=True, minimum=512 * MB, maximum=4 * GB))
    host.start(vm)
    while host.get_vm(vm).state is not VMState.Running:
        tick_cpu(host, clock, 1)
    return vm


def bench_tick(ticks: int, processes: int) -> None:
    clock = FakeClock()
    with (
        tempfile.TemporaryDirectory(prefix="dmh-bench-") as tmp,
        EmulatedHost("16GB", clock=clock, guest_root=tmp) as host,
    ):
        host.guest(boot(host, clock, "idle")).synthetic_mb = 300
        baseline = tick_cpu(host, clock, ticks)
        guest = host.guest(boot(host, clock, "busy"))
        for _ in range(processes):
            guest.start_process([sys.executable, "-c", APP])
        tick_cpu(host, clock, 20)  # processes up, sandbox made
        both = tick_cpu(host, clock, ticks)
    base_med, base_p95 = stats(baseline)
    both_med, both_p95 = stats(both)
    per_guest = max(0.0, both_med - base_med)
    print(
        f"balancer tick, 1 idle guest (baseline):   median {base_med:.3f} ms CPU, p95 {base_p95:.3f}"
    )
    print(
        f"+ 1 contained guest running {processes} processes: median {both_med:.3f} ms CPU,"
        f" p95 {both_p95:.3f}  (ratio {both_med / base_med:.1f}x)"
    )
    print(
        f"per contained guest: {per_guest:.3f} ms CPU per tick = {per_guest / 10:.2f} % of a core"
        f" at the real 1 s cadence, {per_guest:.2f} % at the fast 0.1 s one"
    )


def bench_calls(calls: int) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    lib = library().path
    if compiler is None or lib is None:
        print(f"sysinfo() overhead: skipped ({library().reason or 'no compiler'})")
        return
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="dmh-bench-") as tmp:
        source, program = Path(tmp, "calls.c"), Path(tmp, "calls")
        source.write_text(CALLS)
        subprocess.run([compiler, "-O2", "-o", str(program), str(source)], check=True)
        bare = subprocess.run(
            [str(program), str(calls)], capture_output=True, text=True, check=True
        ).stdout.split()
        with EmulatedHost("16GB", clock=clock, guest_root=Path(tmp, "g")) as host:
            guest = host.guest(boot(host, clock, "calls"))
            proc = guest.start_process([str(program), str(calls)])
            proc.wait(120)
            inside = proc.output().split()
    print(
        f"sysinfo():               bare {float(bare[0]):8.1f} ns/call, in a guest"
        f" {float(inside[0]):8.1f} ns/call  (ratio {float(inside[0]) / float(bare[0]):.1f}x)"
    )
    print(
        f"sysconf(_SC_PHYS_PAGES): bare {float(bare[1]):8.1f} ns/call, in a guest"
        f" {float(inside[1]):8.1f} ns/call  (ratio {float(inside[1]) / float(bare[1]):.1f}x)"
    )
    print(f"totalram seen: bare {int(bare[2]) >> 20} MB, in the guest {int(inside[2]) >> 20} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    found = support()
    print(
        f"containment: cgroup v{found.cgroup.version if found.cgroup else '-'},"
        f" namespaces {'yes' if found.namespaces else 'no'}; cpus {os.cpu_count()}"
    )
    for warning in found.warnings:
        print(f"warning: {warning}")
    bench_tick(args.ticks, args.processes)
    bench_calls(args.calls)


if __name__ == "__main__":
    main()
