"""Load generator for the levers: holds N MB of touched memory until it is stopped.

It grows in steps, as a real workload does, so the guest's Dynamic Memory can react: the
emulated guest's memory is enforced, and a 1 GB jump in one step would be OOM-killed in a real
1 GB Linux guest before the host could hot-add.
"""

from __future__ import annotations

import sys
import time

STEP_MB = 16
STEP_PAUSE = 0.025  # ≈ 640 MB/s

if __name__ == "__main__":
    size_mb = int(sys.argv[1])
    blocks: list[bytearray] = []
    held = 0
    while held < size_mb:
        step = min(STEP_MB, size_mb - held)
        block = bytearray(step << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        blocks.append(block)
        held += step
        time.sleep(STEP_PAUSE)
    print(f"holding {size_mb} MB", flush=True)
    while True:
        time.sleep(3600)
