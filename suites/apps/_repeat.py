"""Runs an app's view (`--dm-app-view`) or load (`--dm-app-load`) in the guest:
`python _repeat.py EVERY PID COMMAND [TIMEOUT [DIRECTORY]]` runs COMMAND through the guest's
shell, in DIRECTORY (made if missing; default: where the runner runs), every EVERY seconds
(or at once after a longer run) until stopped, `{pid}` in it replaced by the app's process
id, and prints after each run's output one line the harness splits runs on
(harness/appview.py MARK) with the run's exit code: a number, negative when a signal ended
it, or `timeout` when it ran past TIMEOUT seconds (default: 5 × EVERY, at least 30) and was
killed. Standard library only: it runs with the guest's Python, like the reference apps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

MARK = "--- dmh run ended, exit "


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


def run(command: str, timeout: float, directory: str | None) -> tuple[str, str]:
    """One run: its output and exit code. It runs in a session of its own, so a run past its
    timeout, or the runner being stopped, ends everything the command started."""
    proc = subprocess.Popen(
        command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True, cwd=directory,
    )  # fmt: skip

    def kill() -> None:
        with contextlib.suppress(OSError):
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)
            else:  # a Windows guest: no sessions
                proc.kill()

    def end(*_: object) -> None:
        kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, end)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return output, str(proc.returncode)
    except subprocess.TimeoutExpired:
        kill()
        output, _ = proc.communicate()
        return output, "timeout"


def main() -> None:
    every, pid, command = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else max(30.0, 5 * every)
    directory = sys.argv[5] if len(sys.argv) > 5 else None
    if directory:
        os.makedirs(directory, exist_ok=True)
    while True:
        started = time.monotonic()
        output, code = run(command.replace("{pid}", str(program(pid))), timeout, directory)
        if output and not output.endswith("\n"):
            output += "\n"
        sys.stdout.write(f"{output}{MARK}{code}\n")
        sys.stdout.flush()
        time.sleep(max(0.0, every - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
