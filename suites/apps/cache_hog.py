"""Reference app (hog): grows its cache to a quarter of total memory and never releases it."""

from __future__ import annotations

from _memview import Cache, run


def decide(cache: Cache, total_mb: int, available_mb: int) -> int:
    return max(cache.mb, total_mb // 4)


if __name__ == "__main__":
    run(decide)
