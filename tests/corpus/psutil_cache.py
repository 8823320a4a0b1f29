"""An LRU-ish cache sized from psutil's available memory (a quarter of it), checked every
0.7 s; grows and shrinks a list of 16 MB entries. Reports psutil's total."""

import json
import time

import psutil

ENTRY = 16 * 1024 * 1024
entries = []
while True:
    vm = psutil.virtual_memory()
    budget = (vm.available + len(entries) * ENTRY) // 4 // ENTRY
    while len(entries) > budget:
        entries.pop(0)
    while len(entries) < budget:
        entries.append(bytearray(b"\x02") * ENTRY)
    print(json.dumps({"metric": "total_mb", "value": vm.total // 2**20}), flush=True)
    time.sleep(0.7)
