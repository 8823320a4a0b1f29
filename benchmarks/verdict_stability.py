"""Verdict stability: the corpus of apps the project did not tune to, certified again and
again on a loaded machine; prints a confusion table (expected vs actual verdict per app)
with the first message of every wrong verdict.

A verdict that flips between runs of the same subject is a defect of the harness (issue
#21). The load is a bounded CPU burner (2 × cores busy loops, ended by pid when the benchmark
ends, however it ends). Runs in the background; one progress line per certification run.

    python benchmarks/verdict_stability.py                      # 5 rounds, process backend
    python benchmarks/verdict_stability.py --rounds 1 --backend qemu --apps avail,stale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
VERDICTS = {0: "CERTIFIED", 1: "NOT CERTIFIED", 2: "INCONCLUSIVE"}
ALL = "survive,track,grow,release,bounded"


@dataclass(frozen=True)
class Subject:
    name: str
    command: str
    expect: str  # what it is certified on (--dm-expect)
    verdict: str  # what a right harness says
    needs: str = ""  # a program on PATH it needs


def corpus(python: str) -> list[Subject]:
    """Correct apps and broken twins, each with the behaviours it is certified on."""
    return [
        Subject("avail", "python3 avail_cache.py", ALL, "CERTIFIED"),
        Subject("avail-quiet", "python3 avail_cache.py --quiet", ALL, "CERTIFIED"),
        Subject("total", "python3 total_cache.py", ALL, "CERTIFIED"),
        Subject("psutil", f"{python} psutil_cache.py", ALL, "CERTIFIED"),
        Subject("cgroup", "python3 cgroup_cache.py", "survive,grow,bounded", "CERTIFIED"),
        Subject("node", "node node_cache.js", "survive,track,bounded", "CERTIFIED", "node"),
        Subject(
            "jvm",
            "java -XX:MaxRAMPercentage=50 HeapCache.java",
            "survive,bounded",
            "CERTIFIED",
            "java",
        ),
        Subject("stale", "python3 avail_cache.py --stale", ALL, "NOT CERTIFIED"),
        Subject("hog", "python3 avail_cache.py --hog", ALL, "NOT CERTIFIED"),
        Subject("exit", "python3 avail_cache.py --exit-on-change", ALL, "NOT CERTIFIED"),
    ]


def burn(count: int) -> list[subprocess.Popen[bytes]]:
    loop = "while True: pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def certify(subject: Subject, backend: str, out: Path) -> tuple[str, str, float]:
    """(verdict, first message of a failed or broken test, seconds) of one `dmh certify`."""
    env = dict(os.environ, DMH_EXPECT=subject.expect, DMH_GUEST_BACKEND=backend)
    extra = ["--", "--dm-guest-os", "linux"] if backend == "qemu" else []
    dmh = str(Path(sys.executable).with_name("dmh"))
    started = time.monotonic()
    with subprocess.Popen(
        [dmh, "certify", "--app", subject.command, "--out", str(out), *extra],
        cwd=CORPUS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as run:  # fmt: skip
        try:
            output, _ = run.communicate()
        except BaseException:
            # A run ended early: `dmh certify` passes SIGTERM on to pytest and ends its
            # process group after its grace period, so no worker is left behind.
            run.terminate()
            run.wait()
            raise
    seconds = time.monotonic() - started
    verdict = VERDICTS.get(run.returncode, f"exit {run.returncode}")
    return verdict, first_message(out, output), seconds


def first_message(out: Path, output: str) -> str:
    for summary in sorted(out.glob("runs/*/summary.json")):
        data = json.loads(summary.read_text())
        for test in data.get("tests", []):
            if test.get("outcome") in ("failed", "broken"):
                return f"{test['nodeid'].split('::')[-1]}: {test.get('message', '')}"[:300]
        reasons = data.get("verdict", {}).get("reasons", [])
        if reasons:
            return str(reasons[0])[:300]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1][:300] if tail else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=("process", "qemu"), default="process")
    parser.add_argument("--apps", default="", help="comma-separated subset of the corpus")
    parser.add_argument("--burners", type=int, default=2 * (os.cpu_count() or 1))
    args = parser.parse_args()
    subjects = corpus(sys.executable)
    if args.apps:
        wanted = set(args.apps.split(","))
        subjects = [s for s in subjects if s.name in wanted]
    missing = [s.name for s in subjects if s.needs and shutil.which(s.needs) is None]
    if missing:
        print(f"missing runtimes for {missing}: install them (see .ci/run)", file=sys.stderr)
        return 3
    results: dict[str, list[tuple[str, str]]] = {s.name: [] for s in subjects}
    loads: list[float] = []
    # A SIGTERM (`kill`, a CI timeout) ends the run through `finally`, burners and all.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    burners = burn(args.burners)
    try:
        with tempfile.TemporaryDirectory(prefix="dmh-stability-") as scratch:
            for round_ in range(1, args.rounds + 1):
                for subject in subjects:
                    out = Path(scratch) / f"{subject.name}-{round_}"
                    verdict, message, seconds = certify(subject, args.backend, out)
                    loads.append(os.getloadavg()[0])
                    results[subject.name].append((verdict, message))
                    mark = "ok" if verdict == subject.verdict else "WRONG"
                    print(
                        f"round {round_}/{args.rounds} {subject.name}: {verdict} ({mark}, "
                        f"{seconds:.0f} s, load {loads[-1]:.1f})",
                        flush=True,
                    )
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    return report(subjects, results, loads, args.backend)


def report(
    subjects: list[Subject],
    results: dict[str, list[tuple[str, str]]],
    loads: list[float],
    backend: str,
) -> int:
    print(f"\nverdict stability, {backend} backend, load average {min(loads):.1f}–{max(loads):.1f}")
    print(f"{'app':<12} {'expected':<14} {'certified':>9} {'not cert.':>9} {'inconcl.':>9}")
    wrong = 0
    for s in subjects:
        counts = Counter(v for v, _ in results[s.name])
        print(
            f"{s.name:<12} {s.verdict:<14} {counts['CERTIFIED']:>9} "
            f"{counts['NOT CERTIFIED']:>9} {counts['INCONCLUSIVE']:>9}"
        )
        for verdict, message in results[s.name]:
            if verdict != s.verdict:
                wrong += 1
                print(f"    wrong: {verdict}: {message}")
    print(f"{wrong} wrong verdicts of {sum(len(r) for r in results.values())}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
