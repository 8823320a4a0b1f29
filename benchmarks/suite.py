"""Wall time of the certification suites on the embedded emulator with -n 1 and -n 2.

    python benchmarks/suite.py [-k EXPR]
    python benchmarks/suite.py --against ../base      # -n 2 here vs another checkout

Prints both wall times and their ratio (the -n 1 run is the baseline, measured in the same
process). With `--against DIR` (another checkout with its own `.venv`, e.g. a `git worktree`
of the previous release), the baseline is that checkout's suite with -n 2, run alternately
with this one's, and the ratio is this checkout's time over it. Each run is a real
`pytest suites` subprocess from its repository root.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(
    workers: int, extra: list[str], repo: Path = REPO, python: str = sys.executable
) -> tuple[float, int]:
    command = [
        python,
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
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    print(f"  -n {workers}: {elapsed:6.1f} s  ({last})", flush=True)
    return elapsed, result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", default=None, help="select scenarios (pytest -k)")
    parser.add_argument("--against", type=Path, help="a baseline checkout with its own .venv")
    parser.add_argument("--rounds", type=int, default=1, help="with --against: runs of each")
    args = parser.parse_args()
    extra = ["-k", args.k] if args.k else []
    print("certification suites on the embedded emulator (wall time)")
    if args.against is not None:
        return against(args.against.resolve(), extra, args.rounds)
    one, code1 = run(1, extra)
    two, code2 = run(2, extra)
    print(f"  ratio -n 2 / -n 1: {two / one:.2f}  (speed-up {one / two:.2f}x)")
    return code1 or code2


def against(base: Path, extra: list[str], rounds: int) -> int:
    python = str(base / ".venv" / "bin" / "python")
    ours: list[float] = []
    theirs: list[float] = []
    codes = 0
    for _ in range(rounds):  # alternately, so both see the same machine
        print(f"baseline {base}:")
        elapsed, code = run(2, extra, base, python)
        theirs.append(elapsed)
        print("this checkout:")
        mine, mine_code = run(2, extra)
        ours.append(mine)
        codes = codes or code or mine_code
    print(f"  ratio this / baseline (-n 2): {sum(ours) / sum(theirs):.2f}")
    return codes


if __name__ == "__main__":
    sys.exit(main())
