"""Runs an app view in the guest (`--dm-app-view`): `python _appview.py EVERY PID COMMAND` runs
COMMAND through the guest's shell every EVERY seconds until stopped, `{pid}` in it replaced by
the app's process id, and prints after each run's output one line the sampler splits runs on
(harness/appview.py MARK). Standard library only: it runs with the guest's Python, like the
reference apps."""

from __future__ import annotations

import subprocess
import sys
import time

MARK = "--- dmh app view run, exit "


def program(pid: int) -> int:
    """The app's own process: a Linux guest starts a program under a wrapper shell whose pid
    it reports (harness/hyperv/scripts/linux/start-process.sh), the program being that shell's
    only child; elsewhere (no /proc) the pid is the program's."""
    while True:
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
                name = comm.read().strip()
            with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as found:
                children = found.read().split()
        except OSError:
            return pid
        if name not in ("sh", "dash", "bash") or len(children) != 1:
            return pid
        pid = int(children[0])


def main() -> None:
    every, pid, command = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    while True:
        started = time.monotonic()
        try:
            done = subprocess.run(
                command.replace("{pid}", str(program(pid))), shell=True, capture_output=True,
                text=True, errors="replace", timeout=max(30.0, 5 * every), check=False,
            )  # fmt: skip
            output, code = done.stdout + done.stderr, str(done.returncode)
        except subprocess.TimeoutExpired:
            output, code = "", "timeout"
        if output and not output.endswith("\n"):
            output += "\n"
        sys.stdout.write(f"{output}{MARK}{code}\n")
        sys.stdout.flush()
        time.sleep(max(0.0, every - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
