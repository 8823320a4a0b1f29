"""Wall time of the certification suites on the embedded emulator with -n 1 and -n 2.

    python benchmarks/suite.py [-k EXPR]

Prints both wall times and their ratio (the -n 1 run is the baseline, measured in the same
process). Each run is a real `pytest suites` subprocess from the repository root.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(workers: int, extra: list[str]) -> tuple[float, int]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(workers),
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    print(f"  -n {workers}: {elapsed:6.1f} s  ({last})", flush=True)
    return elapsed, result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", default=None, help="select scenarios (pytest -k)")
    args = parser.parse_args()
    extra = ["-k", args.k] if args.k else []
    print("certification suites on the embedded emulator (wall time)")
    one, code1 = run(1, extra)
    two, code2 = run(2, extra)
    print(f"  ratio -n 2 / -n 1: {two / one:.2f}  (speed-up {one / two:.2f}x)")
    return code1 or code2


if __name__ == "__main__":
    sys.exit(main())
