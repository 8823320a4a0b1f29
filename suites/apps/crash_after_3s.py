"""Reference app (crashes): the good app's cache for 3 s, then an unhandled error (exit code
1, a traceback on stderr). It must fail at once, its exit code and error in the first line."""

from __future__ import annotations

import time

from _memview import run
from cache_good import decide

STARTED = time.monotonic()


def crashing_decide(cache, total_mb: int, available_mb: int) -> int:
    if time.monotonic() - STARTED >= 3.0:
        raise RuntimeError("simulated crash 3 s after start")
    return decide(cache, total_mb, available_mb)


if __name__ == "__main__":
    run(crashing_decide)
