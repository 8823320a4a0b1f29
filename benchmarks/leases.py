"""What a capacity lease costs: acquire, renew and release of the capacity-lease script on an
emulated host of a fleet, over loopback with the real client, against a baseline measured on
the same session in the same process: a plain `Get-VMHost` round trip (the lightest command
the host answers). Also acquire while other leases are held (`--held`), since every acquire
reads and rewrites the host's whole lease file, and acquire from two threads at once (two
controllers' sessions contending for the host's mutex).

Usage: python benchmarks/leases.py [--iterations 200] [--held 50]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from _timing import stats, time_calls  # noqa: E402

from harness.capacity import HostLeases  # noqa: E402
from harness.emulator.fleet import EmulatorFleet  # noqa: E402
from harness.hyperv.session import HostSession  # noqa: E402

RUN = "0123456789abcdef"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--held", type=int, default=50, help="leases held during one series")
    args = parser.parse_args()
    with EmulatorFleet.from_spec("2022:64GB", vm_limit=0) as fleet:
        (entry,) = fleet.inventory()
        env = {"DMH_EMULATOR_PASSWORD": fleet.password}
        with HostSession(entry.target(env)) as session:
            host = HostLeases.of(session, entry)
            rows = [
                (
                    "Get-VMHost (baseline)",
                    time_calls(lambda: session.cmdlet("Get-VMHost"), args.iterations),
                )
            ]

            def acquire_release() -> None:
                answer = host.acquire(64, RUN)
                assert answer.granted, answer.reason
                host.release(answer.lease_id)

            rows.append(("acquire + release", time_calls(acquire_release, args.iterations)))
            held = host.acquire(64, RUN).lease_id
            rows.append(("renew", time_calls(lambda: host.renew(held), args.iterations)))
            for _ in range(args.held):
                host.acquire(64, RUN)
            rows.append(
                (
                    f"acquire + release, {args.held} held",
                    time_calls(acquire_release, args.iterations),
                )
            )
            rows.append(
                (f"renew, {args.held} held", time_calls(lambda: host.renew(held), args.iterations))
            )
            for lease in host.list().leases:
                host.release(lease.id)
            rows.append(("acquire + release, 2 threads", _two_threads(entry, env, args.iterations)))
    base, _ = stats(rows[0][1])
    print(f"capacity leases on one emulated host, {args.iterations} calls each (ms)")
    print(f"{'':34} {'median':>8} {'p95':>8} {'× baseline':>11}")
    for name, samples in rows:
        median, p95 = stats(samples)
        print(f"{name:34} {median:8.2f} {p95:8.2f} {median / base:10.2f}×")
    return 0


def _two_threads(entry: object, env: dict[str, str], iterations: int) -> list[float]:
    """Each thread its own session (a controller each); the samples of both."""
    from harness.inventory import HostEntry

    assert isinstance(entry, HostEntry)
    samples: list[float] = []
    lock = threading.Lock()

    def controller() -> None:
        with HostSession(entry.target(env)) as session:
            host = HostLeases.of(session, entry)

            def cycle() -> None:
                answer = host.acquire(64, RUN)
                host.release(answer.lease_id)

            mine = time_calls(cycle, iterations // 2)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=controller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


if __name__ == "__main__":
    sys.exit(main())
