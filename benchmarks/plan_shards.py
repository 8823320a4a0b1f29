"""Wall time of a plan run as 3 shards at once (3 `dmh certify --plan --shard I/3` processes,
as 3 CI jobs would, each on its own embedded emulators) against the same cells run as one
unsharded shard, and the merge of each; prints both, their ratio, and whether the merged
verdicts agree. The plan: two reference apps (good, stale) × the Linux profile × three host
labels (Hyper-V 2016, 2019, 2022, which the emulator plays), one scenario each (-k) to keep
it short; with more cells or scenarios the ratio tends to the number of shards, bounded by
the CPU cores this machine has (printed). Run:

    .venv/bin/python benchmarks/plan_shards.py [--scenario start_below_demand]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = """\
profiles = ["linux"]
hosts = ["2016", "2019", "2022"]
pytest_args = ["-k", "{scenario}"]

[apps.good]
command = "cache_good.py"
expect = ["survive", "track", "grow", "release", "bounded"]

[apps.stale]
command = "cache_stale.py"
expect = ["survive", "track", "bounded"]
"""


def dmh(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def timed(*commands: tuple[str, ...], cwd: Path) -> float:
    """Run the commands at once; the wall time until the last one ends."""
    started = time.monotonic()
    running = [dmh(*c, cwd=cwd) for c in commands]
    for proc in running:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode not in (0, 1, 2):
            raise SystemExit(f"dmh failed ({proc.returncode}): {err[-2000:]}")
    return time.monotonic() - started


def verdicts(report: Path) -> dict[str, str]:
    data = json.loads((report / "summary.json").read_text("utf-8"))
    return {c["id"]: c["verdict"] for c in data["matrix"]["cells"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="start_below_demand", help="pytest -k expression")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dmh-plan-bench-") as tmp:
        work = Path(tmp)
        (work / "apps.toml").write_text(APPS.format(scenario=args.scenario), "utf-8")
        for shards in ("3", "1"):
            plan = dmh("plan", "apps.toml", "--shards", shards, "--out", f"plan{shards}.json",
                       cwd=work)  # fmt: skip
            assert plan.wait() == 0
        sharded = timed(
            *[("certify", "--plan", "plan3.json", "--shard", f"{i}/3", "-n", "0", "--out",
               f"shard-{i}") for i in (1, 2, 3)],
            cwd=work,
        )  # fmt: skip
        merge3 = timed(("report", "--merge", "shard-1", "shard-2", "shard-3", "--out", "merged3",
                        "--no-screenshot"), cwd=work)  # fmt: skip
        single = timed(
            ("certify", "--plan", "plan1.json", "--shard", "1/1", "-n", "0", "--out", "single"),
            cwd=work,
        )
        merge1 = timed(("report", "--merge", "single", "--out", "merged1", "--no-screenshot"),
                       cwd=work)  # fmt: skip
        same = verdicts(work / "merged3") == verdicts(work / "merged1")
        print(f"plan: 6 cells (2 apps x linux x 3 host labels), -k {args.scenario}; "
              f"{os.cpu_count()} CPU cores")  # fmt: skip
        print(f"  3 shards at once      {sharded:6.1f} s   + merge {merge3:4.1f} s")
        print(f"  1 shard (unsharded)   {single:6.1f} s   + merge {merge1:4.1f} s")
        print(f"  sharded / unsharded = {sharded / single:4.2f}x wall time "
              f"({single / sharded:.2f}x faster)")  # fmt: skip
        print(f"  merged verdicts equal: {same} {verdicts(work / 'merged3')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
