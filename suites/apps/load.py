"""Load generator for the levers: holds N MB of touched memory until it is stopped.

It grows in steps, as a real workload does, so the guest's Dynamic Memory can react: the
emulated guest's memory is enforced, and a 1 GB jump in one step would be OOM-killed in a real
1 GB Linux guest before the host could hot-add. Where the guest has little left it waits a
moment for the host (`Room`).
"""

from __future__ import annotations

import os
import sys
import time

STEP_MB = 16
STEP_PAUSE = 0.025  # ≈ 640 MB/s
# Each step waits (up to WAIT_S) while the guest has less than a step plus RESERVE_MB
# available: a host acting once a second (realistic timings, a real host) hot-adds before the
# load outgrows the guest, instead of the guest's OOM killer ending the load. Past WAIT_S it
# takes the step anyway: at the ceiling the load must still press.
RESERVE_MB = 64
WAIT_S = 2.0


def available_mb() -> int | None:
    """MemAvailable of this guest (its meminfo: DMH_GUEST_MEMINFO on the emulator, else
    /proc/meminfo), or None where there is none (a Windows guest)."""
    try:
        with open(os.environ.get("DMH_GUEST_MEMINFO") or "/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None


class Room:
    """What the guest has left for the next step: MemAvailable less what this load took since
    that figure last changed. A kernel's figure is live and the correction stays near 0; a
    figure refreshed only now and then (an emulated guest's) would let the load take several
    times its reserve between two refreshes."""

    def __init__(self) -> None:
        self.seen: int | None = None
        self.taken = 0

    def left(self) -> int | None:
        free = available_mb()
        if free != self.seen:
            self.seen, self.taken = free, 0
        return None if free is None else free - self.taken

    def wait_for(self, step: int) -> None:
        waited = 0.0
        while waited < WAIT_S and (left := self.left()) is not None and left < step + RESERVE_MB:
            time.sleep(0.05)
            waited += 0.05
        self.taken += step


if __name__ == "__main__":
    size_mb = int(sys.argv[1])
    blocks: list[bytearray] = []
    held = 0
    room = Room()
    while held < size_mb:
        step = min(STEP_MB, size_mb - held)
        room.wait_for(step)
        block = bytearray(step << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        blocks.append(block)
        held += step
        time.sleep(STEP_PAUSE)
    print(f"holding {size_mb} MB", flush=True)
    while True:
        time.sleep(3600)
