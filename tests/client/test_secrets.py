"""No password (host or guest) in any log record, exception, target or test id, whether the
operations succeed or fail, with every logger at DEBUG (pypsrp's protocol logging included)."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable

import pytest

from harness.config import HostTarget, Secret
from harness.errors import HarnessError
from harness.fixtures.wiring import emulator_target
from harness.hyperv.guest import DirectChannel, Guest, GuestCredentials, guest_target
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.sampler import Sampler
from harness.settings import MemoryChange
from harness.timeline import Timeline
from harness.units import GB

from .support import PYTHON, Emulator, finish, running_vm


def _forms(secret: str) -> list[str]:
    """The secret as text, and base64 runs that appear wherever it sits in an encoded blob."""
    raw = secret.encode()
    forms = [secret]
    for shift in range(3):
        chunk = raw[shift:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        if len(chunk) >= 9:
            forms.append(base64.b64encode(chunk).decode())
    return forms


def test_no_secret_in_logs_errors_targets_or_ids(
    https_emulator: Emulator,
    vm_name: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = https_emulator.emu
    secrets = [emu.password, emu.guest_password]
    raised: list[BaseException] = []

    def failing(action: Callable[[], object]) -> None:
        with pytest.raises(HarnessError) as error:
            action()
        raised.append(error.value)

    target = emulator_target(emu)
    creds = https_emulator.credentials
    with HostSession(target, retries=0) as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, https_emulator):
            guest = Guest(DirectChannel(session, vm_name, creds))
            guest.counters()
            process = guest.start_process(PYTHON, ["-c", "print('hello')"], {"K": "v"})
            finish(process)
            Sampler(host, vm_name, Timeline(), guest=guest, process=process).tick()
            winrm = guest_target(host, vm_name, creds)
            winrm = dataclasses.replace(winrm, password=Secret(emu.password))  # the host's
            failing(lambda: HostSession(winrm, retries=0).script("guest-ops", Operation="Counters"))
            wrong_guest = GuestCredentials(creds.username, Secret(emu.password))
            failing(lambda: Guest(DirectChannel(session, vm_name, wrong_guest)).counters())
            failing(lambda: host.change_memory(vm_name, MemoryChange(maximum=1 * GB)))
            failing(lambda: session.cmdlet("Set-VMMemory", VMName=vm_name, MaximumBytes=1 * GB))
    wrong_host = dataclasses.replace(target, password=Secret(emu.guest_password))
    failing(lambda: HostSession(wrong_host, retries=0).script("host-facts"))
    no_ca = dataclasses.replace(target, cert_validation=True)
    failing(lambda: HostSession(no_ca, retries=0).script("host-facts"))

    assert len(raised) == 6
    assert sum(1 for r in caplog.records if r.name.startswith("pypsrp")) > 10  # it did log
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown = [formatter.format(r) for r in caplog.records]
    shown += [text for e in raised for text in (str(e), repr(e), repr(e.args))]
    targets: list[HostTarget] = [target, wrong_host, no_ca, winrm]
    shown += [text for t in targets for text in (str(t), repr(t), t.label)]
    shown += [repr(creds), str(creds.password), f"{creds.password}", request.node.nodeid]
    for secret in secrets:
        for form in _forms(secret):
            # Show what precedes a leak, never the secret itself.
            leaks = [text[: text.find(form)][-120:] for text in shown if form in text]
            assert not leaks, f"a secret ({len(secret)} characters) appears in: {leaks}"
