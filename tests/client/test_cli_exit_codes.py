"""`dmh`'s exit codes 1 and 3, as a CI sees them: real `dmh` processes (README, exit codes).

3: a command other than certify could not do its job (a host that does not answer: a port
nothing listens on; no records to report on). 1 (the app failed a scenario): `dmh certify`
with the hog, in tests/suites/test_meta.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300


def dmh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
    env["DMH_HOST_PASSWORD"] = "not-used-nothing-answers"  # a password is not what fails
    return env


def dmh(*args: str, cwd: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=dmh_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_doctor_sweep_and_report_that_cannot_do_their_job_exit_3(tmp_path: Path) -> None:
    url = f"psrp://qa@127.0.0.1:{closed_port()}?auth=basic&ssl=false"
    # Both retry (3 times, backing off) before giving up: run side by side.
    running = {
        "doctor": dmh("doctor", "--dm-host", url),
        "sweep": dmh("sweep", "--dm-host", url),
        "report": dmh("report", "--records", str(tmp_path / "none"), "--out", str(tmp_path)),
    }
    done = {name: (proc.wait(TIMEOUT), *proc.communicate()) for name, proc in running.items()}
    for name, (code, out, err) in done.items():
        assert code == 3, f"dmh {name} exited {code}: {out[-2000:]}{err[-2000:]}"
    assert "cannot reach the host" in done["doctor"][2], done["doctor"][2]
    assert "cannot reach the host" in done["sweep"][2], done["sweep"][2]
    assert "no result records in" in done["report"][2], done["report"][2]
    assert "not-used-nothing-answers" not in "".join(out + err for _, out, err in done.values())
