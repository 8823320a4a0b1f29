"""Reference app (stale): reads total and available memory once at start and never again."""

from __future__ import annotations

from _memview import Cache, read_memory, report, run

FIRST_TOTAL, FIRST_AVAILABLE = read_memory()


def decide(cache: Cache, total_mb: int, available_mb: int) -> int:
    return FIRST_TOTAL // 4


if __name__ == "__main__":
    import _memview

    # The bug under test: the cached view is what the app reports and acts on.
    _memview.read_memory = lambda: (FIRST_TOTAL, FIRST_AVAILABLE)
    report("startup_total_mb", FIRST_TOTAL)
    run(decide)
