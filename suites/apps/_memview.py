"""How the reference apps read memory: like real Linux apps, from /proc/meminfo via psutil.

In an emulated guest whose /proc/meminfo overlay is active, psutil already sees the guest.
Where the emulator could not overlay it, it names the guest's meminfo file in
DMH_GUEST_MEMINFO (and sets DMH_GUEST_OVERLAY=0); we read that file the same way.
"""

from __future__ import annotations

import json
import os
import sys
import time

import psutil


def read_memory() -> tuple[int, int]:
    """(total_mb, available_mb) as this guest shows them."""
    path = os.environ.get("DMH_GUEST_MEMINFO")
    if path and os.environ.get("DMH_GUEST_OVERLAY") != "1":
        fields = {}
        with open(path, encoding="ascii") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    fields[name] = int(parts[0])
        return fields["MemTotal"] // 1024, fields["MemAvailable"] // 1024
    vm = psutil.virtual_memory()
    return vm.total >> 20, vm.available >> 20


def report(metric: str, value: float) -> None:
    print(json.dumps({"metric": metric, "value": value, "ts": round(time.time(), 3)}), flush=True)


class Cache:
    """A cache of real, touched memory in 8 MB chunks (so the guest's commit really moves)."""

    CHUNK_MB = 8

    def __init__(self) -> None:
        self.chunks: list[bytearray] = []

    @property
    def mb(self) -> int:
        return len(self.chunks) * self.CHUNK_MB

    def resize(self, target_mb: int, step_mb: int = 64) -> None:
        target_mb = max(0, target_mb)
        if target_mb > self.mb:
            for _ in range(min(target_mb - self.mb, step_mb) // self.CHUNK_MB):
                chunk = bytearray(self.CHUNK_MB << 20)
                for i in range(0, len(chunk), 4096):
                    chunk[i] = 1
                self.chunks.append(chunk)
        else:
            drop = (self.mb - target_mb) // self.CHUNK_MB
            if drop:
                del self.chunks[-drop:]


def run(decide, interval: float = 0.2, *, quiet: bool = False, read=None) -> None:
    """Tick forever: decide(cache, total_mb, available_mb) → target cache size in MB.
    `quiet`: print no metric lines (they are optional); `read`: how memory is read (default
    `read_memory`, looked up at each tick)."""
    cache = Cache()
    try:
        while True:
            total, available = (read or read_memory)()
            cache.resize(decide(cache, total, available))
            if not quiet:
                report("total_mb", total)
                report("available_mb", available)
                report("cache_mb", cache.mb)
            time.sleep(interval)
    except KeyboardInterrupt:
        sys.exit(0)
