"""App views (`--dm-app-view`): what a value may say is refused with the rule, and each
built-in view reads what the real program, as Debian ships it, prints on this machine."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.appview import RECIPES, ViewPattern, parse_view
from harness.errors import SettingError
from tests.requires import needs

MB = 1024 * 1024


def test_a_recipe_takes_its_settings_as_words() -> None:
    view = parse_view("redis port=6380")
    assert view is not None
    assert view.command == "redis-cli -h 127.0.0.1 -p 6380 INFO memory"
    assert view.label == "redis port=6380" and view.means.startswith("total_mb")


def test_a_setting_the_recipe_does_not_have_is_refused() -> None:
    with pytest.raises(
        SettingError, match=r"'host' is no setting of the 'redis' view \(it has: port\)"
    ):
        parse_view("redis host=db")


def test_a_command_of_ones_own_may_use_only_pid() -> None:
    view = parse_view("my-cli --pid {pid} stats | awk '{print $2}'")
    assert view is not None and view.command.startswith("my-cli --pid {pid}")
    with pytest.raises(SettingError, match=r"only the placeholder \{pid\} \(found port\)"):
        parse_view("my-cli --port {port}")


def test_a_pattern_names_its_unit_once() -> None:
    with pytest.raises(SettingError, match="exactly one value group named for its unit"):
        ViewPattern(r"total: (?P<value>\d+) (?P<kb>\d+)")
    with pytest.raises(SettingError, match="is no regex"):
        ViewPattern(r"total: (\d+")
    with pytest.raises(SettingError, match="applies to a command of one's own"):
        parse_view("redis", [r"x (?P<mb>\d+)"])
    with pytest.raises(SettingError, match="needs --dm-app-view COMMAND"):
        parse_view("", [r"x (?P<mb>\d+)"])


def test_values_are_read_in_mb_whatever_the_unit() -> None:
    text = "MemTotal: 2097152 kB\nlimit 1073741824\npages 262144\n"
    assert ViewPattern(r"^MemTotal: (?P<kb>\d+) kB").find(text) == {"total_mb": 2048.0}
    assert ViewPattern(r"^limit (?P<bytes>\d+)", "limit_mb").find(text) == {"limit_mb": 1024.0}
    assert ViewPattern(r"^(?P<metric>pages) (?P<pages>\d+)").find(text) == {"pages": 1024.0}
    view = parse_view("cat stats.json")
    assert view is not None and view.parse('{"metric": "total_mb", "value": 512}\n') == {
        "total_mb": 512.0
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[int]:
    """A real program started on a free port of this machine: (argv with {port})."""
    port = _free_port()
    argv = [a.replace("{port}", str(port)) for a in request.param]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port
    finally:
        proc.kill()
        proc.wait()


def _run_view(text: str) -> dict[str, float]:
    view = parse_view(text)
    assert view is not None
    done = subprocess.run(view.command, shell=True, capture_output=True, text=True, timeout=60)
    return view.parse(done.stdout + done.stderr)


@needs("redis", missing=None if shutil.which("redis-server") else "apt-get install redis-server")
@pytest.mark.parametrize(
    "served", [["redis-server", "--port", "{port}", "--save", "", "--appendonly", "no"]],
    indirect=True,
)  # fmt: skip
def test_the_redis_view_reads_info_memory(served: int) -> None:
    values = _run_view(f"redis port={served}")
    assert values["total_mb"] == pytest.approx(psutil.virtual_memory().total / MB, abs=1)
    assert values["maxmemory_mb"] == 0 and values["used_mb"] > 0


@needs("memcached", missing=None if shutil.which("memcached") else "apt-get install memcached")
@pytest.mark.parametrize(
    "served", [["memcached", "-u", "root", "-m", "64", "-p", "{port}", "-U", "0"]], indirect=True
)
def test_the_memcached_view_reads_its_limit(served: int) -> None:
    assert parse_view("memcached") is not None
    values = _run_view(f"memcached port={served}")
    assert values == {"limit_mb": 64.0, "used_mb": 0.0}


@needs("jcmd", missing=None if shutil.which("jcmd") else "apt-get install openjdk-17-jdk-headless")
def test_the_jvm_view_reads_what_hotspot_reports(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "suites" / "catalog" / "Service.java"
    proc = subprocess.Popen(
        ["java", "-XX:MaxRAMPercentage=50", str(source), "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("listening on ")
        view = RECIPES["jvm"]
        command = view.command.replace("{pid}", str(proc.pid))
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
        values = parse_view("jvm").parse(done.stdout)  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()
    assert values["total_mb"] == pytest.approx(psutil.virtual_memory().total / MB, abs=1)
    assert 0 < values["free_mb"] < values["total_mb"] and values["heap_committed_mb"] > 0


def test_the_guest_side_runner_marks_each_run_and_fills_pid(tmp_path: Path) -> None:
    """The runner the guest starts (suites/apps/_repeat.py), as a real process: each run's
    output, then the mark with its exit code; `{pid}` is the app's process."""
    runner = Path(__file__).resolve().parents[2] / "suites" / "apps" / "_repeat.py"
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    view = subprocess.Popen(
        [sys.executable, str(runner), "0.2", str(app.pid), "echo pid={pid}; exit 3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stdout is not None
        lines = [view.stdout.readline() for _ in range(4)]
    finally:
        for proc in (view, app):
            proc.kill()
            proc.wait()
    mark = "--- dmh run ended, exit 3\n"
    assert lines == [f"pid={app.pid}\n", mark, f"pid={app.pid}\n", mark]
