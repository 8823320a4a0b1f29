"""`dmh emulator serve` as a real subprocess: what it prints, what a pypsrp client reaches
through it, how it refuses a remote bind, and that SIGINT stops it cleanly, guests included.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

import harness
from harness.deadline import wait_until

SCRIPTS = Path(harness.__file__).parent / "hyperv" / "scripts"
REPO = Path(harness.__file__).resolve().parents[1]
PASSWORD = "cli-serve-test-password"
GUEST_PASSWORD = "cli-serve-guest-password"
URL = re.compile(r"^(https?)://127\.0\.0\.1:(\d+)/wsman$")
STARTUP_TIMEOUT = 30.0  # a cold interpreter on 2 busy cores
EXIT_TIMEOUT = 15.0


class Served:
    """`dmh emulator serve` in a subprocess; stdout and stderr read on threads, so reading
    a line never blocks past its deadline and nothing the process writes is lost."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "harness.cli", "emulator", "serve", *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, None), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            if lines is None:
                self.stderr.append(line)
            else:
                self.stdout.append(line.rstrip("\n"))
                lines.put(line.rstrip("\n"))
        if lines is not None:
            lines.put(None)

    def line(self, timeout: float = STARTUP_TIMEOUT) -> str | None:
        """The next stdout line, None at end of output; AssertionError at the deadline."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output line within {timeout}s; stderr: {''.join(self.stderr)}"
            ) from None

    def startup(self) -> list[str]:
        """Every line printed at startup; the templates line comes last."""
        lines: list[str] = []
        while True:
            line = self.line()
            assert line is not None, f"serve exited early: {lines}, {''.join(self.stderr)}"
            lines.append(line)
            if line.startswith("templates: "):
                return lines

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve still running after {timeout}s") from None
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def serve_factory() -> Iterator[Any]:
    started: list[Served] = []

    def serve(*args: str, **env_changes: str | None) -> Served:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
        for key, value in env_changes.items():
            if value is not None:
                env[key] = value
        served = Served(*args, env=env)
        started.append(served)
        return served

    yield serve
    for served in started:
        served.close()


@pytest.fixture(autouse=True)
def _trust_only_the_emulator_cert(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests may let REQUESTS_CA_BUNDLE override an explicit CA path; keep it out.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def connect(url: str, password: str, cert: str | None = None) -> WSMan:
    match = URL.match(url)
    assert match, f"not an endpoint URL: {url!r}"
    tls = match[1] == "https"
    return WSMan(
        "127.0.0.1",
        port=int(match[2]),
        path="wsman",
        ssl=tls,
        auth="basic",
        encryption="auto" if tls else "never",
        username="dmh",
        password=password,
        cert_validation=cert if tls else False,  # type: ignore[arg-type]  # or a CA path
    )


def invoke(pool: RunspacePool, command: str, *, script: bool = False, **params: Any) -> Any:
    ps = PowerShell(pool)
    if script:
        ps.add_script((SCRIPTS / f"{command}.ps1").read_text("utf-8"))
    else:
        ps.add_cmdlet(command)
    for name, value in params.items():
        ps.add_parameter(name, value)
    output = ps.invoke()
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    return output


def wait_for(condition: Any, timeout: float, what: str) -> None:
    wait_until(condition, timeout, what=what)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_serve_with_password_env_then_sigint_stops_everything(serve_factory: Any) -> None:
    served: Served = serve_factory(
        "--port", "0", DMH_EMULATOR_PASSWORD=PASSWORD, DMH_GUEST_PASSWORD=GUEST_PASSWORD
    )
    url = served.line()
    assert url is not None and URL.match(url) and url.startswith("http://"), url
    lines = served.startup()
    assert "username: dmh" in lines
    assert "guest username: guest" in lines
    # Passwords the user chose are never echoed.
    assert not any(PASSWORD in line or GUEST_PASSWORD in line for line in [url, *lines])
    assert not any(line.startswith(("password:", "guest password:")) for line in lines)

    with connect(url, PASSWORD) as conn, RunspacePool(conn) as pool:
        [vmhost] = invoke(pool, "Get-VMHost")
        assert vmhost.types[0] == "Microsoft.HyperV.PowerShell.VMHost"
        invoke(pool, "New-VM", Name="cli-guest", VHDPath="C:\\DMH\\Templates\\windows.vhdx")
        invoke(pool, "Start-VM", Name="cli-guest")

        def running() -> bool:
            [vm] = invoke(pool, "Get-VM", Name="cli-guest")
            # Running at once after Start-VM; the guest is up once its heartbeat is OK
            return str(vm.adapted_properties["Heartbeat"]).startswith("Ok")

        wait_for(running, 10, "cli-guest's guest to be up")
        # A real process in the guest, started as the harness does (PowerShell Direct).
        [started] = invoke(
            pool,
            "vm-invoke",
            script=True,
            VMName="cli-guest",
            GuestScript=(SCRIPTS / "guest-ops.ps1").read_text("utf-8"),
            Operation="StartProcess",
            Arguments={
                "FilePath": sys.executable,
                "ArgumentList": ["-c", "import time; time.sleep(120)"],
                "WorkingDirectory": "C:\\ProgramData\\dm-harness",  # guest-ops: absolute
            },
            GuestUser="guest",
            GuestPassword=GUEST_PASSWORD,
        )
        guest_pid = started.extended_properties["ProcessId"]

    server = psutil.Process(served.proc.pid)
    descendants = server.children(recursive=True)
    assert guest_pid in {p.pid for p in descendants}

    served.proc.send_signal(signal.SIGINT)
    assert served.wait() == 0, "".join(served.stderr)
    assert served.stdout[-1] == "emulator stopped"
    assert "Traceback" not in "".join(served.stderr)
    wait_for(lambda: all(gone(p.pid) for p in descendants), 10, "the guest processes to end")


def test_serve_tls_prints_a_generated_password_once(serve_factory: Any) -> None:
    served: Served = serve_factory("--port", "0", "--tls")
    url = served.line()
    assert url is not None and url.startswith("https://") and URL.match(url), url
    lines = served.startup()
    passwords = [line for line in lines if line.startswith("password: ")]
    assert len(passwords) == 1, lines
    password = passwords[0].split()[1]
    assert passwords[0].endswith("(set DMH_EMULATOR_PASSWORD to choose one)")
    [cert_line] = [line for line in lines if line.startswith("certificate: ")]
    cert = cert_line.removeprefix("certificate: ")
    assert Path(cert).is_file()

    with connect(url, password, cert) as conn, RunspacePool(conn) as pool:
        [vmhost] = invoke(pool, "Get-VMHost")
        assert vmhost.adapted_properties["MemoryCapacity"] == 64 * 1024**3

    served.proc.send_signal(signal.SIGINT)
    assert served.wait() == 0, "".join(served.stderr)
    assert served.stdout[-1] == "emulator stopped"
    assert sum(password in line for line in served.stdout) == 1  # shown once, at startup
    assert not Path(cert).exists()  # the generated certificate goes with the server


def test_serve_refuses_a_non_loopback_address(serve_factory: Any) -> None:
    served: Served = serve_factory(
        "--host", "0.0.0.0", "--port", "0", DMH_EMULATOR_PASSWORD=PASSWORD
    )
    code = served.wait(STARTUP_TIMEOUT)
    stderr = "".join(served.stderr)
    assert code == 4, stderr  # a usage error
    assert served.stdout == []  # no endpoint was announced
    assert "refusing to bind the emulator to '0.0.0.0'" in stderr
    assert "not a loopback address" in stderr and "--allow-remote" in stderr
    assert "Traceback" not in stderr
