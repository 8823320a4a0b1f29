"""Reference app (good): sizes its cache from the memory it sees, and re-reads it every tick.

Target: a quarter of total memory, but always leaving a tenth of total available (less than
the 20% buffer Dynamic Memory keeps free by default, so the cache can grow into it);
under pressure (available below that) it gives memory back at once.
"""

from __future__ import annotations

from _memview import Cache, run


def decide(cache: Cache, total_mb: int, available_mb: int) -> int:
    want = total_mb // 4
    room = available_mb - total_mb // 10
    return min(want, cache.mb + room)


if __name__ == "__main__":
    run(decide)
