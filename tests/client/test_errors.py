"""How failures reach the caller: each as a harness.errors class that names the host (its label),
the command and the host's own message; PowerShell error records keep their fields."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from harness.config import HostTarget, Secret
from harness.errors import (
    AuthenticationError,
    CommandError,
    HostUnreachableError,
    InvalidArgumentError,
    InvalidStateError,
    ObjectNotFoundError,
)
from harness.fixtures.wiring import emulator_target
from harness.hyperv.host import HyperVHost
from harness.hyperv.session import HostSession
from harness.units import GB

from .support import Emulator, running_vm


def test_wrong_password_is_an_authentication_error(http_emulator: Emulator) -> None:
    target = dataclasses.replace(
        emulator_target(http_emulator.emu), password=Secret("not-the-password")
    )
    shells = http_emulator.emu.server.shell_count
    slept: list[float] = []
    with pytest.raises(AuthenticationError) as error:
        HostSession(target, retries=3, backoff=1.0, sleep=slept.append).script("host-facts")
    assert slept == []  # refused credentials are not retried
    assert error.value.host == target.label
    assert error.value.command == "open runspace pool"
    assert f"user {target.username!r}" in str(error.value)
    assert http_emulator.emu.server.shell_count == shells


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        target = HostTarget("127.0.0.1", port, "dmh", Secret("x"), auth="basic", ssl=False)
        with pytest.raises(HostUnreachableError) as error:
            HostSession(target, retries=1, backoff=0.01).script("host-facts")
    assert error.value.host == f"psrp://127.0.0.1:{port}"
    assert "cannot reach the host" in str(error.value)


def test_tls_without_the_ca_names_tls(https_emulator: Emulator) -> None:
    target = dataclasses.replace(emulator_target(https_emulator.emu), cert_validation=True)
    with pytest.raises(HostUnreachableError) as error:
        HostSession(target, retries=0).script("host-facts")
    assert "TLS certificate verification failed" in str(error.value)
    assert "cert_validation=" in str(error.value)
    assert error.value.host == target.label


def test_missing_vm_is_hyperv_s_invalid_argument(dm_session: HostSession) -> None:
    host = HyperVHost(dm_session)
    with pytest.raises(InvalidArgumentError) as error:
        host.vm("no-such-vm")
    assert error.value.host == dm_session.target.label
    assert error.value.command == "Get-VM"
    assert error.value.category == "InvalidArgument"
    assert error.value.error_id == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert error.value.target == "no-such-vm"
    assert 'unable to find a virtual machine with name "no-such-vm"' in str(error.value)
    assert str(error.value).startswith(f"{dm_session.target.label} running Get-VM: ")


def test_missing_checkpoint_and_command_are_not_found(
    http_emulator: Emulator, dm_session: HostSession, vm_name: str
) -> None:
    host = HyperVHost(dm_session)
    with pytest.raises(ObjectNotFoundError) as error:
        dm_session.cmdlet("Get-NoSuchThing")
    assert error.value.command == "Get-NoSuchThing"
    assert "is not recognized" in error.value.host_message
    with running_vm(host, vm_name, http_emulator), pytest.raises(ObjectNotFoundError) as missing:
        host.restore(vm_name, "no-such-checkpoint")
    assert missing.value.command == "Restore-VMCheckpoint"
    assert missing.value.target == "no-such-checkpoint"
    assert missing.value.host == dm_session.target.label


def test_host_refusing_set_vmmemory_keeps_the_error_record(
    http_emulator: Emulator, dm_session: HostSession, vm_name: str
) -> None:
    host = HyperVHost(dm_session)
    # Straight to the host, past the client's own check: the host's refusal comes back.
    with running_vm(host, vm_name, http_emulator), pytest.raises(CommandError) as error:
        dm_session.cmdlet("Set-VMMemory", VMName=vm_name, MaximumBytes=1 * GB)
    refusal = error.value
    assert isinstance(refusal, InvalidStateError)
    assert refusal.host == dm_session.target.label
    assert refusal.command == "Set-VMMemory"
    assert refusal.category == "InvalidOperation"
    assert refusal.error_id.endswith(",Microsoft.HyperV.PowerShell.Commands.SetVMMemory")
    assert refusal.target == vm_name
    assert "failed to modify device 'Memory'" in refusal.host_message
    assert "can only be increased while the VM runs" in str(refusal)
