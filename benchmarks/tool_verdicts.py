"""The management-tool verdict table: each reference and test tool through `dmh certify
--tool`, on the default options and with each `--dm-emulator-version` asked for, one run at a
time; prints expected vs actual verdict and the first reason as a Markdown table.

    .venv/bin/python benchmarks/tool_verdicts.py                      # default options
    .venv/bin/python benchmarks/tool_verdicts.py 2008R2SP1 2016 2019  # and these versions
    .venv/bin/python benchmarks/tool_verdicts.py --tools wmi_tool.py,stale_tool.py 2012
    .venv/bin/python benchmarks/tool_verdicts.py --no-default 2016                # only 2016
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DMH = str(Path(sys.executable).parent / "dmh")
# tool → (expected verdict, the first line the first reason must contain)
EXPECTED = {
    "wmi_tool.py": ("certified", ""),
    "cmdlet_tool.py": ("certified", ""),
    "counters_tool.py": ("certified", ""),
    "stale_tool.py": ("not certified", "reports the startup memory as the VM's memory"),
    "once_tool.py": ("not certified", "once and never again"),
    "bytes_tool.py": ("not certified", "reports demand_mb in the wrong unit"),
    "sentinel_tool.py": ("not certified", "reports WMI's no-data value 2147483647"),
    "host_tool.py": ("not certified", "reports the host itself"),
    "chatty_tool.py": ("not certified", "prints a line outside the contract"),
    "sticky_tool.py": ("not certified", "keeps reporting a removed VM"),
    "related_tool.py": ("not certified", "does not track maximum_mb"),
    "strict_counters_tool.py": ("certified", ""),  # on 2022; see expected()
}


def expected(tool: str, version: str | None) -> tuple[str, str]:
    """The harness drives hosts from 2016 on (README "Lab hosts"; 2012 R2 has no PowerShell
    Direct): on an emulator playing an older one every run is inconclusive. The strict
    counters tool needs "Guest Available Memory", which exists from 2022."""
    if version in ("2008R2SP1", "2012", "2012R2"):
        return "inconclusive", "UnsupportedHostError"
    if tool == "strict_counters_tool.py" and version not in (None, "2022"):
        return "not certified", "never reported assigned_mb"
    return EXPECTED[tool]


def run(tool: str, version: str | None) -> tuple[str, str, float]:
    """(verdict, first reason, seconds) of one `dmh certify --tool` run."""
    with tempfile.TemporaryDirectory() as out:
        argv = [DMH, "certify", "--tool", f"python suites/tools/{tool}", "--out", out]
        if version:
            argv += ["--", f"--dm-emulator-version={version}"]
        started = time.monotonic()
        subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - started
        summary = Path(out) / "summary.json"
        if not summary.is_file():
            return "no summary", "", took
        verdict = json.loads(summary.read_text(encoding="utf-8"))["verdict"]
        reasons = verdict["reasons"]
        return str(verdict["status"]), str(reasons[0]) if reasons else "", took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help="--dm-emulator-version values to add")
    parser.add_argument("--tools", default=",".join(EXPECTED), help="comma-separated tools")
    parser.add_argument("--no-default", action="store_true", help="only the versions given")
    args = parser.parse_args()
    print("| tool | emulator | expected | actual | first reason | right | s |")
    print("|---|---|---|---|---|---|---|")
    wrong = 0
    for version in ([] if args.no_default else [None]) + args.versions:
        for tool in args.tools.split(","):
            want, says = expected(tool, version)
            status, reason, took = run(tool, version)
            right = status == want and says in reason
            wrong += not right
            shown = reason.replace("|", "\\|")[:150]
            print(
                f"| {tool} | {version or 'default (2022)'} | {want} | {status} | {shown} | "
                f"{'yes' if right else 'NO'} | {took:.0f} |",
                flush=True,
            )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
