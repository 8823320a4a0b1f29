"""The pipeline handler: finds each received command in the registries, runs it against the
emulated host, shapes what it returns and turns its failures into error records (§1.9).
"""

from __future__ import annotations

import hmac
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.emulator.cmdlets.params import Params, object_id
from harness.emulator.cmdlets.registry import Cmdlet, cmdlet, script
from harness.emulator.cmdlets.shapes import checkpoint_object, vm_object
from harness.emulator.errors import (
    CommandNotFoundError,
    EmulatorError,
    InvalidCredentialError,
    InvalidParameterError,
    ScriptNotSupportedError,
    SessionOpenError,
    VmNotFoundError,
    to_record,
)
from harness.emulator.guest import EmulatedGuest, LocalProcess
from harness.emulator.host import CheckpointInfo, EmulatedHost, VmRecord, VMState
from harness.emulator.psrp import Command, PipelineOutput, TerminatingError
from harness.emulator.wildcards import has_wildcards
from harness.errors import SettingError

SCRIPT_LINE = re.compile(r"^#\s*dmh-script:\s*([a-z0-9-]+)\s*$", re.MULTILINE)
_EVALUATORS = frozenset({"invoke-expression", "iex"})
# What a guest's own WinRM endpoint offers: the guest-ops script and Get-Counter.
_GUEST_SCRIPT = "guest-ops"
_GUEST_CMDLET = "get-counter"


@dataclass(frozen=True)
class GuestEndpoint:
    """Where a guest's own WinRM listener is (for the WinRM guest channel)."""

    address: str
    port: int
    path: str
    ssl: bool


class HyperVHandler:
    """Runs received pipelines against an EmulatedHost, as a Hyper-V host would."""

    def __init__(
        self,
        host: EmulatedHost,
        *,
        guest_username: str = "guest",
        guest_password: str = "",
        guest_endpoint: Callable[[VmRecord], GuestEndpoint] | None = None,
        bound_vm: uuid.UUID | None = None,
    ) -> None:
        self.host = host
        self.guest_username = guest_username
        self._guest_password = guest_password.encode()
        self.guest_endpoint = guest_endpoint
        self.bound_vm = bound_vm  # set: this handler is one guest's own WinRM endpoint
        self._outputs: dict[tuple[uuid.UUID, int], LocalProcess] = {}
        self._lock = threading.Lock()

    # PipelineHandler
    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        items: list[Any] = list(pipeline_input)
        for command in commands:
            items = self._run_one(command, items)
            if command.end_of_statement:
                self._emit(items, out)
                items = []
        self._emit(items, out)

    def _emit(self, items: Iterable[Any], out: PipelineOutput) -> None:
        for item in items:
            out.write(self._shape(item))

    def _shape(self, item: Any) -> Any:
        if isinstance(item, VmRecord):
            return vm_object(item)
        if isinstance(item, CheckpointInfo):
            return checkpoint_object(item, self.host.name)
        return item

    def _run_one(self, command: Command, items: list[Any]) -> list[Any]:
        label = command.name
        try:
            func, label = self._resolve(command)
            return func(self, command, items)
        except EmulatorError as exc:
            raise TerminatingError(to_record(exc, label)) from None
        except SettingError as exc:
            raise TerminatingError(
                to_record(InvalidParameterError.from_setting(exc), label)
            ) from None

    def _resolve(self, command: Command) -> tuple[Cmdlet, str]:
        """The handler for `command` and the name its errors carry."""
        if command.name.lower() in _EVALUATORS:
            # What pypsrp's Client.execute_ps sends: a script by another door.
            raise ScriptNotSupportedError(command.name)
        if command.is_script:
            match = SCRIPT_LINE.search(command.name)
            func = None if match is None else script.get(match.group(1))
            if match is None or func is None:
                raise ScriptNotSupportedError()
            name = match.group(1)
            if self.bound_vm is not None and name != _GUEST_SCRIPT:
                raise CommandNotFoundError(name)
            return func, name
        func = cmdlet.get(command.name)
        if func is None or (self.bound_vm is not None and command.name.lower() != _GUEST_CMDLET):
            raise CommandNotFoundError(command.name)
        return func, command.name

    # -- shared by the cmdlets -------------------------------------------------------------
    def vms_for(self, params: Params, items: Sequence[Any], key: str = "Name") -> list[VmRecord]:
        """VMs named by parameter (wildcards allowed) or piped in as VM objects."""
        vm_objects = params.get("VM")
        if vm_objects is not None:
            refs = vm_objects if isinstance(vm_objects, list) else [vm_objects]
            return [self.host.get_vm(uuid.UUID(str(object_id(r)))) for r in refs]
        names = params.get(key)
        if names is None:
            piped = [i for i in items if isinstance(i, VmRecord)]
            if piped:
                return [self.host.get_vm(v.id) for v in piped]
            return self.host.find_vms("*")
        found: list[VmRecord] = []
        for name in names if isinstance(names, list) else [names]:
            # -Name is a wildcard pattern even without wildcards: `vm``1` is the VM "vm`1", as
            # clients escape names (WildcardPattern.Escape). Only a plain name that matches
            # nothing is an error.
            pattern = str(name)
            matches = self.host.find_vms(pattern)
            if not matches and not has_wildcards(pattern):
                raise VmNotFoundError(pattern)
            found.extend(matches)
        return found

    def one_or_more_vms(
        self, params: Params, items: Sequence[Any], key: str = "Name"
    ) -> list[VmRecord]:
        """`vms_for`, where a cmdlet that acts on VMs needs at least one."""
        vms = self.vms_for(params, items, key)
        if not vms:
            raise VmNotFoundError(params.text(key) or "*")
        return vms

    def check_guest_credentials(self, user: Any, password: Any) -> None:
        ok_user = hmac.compare_digest(str(user or "").encode(), self.guest_username.encode())
        ok_password = hmac.compare_digest(str(password or "").encode(), self._guest_password)
        if not (ok_user and ok_password):
            raise InvalidCredentialError()

    def guest_of(self, vm: VmRecord) -> EmulatedGuest:
        """The guest PowerShell Direct or WinRM reaches: only a running VM's."""
        if vm.state is not VMState.Running:
            raise SessionOpenError(vm.name)
        return self.host.guest(vm.id)

    def remember(self, vm: VmRecord, process: LocalProcess) -> None:
        with self._lock:
            self._outputs[(vm.id, process.pid)] = process

    def process(self, vm: VmRecord, pid: int) -> LocalProcess | None:
        with self._lock:
            known = self._outputs.get((vm.id, pid))
        if known is not None:
            return known
        guest = self.host.guest(vm.id)
        return next((p for p in guest.processes() if p.pid == pid), None)
