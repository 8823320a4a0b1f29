"""A cache sized from its cgroup's memory limit (an eighth of it), as containerised
software does; it reports the limit, not the machine's total."""

import json
import os
import time

PATHS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def limit():
    for path in PATHS:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text != "max":
                return int(text)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


chunks = []
while True:
    want = min(limit(), os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 8
    while sum(map(len, chunks)) + (8 << 20) <= want:
        chunks.append(bytearray(os.urandom(1)) * (8 << 20))
    while chunks and sum(map(len, chunks)) > want:
        chunks.pop()
    print(json.dumps({"metric": "limit_mb", "value": limit() >> 20}), flush=True)
    time.sleep(1)
