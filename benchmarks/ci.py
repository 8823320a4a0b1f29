"""The figures the tests no longer bound: how the waits, the retries and a long-running
endpoint behave in wall-clock time on this machine, each against a baseline measured in the
same process. `.ci/run` runs the fast subset and prints it; nothing here fails a build.

- waits: how late `wait_until`'s last check comes after its deadline, and its widest gap
  between checks (interval 10 ms growing to 100 ms), against how late a plain
  `time.sleep` of 100 ms wakes;
- heartbeat: beats heard in a 0.75 s wait with a 0.2 s heartbeat (3 on an idle machine), and
  how late each came;
- retries: a host that refuses connections (3 retries, backoff 50 ms doubling) fails after
  the backoff plus the refusals, against the 350 ms of backoff alone; a wrong password (never
  retried; the emulator answers a failed login late, as a throttling host does) against a
  session with the right one;
- soak: pipelines over runspace pools opened and closed by two client threads on one toy
  endpoint: threads left and RSS growth per 1000 pipelines, and the time per pipeline
  against the warm-up's (the baseline). `--soak` runs the 3000 pipelines the tests once did.

Usage: python benchmarks/ci.py [--soak]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import psutil  # noqa: E402
from psrp_roundtrip import PASSWORD, ToyGetVM  # noqa: E402
from pypsrp.powershell import PowerShell, RunspacePool  # noqa: E402
from pypsrp.wsman import WSMan  # noqa: E402

from harness.config import Secret  # noqa: E402
from harness.deadline import Deadline, Heartbeat, wait_until  # noqa: E402
from harness.emulator.server import EmulatorServer  # noqa: E402
from harness.emulator.service import EmbeddedEmulator  # noqa: E402
from harness.errors import DeadlineError, HarnessError  # noqa: E402
from harness.fixtures.wiring import emulator_target  # noqa: E402
from harness.hyperv.session import HostSession  # noqa: E402

USER = "bench"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def _stamp(stamps: list[float]) -> None:
    stamps.append(time.monotonic())


def waits(rounds: int = 5) -> None:
    late, widest = [], []
    for _ in range(rounds):
        stamps: list[float] = []
        deadline = Deadline(0.5)
        # The wait always runs out: what is measured is how it waited.
        with contextlib.suppress(DeadlineError):
            wait_until(
                functools.partial(_stamp, stamps),
                deadline,
                what="nothing",
                interval=0.01,
                max_interval=0.1,
            )
        late.append(stamps[-1] - deadline.end)
        widest.append(max(b - a for a, b in itertools.pairwise(stamps)))
    overshoot = []
    for _ in range(rounds):
        started = time.monotonic()
        time.sleep(0.1)
        overshoot.append(time.monotonic() - started - 0.1)
    base = max(statistics.median(overshoot), 1e-6)
    print("waits (median of 5)")
    print(f"  last check after the deadline {_ms(statistics.median(late))}")
    print(f"  widest gap between checks     {_ms(statistics.median(widest))}  (cap 100 ms)")
    print(f"  baseline: sleep(0.1) overshoot {_ms(base)}")
    print(f"  ratio lateness / overshoot     {statistics.median(late) / base:7.2f}")


def heartbeat() -> None:
    heard: list[float] = []
    flag = threading.Event()
    threading.Timer(0.75, flag.set).start()
    wait_until(
        flag.is_set,
        5.0,
        what="the flag",
        progress=Heartbeat(lambda _, seconds: heard.append(seconds), every=0.2),
    )
    lateness = [seconds - 0.2 * (i + 1) for i, seconds in enumerate(heard)]
    print("heartbeat (every 0.2 s, 0.75 s wait)")
    print(f"  beats heard {len(heard)} (3 expected)")
    if lateness:
        print(f"  latest beat after its time {_ms(max(lateness))}")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    # Refused or unreachable, as intended: what is measured is how long it took.
    with contextlib.suppress(HarnessError):
        action()
    return time.monotonic() - started


def retries() -> None:
    backoff = sum(0.05 * 2**i for i in range(3))
    emulator = EmbeddedEmulator()
    emulator.start()
    try:
        right = emulator_target(emulator)
        wrong = dataclasses.replace(right, password=Secret("not-the-password"))
        closed = dataclasses.replace(right, port=_closed_port())
        _timed(lambda: HostSession(right).script("host-facts"))  # warm: imports, first pool
        opened = _timed(lambda: HostSession(right).script("host-facts"))
        refused = _timed(lambda: HostSession(wrong, backoff=1.0).script("host-facts"))
        gone = _timed(lambda: HostSession(closed, retries=3, backoff=0.05).script("host-facts"))
    finally:
        emulator.close()
    print("retries")
    print(f"  unreachable host, 3 retries   {_ms(gone)}  (backoff alone {_ms(backoff)})")
    print(f"  ratio to the backoff          {gone / backoff:7.2f}")
    print(f"  wrong password (no retry)     {_ms(refused)}  (right one: {_ms(opened)})")
    print(f"  ratio to the right password   {refused / opened:7.2f}")


def _pipelines(
    server: EmulatorServer, pools: int, per_pool: int, errors: list[BaseException]
) -> None:
    try:
        for _ in range(pools):
            conn = WSMan(
                "127.0.0.1", port=server.port, path="wsman", ssl=False, auth="basic",
                encryption="never", username=USER, password=PASSWORD,
            )  # fmt: skip
            with conn, RunspacePool(conn) as rp:
                for _ in range(per_pool):
                    ps = PowerShell(rp)
                    ps.add_cmdlet("Get-VM")
                    ps.invoke()
    except BaseException as err:  # reported below, from the main thread
        errors.append(err)


def _round(server: EmulatorServer, threads: int, pools: int, per_pool: int) -> float:
    """Seconds per pipeline over `threads` client threads."""
    errors: list[BaseException] = []
    workers = [
        threading.Thread(target=_pipelines, args=(server, pools, per_pool, errors))
        for _ in range(threads)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return (time.monotonic() - started) / (threads * pools * per_pool)


def soak(full: bool) -> None:
    pools, per_pool = (6, 250) if full else (3, 50)
    proc = psutil.Process()
    with EmulatorServer(ToyGetVM(), username=USER, password=PASSWORD) as server:
        warm = _round(server, 2, 1, 50)
        gc.collect()
        threads_before, rss_before = threading.active_count(), proc.memory_info().rss
        each = _round(server, 2, pools, per_pool)
        gc.collect()
        shells = server.shell_count
    total = 2 * pools * per_pool
    growth = (proc.memory_info().rss - rss_before) / 1024**2
    print(f"soak ({total} pipelines, {2 * pools} pools, 2 client threads)")
    print(f"  shells left {shells}, threads left {threading.active_count() - threads_before:+d}")
    print(f"  RSS growth {growth:6.1f} MiB  ({growth * 1000 / total:.1f} MiB per 1000 pipelines)")
    print(f"  per pipeline {_ms(each)}  (warm-up baseline {_ms(warm)})")
    print(f"  ratio to the warm-up          {each / warm:7.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--soak", action="store_true", help="3000 pipelines instead of 300")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the retries' warnings are expected here
    waits()
    heartbeat()
    retries()
    soak(args.soak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
