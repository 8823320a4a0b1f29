"""HostSession against a host whose WinRM endpoint restarts (reconnect with a new pool) or
goes away for good (bounded retries, then HostUnreachableError, without hanging)."""

from __future__ import annotations

import logging
import time

import pytest

from harness.errors import HostUnreachableError
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession

from .support import running_emulator

RETRIES = 3
BACKOFF = 0.05


def test_reconnects_after_restart_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="harness.hyperv.session")
    with (
        running_emulator() as emulator,
        emulator.session(retries=RETRIES, backoff=BACKOFF) as session,
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
        started = time.monotonic()
        with pytest.raises(HostUnreachableError) as gone:
            host.facts(refresh=True)
        elapsed = time.monotonic() - started
        assert gone.value.host == session.target.label
        assert "cannot reach the host" in str(gone.value)
        retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert [m.split("retry ")[1].split(" ")[0] for m in retries] == [
            f"{i}/{RETRIES}" for i in range(1, RETRIES + 1)
        ]
        # Backoff doubles: 0.05 + 0.1 + 0.2 s of waiting, and refused connections are fast.
        assert sum(BACKOFF * 2**i for i in range(RETRIES)) <= elapsed < 5.0


def test_default_retries_are_bounded() -> None:
    """With the defaults (3 retries, 0.5 s backoff doubling) an unreachable host fails in
    about 3.5 s, not after a transport timeout."""
    with running_emulator() as emulator:
        target = emulator.emu.target
    started = time.monotonic()
    with pytest.raises(HostUnreachableError):
        HostSession(target).script("host-facts")
    assert 3.5 <= time.monotonic() - started < 10.0
