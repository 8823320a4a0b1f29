"""Load generator for the levers: holds N MB of touched memory until it is stopped."""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":
    size_mb = int(sys.argv[1])
    block = bytearray(size_mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print(f"holding {size_mb} MB", flush=True)
    while True:
        time.sleep(3600)
