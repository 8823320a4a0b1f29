"""Cost of one sampling tick (Sampler.tick: the `sample-vm` script, one host round trip with the
guest's counters, the app's stats and its new output over PowerShell Direct), and the harness
process's CPU use while sampling at 1 Hz. The SSH tick (a Linux guest: the host's round trip
and one SSH command to the guest's sshd, at the same time) is set against the Direct tick.

The emulated host runs in a child process (this script with --serve: an EmbeddedEmulator,
like `dmh emulator serve`, which also hands over the guest credentials PowerShell Direct
needs), so the CPU figure for this process is the harness side only; the child's is shown
apart. The baseline is a plain `Get-VM -Name` round trip over the same session. Run:

    .venv/bin/python benchmarks/sampling.py [--ticks 100] [--seconds 30] [--tls]

With --fleet: sampling at fleet scale. 100 running VMs over 4 emulated hosts (each host a
child process, so this process's CPU is the controller's alone: time.process_time over all
its threads) sampled at 1 Hz for --seconds by harness.fleetsampler (one `sample-vms` round
trip per host per tick, a thread per host), against the baseline of today's per-VM
`Sampler` (host part only, a thread per VM) doing the same VMs in the same process:

    .venv/bin/python benchmarks/sampling.py --fleet [--hosts 4] [--vms 100] [--seconds 20]
        [--baseline-vms 100] [--baseline-seconds 10]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import psutil  # noqa: E402
from _timing import stats, time_calls  # noqa: E402

from harness.config import HostTarget, Secret  # noqa: E402
from harness.hyperv.guest import DirectChannel, Guest, GuestCredentials  # noqa: E402
from harness.hyperv.host import HyperVHost, literal  # noqa: E402
from harness.hyperv.session import HostSession  # noqa: E402
from harness.hyperv.ssh import SSHChannel, SSHTarget, guest_address  # noqa: E402
from harness.probe import JsonLinesProbe  # noqa: E402
from harness.sampler import Sampler  # noqa: E402
from harness.settings import MemorySettings  # noqa: E402
from harness.timeline import Timeline  # noqa: E402

VM = "bench-sampling"
LINUX_VM = "bench-sampling-linux"
APP = (
    "import json, time\n"
    "block = bytearray(64 << 20)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    print(json.dumps({'metric': 'ticks', 'value': n}), flush=True)\n"
    "    time.sleep(0.5)\n"
)


class CountingHandler:
    """The emulator's handler, counting the pipelines it runs (round trips) and the time it
    spends in them (the server-side share of a tick, waits included)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pipelines = 0
        self.seconds = 0.0

    def run(self, commands: Any, pipeline_input: Any, out: Any) -> None:
        started = time.perf_counter()
        try:
            self.inner.run(commands, pipeline_input, out)
        finally:
            self.pipelines += 1
            self.seconds += time.perf_counter() - started


def serve(tls: bool) -> int:
    """Child: an emulated host on loopback; connection details on stdout; a line "stats" on
    stdin answers the handler's counts; ends when stdin closes."""
    from harness.emulator.cmdlets import HyperVHandler
    from harness.emulator.server import EmulatorServer
    from harness.emulator.service import EmbeddedEmulator

    emu = EmbeddedEmulator(tls=tls)
    counting = CountingHandler(
        HyperVHandler(
            emu.host,
            guest_username=emu.guest_username,
            guest_password=emu.guest_password,
            guest_endpoint=emu._guest_endpoint,
        )
    )
    emu.server = EmulatorServer(counting, username=emu.username, password=emu.password, tls=tls)
    with emu:
        details = {
            "port": emu.server.port,
            "username": emu.username,
            "password": emu.password,
            "guest_password": emu.guest_password,
            "cert": emu.server.cert_path,
            "template": emu.template_path("windows"),
            "linux_template": emu.template_path("linux"),
            "switch": emu.host.switches[0],
        }
        print(json.dumps(details), flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                print(json.dumps([counting.pipelines, counting.seconds]), flush=True)
            elif line.startswith("ssh "):  # where a Linux VM's guest sshd listens
                endpoint = emu.ssh_endpoint(line[4:].strip())
                print(json.dumps({"port": endpoint.port, "key": endpoint.host_key}), flush=True)
    return 0


def _cpu(process: psutil.Process, children: bool = False) -> float:
    times = process.cpu_times()
    total = times.user + times.system
    if children:
        total += times.children_user + times.children_system
        for child in process.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
    return total


def run(ticks: int, seconds: float, interval: float, tls: bool) -> None:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", *(["--tls"] if tls else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        details = json.loads(child.stdout.readline())
        target = HostTarget(
            "127.0.0.1",
            details["port"],
            details["username"],
            Secret(details["password"]),
            auth="basic",
            ssl=tls,
            cert_validation=details["cert"] or True,
        )
        with HostSession(target) as session:
            host = HyperVHost(session)
            settings = MemorySettings.build(startup="1GB", minimum="512MB", maximum="4GB")
            host.create_vm(VM, settings, run_id="bench", template=details["template"])
            host.start_vm(VM, heartbeat_deadline=30)
            creds = GuestCredentials("guest", Secret(details["guest_password"]))
            guest = Guest(DirectChannel(session, VM, creds))
            process = guest.start_process(sys.executable, ["-c", APP])
            timeline = Timeline()
            sampler = Sampler(
                host, VM, timeline, guest=guest, process=process, probe=JsonLinesProbe(),
                interval=interval,
            )  # fmt: skip
            host_only = Sampler(host, VM, Timeline())

            def server_stats() -> tuple[int, float]:
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write("stats\n")
                child.stdin.flush()
                pipelines, seconds = json.loads(child.stdout.readline())
                return int(pipelines), float(seconds)

            baseline = time_calls(lambda: session.cmdlet("Get-VM", Name=literal(VM)), ticks)
            trips_before, server_before = server_stats()
            full = time_calls(sampler.tick, ticks)
            trips_after, server_after = server_stats()
            bare = time_calls(host_only.tick, ticks)
            ssh_ticks = _ssh_ticks(host, details, child, ticks)
            base_med = stats(baseline)[0]
            print(f"round trips over loopback ({'HTTPS' if tls else 'HTTP'}), {ticks} each:")
            for label, samples in (
                ("baseline Get-VM -Name", baseline),
                ("tick: host + guest + app (Direct)", full),
                ("tick: host only", bare),
                ("tick: host + guest + app (SSH)", ssh_ticks),
            ):
                med, p95 = stats(samples)
                print(
                    f"  {label:<36} median {med:6.2f} ms  p95 {p95:6.2f} ms"
                    f"  = {med / base_med:4.2f}x baseline"
                )

            ratio = stats(ssh_ticks)[0] / stats(full)[0]
            print(f"  SSH tick / Direct tick (medians) = {ratio:4.2f}x (goal: within 1.5x)")
            calls = ticks + 10  # time_calls' warm-up calls reach the server too
            trips = (trips_after - trips_before) / calls
            print(
                f"  per tick (host + guest + app): {trips:.2f} round trips,"
                f" {1000 * (server_after - server_before) / calls:.2f} ms server-side"
                " (no wait: counters from CIM classes, not Get-Counter's 1 s sample)"
            )
            assert trips == 1.0, f"a tick took {trips} round trips, not one"

            me = psutil.Process()
            emulator = psutil.Process(child.pid)
            samples_before = len(timeline.samples)
            cpu_me, cpu_emu = _cpu(me), _cpu(emulator, children=True)
            started = time.monotonic()
            with sampler:
                time.sleep(seconds)  # a benchmark's measuring window, not a test's wait
            wall = time.monotonic() - started
            used_me = _cpu(me) - cpu_me
            used_emu = _cpu(emulator, children=True) - cpu_emu
            taken = len(timeline.samples) - samples_before
            print(f"sampling at {1 / interval:g} Hz for {wall:.1f} s ({taken} samples):")
            print(
                f"  harness process (this one)   {used_me:6.3f} s CPU"
                f" = {100 * used_me / wall:5.2f}% of one core,"
                f" {1000 * used_me / max(taken, 1):5.2f} ms CPU per tick"
            )
            print(
                f"  emulator process + guest app {used_emu:6.3f} s CPU"
                f" = {100 * used_emu / wall:5.2f}% of one core (not the harness)"
            )
            reported = timeline.samples[-1].app
            print(f"  sampler errors {sampler.errors}; app reported {dict(reported.reported)}"
                  if reported else f"  sampler errors {sampler.errors}")  # fmt: skip
            process.stop()
            host.remove_vm(VM)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def _ssh_ticks(
    host: HyperVHost, details: dict[str, str], child: subprocess.Popen[str], ticks: int
) -> list[float]:
    """Ticks of a Linux guest with the same app: the host's round trip and one command to the
    guest's sshd (served by the emulator), at the same time."""
    assert child.stdin is not None and child.stdout is not None
    settings = MemorySettings.build(startup="1GB", minimum="512MB", maximum="4GB")
    host.create_vm(LINUX_VM, settings, run_id="bench", template=details["linux_template"],
                   switch=details["switch"], secure_boot="MicrosoftUEFICertificateAuthority")  # fmt: skip
    try:
        host.start_vm(LINUX_VM, heartbeat_deadline=30)
        child.stdin.write(f"ssh {LINUX_VM}\n")
        child.stdin.flush()
        endpoint = json.loads(child.stdout.readline())
        target = SSHTarget(guest_address(host, LINUX_VM, 30), endpoint["port"], "guest",
                           Secret(details["guest_password"]), host_keys=(endpoint["key"],))  # fmt: skip
        channel = SSHChannel(target)
        try:
            guest = Guest(channel)
            process = guest.start_process(sys.executable, ["-c", APP])
            sampler = Sampler(host, LINUX_VM, Timeline(), guest=guest, process=process,
                              probe=JsonLinesProbe())  # fmt: skip
            samples = time_calls(sampler.tick, ticks)
            process.stop()
            return samples
        finally:
            channel.close()
    finally:
        host.remove_vm(LINUX_VM)


def fleet(
    hosts: int, vms: int, seconds: float, interval: float, baseline_vms: int, baseline_s: float
) -> None:
    """The fleet figures: harness CPU (% of one core), CPU per VM-tick, round trips per host
    per tick, and the ratio against the per-VM Sampler on `baseline_vms` of the same VMs
    (scaled per VM-tick when that is fewer)."""
    from harness.fleetsampler import FleetSampler, fleet_summary

    children = [
        subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(hosts)
    ]  # fmt: skip
    try:
        lab: dict[str, HyperVHost] = {}
        names: dict[str, list[str]] = {}
        stats_of: dict[str, subprocess.Popen[str]] = {}
        settings = MemorySettings.build(startup="512MB", minimum="256MB", maximum="1GB")
        made = time.monotonic()
        for index, child in enumerate(children):
            assert child.stdout is not None
            details = json.loads(child.stdout.readline())
            target = HostTarget("127.0.0.1", details["port"], details["username"],
                                Secret(details["password"]), auth="basic", ssl=False)  # fmt: skip
            label = f"host{index + 1}"
            host = HyperVHost(HostSession(target))
            lab[label], stats_of[label] = host, child
            names[label] = [f"fleet-{index + 1}-{n:03d}" for n in range(index, vms, hosts)]
            for name in names[label]:
                host.create_vm(name, settings, run_id="bench", template=details["template"])
                host.start_vm(name, heartbeat_deadline=30)
        total = sum(len(v) for v in names.values())
        print(f"{total} running VMs over {hosts} emulated hosts (child processes), "
              f"made in {time.monotonic() - made:.0f} s")  # fmt: skip

        def trips() -> dict[str, int]:
            counts = {}
            for label, child in stats_of.items():
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write("stats\n")
                child.stdin.flush()
                counts[label] = int(json.loads(child.stdout.readline())[0])
            return counts

        sampler = FleetSampler(lab, names, interval=interval)
        before_trips = trips()
        cpu, started = time.process_time(), time.monotonic()
        with sampler:
            time.sleep(seconds)  # a benchmark's measuring window
        used, wall = time.process_time() - cpu, time.monotonic() - started
        after_trips = trips()
        ticks = {label: s.ticks for label, s in sampler.stats.items()}
        vm_ticks = sum(len(names[label]) * n for label, n in ticks.items())
        per_trip = {
            label: (after_trips[label] - before_trips[label]) / max(ticks[label], 1)
            for label in lab
        }
        fleet_ms = 1000 * used / max(vm_ticks, 1)
        print(f"fleet sampler, {1 / interval:g} Hz for {wall:.1f} s: {vm_ticks} VM-ticks")
        print(f"  harness CPU {used:6.3f} s = {100 * used / wall:5.2f}% of one core "
              f"(target <= 25%), {fleet_ms:.3f} ms CPU per VM-tick")  # fmt: skip
        print(f"  round trips per host per tick: "
              f"{', '.join(f'{k} {v:.2f}' for k, v in per_trip.items())}")  # fmt: skip
        print(f"  per host: {json.dumps(fleet_summary(sampler.stats))}")

        chosen = [(label, name) for label in lab for name in names[label]]
        chosen = chosen[:: max(1, len(chosen) // max(baseline_vms, 1))][:baseline_vms]
        samplers = [Sampler(lab[label], name, Timeline(), interval=interval)
                    for label, name in chosen]  # fmt: skip
        cpu, started = time.process_time(), time.monotonic()
        for one in samplers:
            one.start()
        time.sleep(baseline_s)  # the baseline's measuring window
        with concurrent.futures.ThreadPoolExecutor(len(samplers)) as pool:
            list(pool.map(Sampler.stop, samplers))  # all at once: each waits out its tick
        base_used, base_wall = time.process_time() - cpu, time.monotonic() - started
        base_ticks = sum(len(one.timeline.samples) for one in samplers)
        base_ms = 1000 * base_used / max(base_ticks, 1)
        scaled = base_ms * total * (1 / interval) / 10  # % of one core for all VMs
        print(f"baseline: per-VM Sampler (host part only, a thread per VM) on {len(samplers)} "
              f"of the VMs for {base_wall:.1f} s: {base_ticks} VM-ticks")  # fmt: skip
        print(f"  harness CPU {base_used:6.3f} s = {100 * base_used / base_wall:5.2f}% of one "
              f"core, {base_ms:.3f} ms CPU per VM-tick"
              + (f"; scaled to {total} VMs at {1 / interval:g} Hz: {scaled:.0f}% of one core"
                 if len(samplers) < total else ""))  # fmt: skip
        print(f"  fleet / baseline CPU per VM-tick = {fleet_ms / base_ms:.3f}x "
              f"({base_ms / fleet_ms:.1f}x less CPU)")  # fmt: skip
        for host in lab.values():
            host.session.close()
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fleet", action="store_true", help="sampling at fleet scale")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--baseline-vms", type=int, default=100)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.serve:
        return serve(args.tls)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.fleet:
        seconds = args.seconds if "--seconds" in sys.argv else 20.0
        fleet(args.hosts, args.vms, seconds, args.interval, args.baseline_vms,
              args.baseline_seconds)  # fmt: skip
        return 0
    run(args.ticks, args.seconds, args.interval, args.tls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
