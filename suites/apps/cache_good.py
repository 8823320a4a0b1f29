"""Reference app (good): sizes its cache from the memory it sees, and re-reads it every tick.

Target: a quarter of total memory, but always leaving at least a fifth of total available;
under pressure (available below that) it gives memory back at once.
"""

from __future__ import annotations

from _memview import Cache, run


def decide(cache: Cache, total_mb: int, available_mb: int) -> int:
    want = total_mb // 4
    room = available_mb - total_mb // 5
    return min(want, cache.mb + room)


if __name__ == "__main__":
    run(decide)
