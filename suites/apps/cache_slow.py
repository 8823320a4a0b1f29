"""Reference app (slow): sizes its cache like the good app, but re-reads memory only every
8 s and reports that cached view every tick; its view lags each change by up to 8 s, longer
than the 5 s the suites allow (fails "track")."""

from __future__ import annotations

import time

from _memview import read_memory, run
from cache_good import decide

REREAD_S = 8.0
_last = {"at": -REREAD_S, "view": (0, 0)}


def slow_read() -> tuple[int, int]:
    now = time.monotonic()
    if now - _last["at"] >= REREAD_S:
        _last["at"], _last["view"] = now, read_memory()
    return _last["view"]


if __name__ == "__main__":
    run(decide, read=slow_read)
