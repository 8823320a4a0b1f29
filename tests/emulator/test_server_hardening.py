"""The emulator's endpoint under abuse, over real sockets: failed logins slow down per address,
connections are served by a bounded pool, a request in an unknown encoding gets a fault, the
generated TLS key never outlives its loading, and `dmh emulator serve` refuses bad ports."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from harness.emulator import wsman
from harness.emulator.connections import AuthThrottle
from harness.emulator.psrp import Command, PipelineOutput
from harness.emulator.server import EmulatorServer

USER = "dmh"
PASSWORD = "hardening-test-password"
REPO = Path(__file__).resolve().parents[2]


class EchoHandler:
    """Answers every pipeline with the first command's name."""

    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        out.write(commands[0].name)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.02)
    return condition()


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


def post(server: EmulatorServer, password: str, body: bytes = b"<x/>") -> requests.Response:
    return requests.post(
        server.url,
        data=body,
        headers={"Authorization": basic(password), "Content-Type": "application/soap+xml"},
        timeout=30,
    )


def echo(server: EmulatorServer) -> str:
    conn = WSMan(
        "127.0.0.1",
        port=server.port,
        path="wsman",
        ssl=False,
        auth="basic",
        encryption="never",
        username=USER,
        password=PASSWORD,
    )
    with conn, RunspacePool(conn) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Thing")
        [answer] = ps.invoke()
        return str(answer)


@pytest.fixture
def make_server() -> Iterator[Callable[..., EmulatorServer]]:
    started: list[EmulatorServer] = []

    def make(**kwargs: Any) -> EmulatorServer:
        server = EmulatorServer(EchoHandler(), username=USER, password=PASSWORD, **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# -- failed logins ---------------------------------------------------------------------------


def test_throttle_doubles_per_failure_up_to_a_cap_and_starts_over() -> None:
    now = [0.0]
    throttle = AuthThrottle(base=0.25, cap=2.0, forget=60.0, clock=lambda: now[0])
    assert [throttle.failed("10.0.0.1") for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert throttle.delay_for("10.0.0.2") == 0.25  # per address
    throttle.succeeded("10.0.0.1")
    assert throttle.failed("10.0.0.1") == 0.25
    throttle.failed("10.0.0.1")
    now[0] += 61.0  # a minute without failures: forgotten
    assert throttle.failed("10.0.0.1") == 0.25


def test_failed_logins_are_answered_later_and_later(
    make_server: Callable[..., EmulatorServer],
) -> None:
    server = make_server(throttle=AuthThrottle(base=0.2, cap=0.8))
    took = []
    for _ in range(4):
        start = time.monotonic()
        answer = post(server, "wrong")
        took.append(time.monotonic() - start)
        assert answer.status_code == 401
    # Lower bounds only: each answer waited at least its delay (0.2, 0.4, 0.8, 0.8 s).
    assert all(t >= d for t, d in zip(took, (0.2, 0.4, 0.8, 0.8), strict=True))
    assert server.throttle.delay_for("127.0.0.1") == 0.8
    assert echo(server) == "Get-Thing"  # the right password is never delayed ...
    assert server.throttle.delay_for("127.0.0.1") == 0.2  # ... and starts it over


def test_no_parallel_guessing_while_a_failure_waits(
    make_server: Callable[..., EmulatorServer],
) -> None:
    server = make_server(throttle=AuthThrottle(base=3.0, cap=3.0))
    slow: list[int] = []
    first = threading.Thread(target=lambda: slow.append(post(server, "guess-1").status_code))
    first.start()
    assert wait_until(lambda: server.throttle.busy("127.0.0.1"))
    # Any password, even the right one: turned away unchecked while the failure waits.
    for password in ("guess-2", PASSWORD):
        answer = post(server, password)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    first.join(30)
    assert slow == [401]
    assert post(server, PASSWORD).status_code != 401  # served again afterwards


# -- a bounded pool ---------------------------------------------------------------------------


def test_idle_connections_cannot_exhaust_the_server(
    make_server: Callable[..., EmulatorServer],
) -> None:
    server = make_server(max_connections=3, backlog=4)
    assert server._httpd is not None
    pool = server._httpd.pool
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
    try:
        # Forty connections that send nothing hold no more than the pool's three threads ...
        assert wait_until(lambda: pool.workers == 3)
        assert threading.active_count() <= before + 3
        # ... silent ones waiting for a worker get a short wait only, and then a real client
        # gets through: an idle one makes room for it.
        assert wait_until(lambda: pool.queued == 0, 30.0)
        assert echo(server) == "Get-Thing"
        assert pool.workers <= 3
    finally:
        for sock in idle:
            sock.close()
    # Workers with nothing to do end by themselves.
    assert wait_until(lambda: pool.workers == 0, 15.0)


def test_connections_beyond_pool_and_backlog_are_refused_with_503(
    make_server: Callable[..., EmulatorServer],
) -> None:
    server = make_server(max_connections=1, backlog=1, throttle=AuthThrottle(base=2.0, cap=2.0))
    busy = threading.Thread(target=lambda: post(server, "wrong"))
    busy.start()  # the only worker now waits out a failed login: busy, not idle
    assert wait_until(lambda: server.throttle.busy("127.0.0.1"))
    queued = socket.create_connection(("127.0.0.1", server.port))  # fills the backlog
    try:
        assert wait_until(lambda: server._httpd is not None and server._httpd.pool.queued == 1)
        refused = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        answer = refused.recv(4096)
        refused.close()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    finally:
        queued.close()
        busy.join(30)
    assert echo(server) == "Get-Thing"


# -- protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["bogus", "utf-32"])
def test_unknown_xml_encoding_is_a_fault_not_a_dropped_connection(
    make_server: Callable[..., EmulatorServer], encoding: str
) -> None:
    server = make_server()
    body = f'<?xml version="1.0" encoding="{encoding}"?><s:Envelope/>'.encode()
    with requests.Session() as session:
        session.headers["Authorization"] = basic(PASSWORD)
        answer = session.post(server.url, data=body, timeout=30)
        assert answer.status_code == 500
        assert b"<s:Fault>" in answer.content
        assert f'Code="{wsman.ERROR_INVALID_XML}"'.encode() in answer.content
        assert b"encoding is not supported" in answer.content
        # The same connection still answers.
        again = session.post(server.url, data=b"<not-soap/>", timeout=30)
        assert again.status_code == 500 and b"<s:Fault>" in again.content


# -- TLS key material --------------------------------------------------------------------------


def test_generated_key_is_gone_once_loaded_and_the_directory_at_stop(
    make_server: Callable[..., EmulatorServer],
) -> None:
    server = make_server(tls=True)
    assert server.cert_path is not None
    folder = Path(server.cert_path).parent
    assert sorted(p.name for p in folder.iterdir()) == ["emulator-cert.pem"]
    server.stop()
    assert not folder.exists()


def test_tls_directory_removed_when_the_process_exits_without_stop() -> None:
    script = (
        "from harness.emulator.server import EmulatorServer\n"
        "class H:\n"
        "    def run(self, commands, pipeline_input, out): out.write(1)\n"
        "server = EmulatorServer(H(), password='x', tls=True)\n"
        "server.start()\n"
        "print(server.cert_path, flush=True)\n"
    )  # exits with the server still running: no stop()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    cert = Path(done.stdout.strip())
    assert cert.name == "emulator-cert.pem"
    assert not cert.parent.exists()


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "problem"),
    [("70000", "70000 is outside 1-65535"), ("-1", "-1 is outside 1-65535"), ("x", "'x' is not")],
)
def test_serve_refuses_a_port_outside_the_range_in_one_line(port: str, problem: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "emulator", "serve", "--port", port],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stderr  # the usage exit code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dmh emulator serve: argument --port: ") and problem in lines[0]
    assert done.stdout == ""
