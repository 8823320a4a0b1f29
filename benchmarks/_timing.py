"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def stats(samples: list[float]) -> tuple[float, float]:
    """(median, p95) of samples in seconds, as milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def time_calls(action: Callable[[], object], iterations: int, warmup: int = 10) -> list[float]:
    """Seconds taken by each of `iterations` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples
