"""Helpers for the client's tests: VMs and guest programs (emulators: `tests.embedded`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from harness.deadline import wait_until
from harness.errors import DeadlineError
from harness.hyperv.guest import (
    DirectChannel,
    Guest,
    GuestProcess,
    WinRMChannel,
    guest_target,
)
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.settings import MemorySettings
from tests.embedded import Emulator as Emulator
from tests.embedded import running_emulator as running_emulator

T = TypeVar("T")
SWITCH = "dmh-switch"  # the emulated host's virtual switch

# Every kind of character that could break out of a value if a layer spliced it into text:
# quotes, subexpressions, backticks (PowerShell's escape and wildcard escape), statement and
# pipeline separators, wildcards, a newline and non-ASCII. No path separators or colons, so
# the same string also works as one path component.
HOSTILE = 'it\'s "q" $(Remove-VM *) `t ; & | Remove-VM * [x]? %PATH% ünï 名\nline2'


def memory(startup: str = "1GB", minimum: str = "512MB", maximum: str = "2GB") -> MemorySettings:
    return MemorySettings.build(startup=startup, minimum=minimum, maximum=maximum)


@contextlib.contextmanager
def running_vm(
    host: HyperVHost, name: str, emulator: Emulator, settings: MemorySettings | None = None
) -> Iterator[str]:
    """A VM from the emulator's Windows template on its virtual switch (so the WinRM channel
    finds an address), started; removed afterwards."""
    host.create_vm(
        name,
        settings or memory(),
        run_id="client-tests",
        template=emulator.emu.template_path("windows"),
        switch=SWITCH,
    )
    try:
        host.start_vm(name, heartbeat_deadline=20)
        yield name
    finally:
        host.remove_vm(name)


def direct_guest(session: HostSession, vm: str, emulator: Emulator) -> Guest:
    return Guest(DirectChannel(session, vm, emulator.credentials))


@contextlib.contextmanager
def guest_over(channel: str, emulator: Emulator, host: HyperVHost, vm: str) -> Iterator[Guest]:
    if channel == "direct":
        yield Guest(DirectChannel(host.session, vm, emulator.credentials))
        return
    # The client's defaults are a stock guest's listener (HTTP, negotiate); the emulator says
    # only what must differ (its port, basic auth), never TLS, whatever the host's listener.
    target = guest_target(host, vm, emulator.credentials)
    assert (target.hostname, target.ssl, target.auth) == ("127.0.0.1", False, "basic")
    assert target.port not in (0, emulator.emu.server.port)
    with HostSession(target, retries=1, backoff=0.05) as session:
        yield Guest(WinRMChannel(session))


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    try:
        return wait_until(condition, timeout, what=what, interval=0.02, max_interval=0.2)
    except DeadlineError as exc:
        pytest.fail(str(exc))


def finish(process: GuestProcess, timeout: float = 15.0) -> int:
    """Poll a guest process until it exits; its exit code."""
    result = wait_for(
        lambda: (r := process.poll()).exit_code is not None and r, timeout, "the process to exit"
    )
    assert result.exit_code is not None
    return result.exit_code


PYTHON = sys.executable

# A guest program that reports what it was given: argv, chosen environment variables, its
# working directory and, for each path in DMH_READ (JSON list), the file's text.
ECHO_PROGRAM = """\
import json, os, sys
names = json.loads(os.environ.get("DMH_ENV_NAMES", "[]"))
files = {p: open(p, encoding="utf-8").read() for p in json.loads(os.environ.get("DMH_READ", "[]"))}
print(json.dumps({
    "argv": sys.argv[1:],
    "env": {n: os.environ.get(n) for n in names},
    "cwd": os.getcwd(),
    "files": files,
}))
sys.exit(int(os.environ.get("DMH_EXIT", "0")))
"""

# Allocates and touches MB megabytes when a `go` file appears in its directory, frees them when
# `free` appears, exits when `exit` appears; reports each step as JSON lines for a probe.
ALLOC_PROGRAM = """\
import json, os, sys, time
size_mb = int(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
def report(value):
    print(json.dumps({"metric": "allocated_mb", "value": value}), flush=True)
def wait(name):
    while not os.path.exists(os.path.join(here, name)):
        time.sleep(0.02)
report(0)
wait("go")
block = bytearray(size_mb << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
report(size_mb)
wait("free")
del block
report(0)
wait("exit")
"""

# Writes a JSON line and a two-byte UTF-8 character each in two halves, waiting between the
# halves, so a reader polling in between sees them split.
SPLIT_PROGRAM = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
def wait(name):
    while not os.path.exists(os.path.join(here, name)):
        time.sleep(0.02)
out = sys.stdout.buffer
out.write(b'{"metric": "split", "va'); out.flush()
wait("half1")
out.write(b'lue": 7}\\n'); out.flush()
out.write(b'caf\\xc3'); out.flush()
wait("half2")
out.write(b'\\xa9\\n'); out.flush()
"""
