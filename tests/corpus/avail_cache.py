"""A cache sized to 25 % of MemAvailable, re-read every 0.5 s — written the way a service
does it, not tuned to the harness: it reads /proc/meminfo itself, resizes by building the new
buffer before dropping the old one, and prints its view of MemTotal as a JSON line.

Broken twins, one defect each: --stale (reads memory once, at start), --hog (grows, never
gives back), --exit-on-change (treats a new MemTotal as fatal); --quiet prints no metric.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def meminfo() -> dict[str, int]:
    with open("/proc/meminfo", encoding="ascii") as f:
        return {k: int(v.split()[0]) // 1024 for k, v in (line.split(":", 1) for line in f)}


def touched(mb: int) -> bytearray:
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--stale", "--hog", "--exit-on-change", "--quiet"):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args()
    first = meminfo()
    cache = bytearray()
    while True:
        mem = first if args.stale else meminfo()
        if args.exit_on_change and mem["MemTotal"] != first["MemTotal"]:
            print(f"FATAL: physical memory changed from {first['MemTotal']} MB", file=sys.stderr)
            return 1
        want = mem["MemAvailable"] // 4
        if args.hog:
            want = max(want, len(cache) >> 20)
        if abs(want - (len(cache) >> 20)) >= 8:
            cache = touched(want)  # the new cache is built before the old one is freed
        if not args.quiet:
            print(json.dumps({"metric": "total_mb", "value": mem["MemTotal"]}), flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
