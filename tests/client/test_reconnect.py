"""HostSession against a host whose WinRM endpoint restarts (reconnect with a new pool) or
goes away for good (bounded retries, then HostUnreachableError, without hanging)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from harness.deadline import wait_until
from harness.errors import HostUnreachableError
from harness.fixtures.wiring import emulator_target
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.settings import MemorySettings

from .support import running_emulator

RETRIES = 3
BACKOFF = 0.05


class Backoffs:
    """The session's sleeps between retries, recorded (and slept for real: the endpoint is
    a real server)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)


def test_reconnects_after_restart_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="harness.hyperv.session")
    backoffs = Backoffs()
    with (
        running_emulator() as emulator,
        emulator.session(retries=RETRIES, backoff=BACKOFF, sleep=backoffs) as session,
    ):
        host = HyperVHost(session)
        name = host.facts().computer_name
        old = emulator.emu.server
        assert old.shell_count == 1

        # The endpoint restarts: connections and the shell are gone, the port answers again.
        new = emulator.restart_server()
        assert new.port == old.port and new.shell_count == 0
        assert host.facts(refresh=True).computer_name == name
        assert new.shell_count == 1  # a new pool on the new endpoint
        retried = [r for r in caplog.records if "retry" in r.getMessage()]
        assert 1 <= len(retried) <= RETRIES
        assert all(session.target.label in r.getMessage() for r in retried)

        # The endpoint goes away for good: bounded retries with backoff, then a clear error.
        caplog.clear()
        new.stop()
        backoffs.slept.clear()
        with pytest.raises(HostUnreachableError) as gone:
            host.facts(refresh=True)
        assert gone.value.host == session.target.label
        assert "cannot reach the host" in str(gone.value)
        retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert [m.split("retry ")[1].split(" ")[0] for m in retries] == [
            f"{i}/{RETRIES}" for i in range(1, RETRIES + 1)
        ]
        # Backoff doubles: 0.05, 0.1, 0.2 s of waiting between the tries, and no more.
        assert backoffs.slept == [BACKOFF * 2**i for i in range(RETRIES)]


def test_default_retries_are_bounded() -> None:
    """With the defaults (3 retries, 0.5 s backoff doubling) an unreachable host fails after
    3.5 s of backoff, not after a transport timeout (how long a refused connection takes is
    benchmarks/ci.py's figure)."""
    with running_emulator() as emulator:
        target = emulator_target(emulator.emu)
    slept: list[float] = []
    with pytest.raises(HostUnreachableError) as gone:
        HostSession(target, sleep=slept.append).script("host-facts")
    assert slept == [0.5, 1.0, 2.0]
    assert gone.value.retryable  # refused: nothing ran, and it was retried until the bound


def test_a_write_is_retried_only_when_it_cannot_have_run(vm_name: str) -> None:
    with (
        running_emulator() as emulator,
        emulator.session(retries=RETRIES, backoff=BACKOFF) as session,
    ):
        host = HyperVHost(session)
        host.create_vm(vm_name, MemorySettings.build(startup="512MB"), run_id="reconnect")
        # The endpoint restarts: the old shell is gone, so the write never ran anywhere and
        # sending it again on a new pool is safe.
        emulator.restart_server()
        session.cmdlet("Set-VM", Name=vm_name, Notes="after restart")
        assert host.vm(vm_name).notes == "after restart"
        # The endpoint is gone for good: refused connections prove nothing ran, so the write
        # is retried (bounded) and then reported unreachable.
        emulator.emu.server.stop()
        with pytest.raises(HostUnreachableError) as gone:
            session.cmdlet("Set-VM", Name=vm_name, Notes="never")
        assert "may have run" not in str(gone.value)
        assert emulator.emu.host.get_vm(vm_name).notes == "after restart"


def test_a_write_cut_off_mid_call_is_not_sent_again(vm_name: str) -> None:
    """The host's endpoint dies while Set-VM runs (caused for real: the server is stopped from
    inside the call). The write may have happened, so it must not be retried."""
    with (
        running_emulator() as emulator,
        emulator.session(retries=RETRIES, backoff=BACKOFF) as session,
    ):
        host = HyperVHost(session)
        host.create_vm(vm_name, MemorySettings.build(startup="512MB"), run_id="reconnect")
        recorder = emulator.recorder
        inner_run = recorder.inner.run

        def run_then_die(commands, pipeline_input, out):  # type: ignore[no-untyped-def]
            inner_run(commands, pipeline_input, out)
            if commands[0].name == "Set-VM":
                threading.Thread(target=emulator.emu.server.stop, daemon=True).start()
                # Return only once the shutdown has closed this pipeline's shell, so its
                # answer can never reach the client (an event, not a race against a timer).
                wait_until(lambda: out.stopped, 30, what="the shutdown to stop the pipeline")

        recorder.inner.run = run_then_die  # type: ignore[method-assign]
        with pytest.raises(HostUnreachableError) as cut:
            session.cmdlet("Set-VM", Name=vm_name, Notes="once")
        assert "may have run" in str(cut.value) and not cut.value.retryable
        assert recorder.statements.count("Set-VM") == 1
        assert emulator.emu.host.get_vm(vm_name).notes == "once"
