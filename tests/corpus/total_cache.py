"""A cache of an eighth of physical memory, in 32 MB slabs, re-read every second; under
memory pressure (less than a tenth available) it halves itself. Reports MemTotal."""

import json
import time


def meminfo():
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    return fields


slabs = []
while True:
    info = meminfo()
    total, available = info["MemTotal"], info["MemAvailable"]
    target = total // 8 // (32 << 20)
    if available < total // 10:
        target = len(slabs) // 2
    while len(slabs) < target:
        slabs.append(b"\x01" * (32 << 20))
    del slabs[target:]
    print(json.dumps({"metric": "total_mb", "value": total >> 20}), flush=True)
    time.sleep(1)
