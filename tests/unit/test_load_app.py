"""The levers' load (suites/apps/load.py), as a real process: where the guest has less than a
step plus its reserve available it waits for the host instead of outgrowing the guest (the
realistic balancer acts once a second; the guest's OOM killer ended the load, issue #21), and
goes on as soon as memory comes."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[2] / "suites" / "apps" / "load.py"


def _meminfo(path: Path, available_mb: int) -> None:
    path.write_text(f"MemTotal: 4194304 kB\nMemAvailable: {available_mb * 1024} kB\n")


def test_the_load_waits_for_room_then_goes_on(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    _meminfo(meminfo, 40)  # less than one 16 MB step plus the 64 MB reserve
    env = {"DMH_GUEST_MEMINFO": str(meminfo), "PATH": "/usr/bin:/bin"}
    load = subprocess.Popen(
        [sys.executable, str(LOAD), "32"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert load.stdout is not None
        # Each of its two steps waits up to 2 s for room: after 1 s it has said nothing.
        said, _, _ = select.select([load.stdout], [], [], 1.0)
        assert not said and load.poll() is None
        _meminfo(meminfo, 1000)  # the host hot-added
        assert load.stdout.readline() == "holding 32 MB\n"
    finally:
        load.kill()
        load.wait()


def test_a_figure_that_lags_counts_what_the_load_took_since_it_changed(tmp_path: Path) -> None:
    # 200 MB available and never refreshed: a live kernel's figure would have fallen with
    # each step; the load counts its own steps against it and stops at about 200 - 64 MB.
    meminfo = tmp_path / "meminfo"
    _meminfo(meminfo, 200)
    env = {"DMH_GUEST_MEMINFO": str(meminfo), "PATH": "/usr/bin:/bin"}
    load = subprocess.Popen(
        [sys.executable, str(LOAD), "400"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert load.stdout is not None
        said, _, _ = select.select([load.stdout], [], [], 1.5)
        assert not said and load.poll() is None  # 400 MB at 640 MB/s would be done by now
        _meminfo(meminfo, 2000)  # the figure moves: the host hot-added
        assert load.stdout.readline() == "holding 400 MB\n"
    finally:
        load.kill()
        load.wait()
