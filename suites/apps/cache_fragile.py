"""Reference app (fragile): assumes total memory is fixed and aborts when it changes."""

from __future__ import annotations

import sys

from _memview import Cache, read_memory, run

FIRST_TOTAL = read_memory()[0]


def decide(cache: Cache, total_mb: int, available_mb: int) -> int:
    if total_mb != FIRST_TOTAL:
        print(f"FATAL: total memory changed from {FIRST_TOTAL} MB to {total_mb} MB", flush=True)
        sys.exit(3)
    return total_mb // 4 if available_mb > total_mb // 10 else cache.mb


if __name__ == "__main__":
    run(decide)
