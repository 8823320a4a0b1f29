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

from harness.emulator.cmdlets.params import Params, bind, object_id
from harness.emulator.cmdlets.realhost import check_received
from harness.emulator.cmdlets.registry import Cmdlet, cmdlet, script
from harness.emulator.cmdlets.shapes import checkpoint_object, custom, vm_object
from harness.emulator.errors import (
    CommandNotFoundError,
    EmulatorError,
    InvalidCredentialError,
    InvalidParameterError,
    NamedParameterError,
    ObjectNotFoundError,
    ScriptNotSupportedError,
    SessionOpenError,
    VmNotFoundError,
    to_record,
)
from harness.emulator.guestface import GuestBackend, GuestProgram, GuestState
from harness.emulator.host import CheckpointInfo, EmulatedHost, VmRecord, VMState
from harness.emulator.psrp import Command, PipelineOutput, TerminatingError
from harness.errors import SettingError
from harness.hostcmdlets import command_missing, parameters_missing
from harness.wildcards import has_wildcards, name_matches

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
        self._processes: dict[tuple[uuid.UUID, str], tuple[int, GuestProgram]] = {}
        # The Python codec each started process's output is decoded in, by (VM id, key).
        self.code_pages: dict[tuple[uuid.UUID, str], str] = {}
        # Per runspace: the variables scripts run without UseLocalScope left behind.
        self._global_scope: dict[str, dict[str, tuple[str, Any]]] = {}
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
            # The pipeline as one received object (its text and parameters): a PSRP endpoint
            # refuses one over 10 MB (real-host facts, "10 MB per received object").
            where = "the host's endpoint" if self.bound_vm is None else "the guest's endpoint"
            text = command.name if command.is_script else ""
            check_received([[text, *(value for _, value in command.parameters)]], where)
            func, label = self._resolve(command)
            if not command.is_script:
                self._check_version(command)
            if command.is_script and not command.use_local_scope:
                self._leave_in_global_scope(command)
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

    def _check_version(self, command: Command) -> None:
        """A cmdlet or parameter this host's version does not have (harness.hostcmdlets)."""
        if command_missing(command.name, self.host.version):
            raise CommandNotFoundError(command.name)
        used = {name for name, _ in command.parameters if name is not None}
        for missing in sorted(parameters_missing(command.name, used, self.host.version)):
            raise NamedParameterError(missing)

    def _leave_in_global_scope(self, command: Command) -> None:
        """A script run without UseLocalScope runs in the runspace's global scope: its
        parameters stay there as variables for later commands in that runspace (real-host
        facts, "Scripts run through PSRP without UseLocalScope")."""
        with self._lock:
            scope = self._global_scope.setdefault(command.runspace, {})
            for name, value in command.parameters:
                if name is not None:
                    scope[name.casefold()] = (name, value)

    def global_variable(self, runspace: str, name: str) -> tuple[str, Any] | None:
        """A variable a script left in `runspace`'s global scope: (name, value), or None."""
        with self._lock:
            return self._global_scope.get(runspace, {}).get(name.casefold())

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
        every = self.host.find_vms("*")
        for name in names if isinstance(names, list) else [names]:
            # A pattern only with an unescaped wildcard, else the exact name (name_matches);
            # several VMs may share a name. Only a plain name that matches nothing is an error.
            text = str(name)
            matches = [vm for vm in every if name_matches(vm.name, text)]
            if not matches and not has_wildcards(text):
                raise VmNotFoundError(text)
            found.extend(matches)
        return found

    def vm_named(self, name: str) -> VmRecord:
        """The scripts' Get-DmhVM (include/vm-lookup.ps1): the one VM with exactly this name."""
        found = [vm for vm in self.host.find_vms("*") if vm.name.casefold() == name.casefold()]
        if not found:
            raise ObjectNotFoundError(
                f'Hyper-V was unable to find a virtual machine with name "{name}".', target=name
            )
        if len(found) > 1:
            raise InvalidParameterError(
                f'{len(found)} virtual machines are named "{name}"; the harness needs one VM per'
                " name (rename or remove the others).",
                target=name,
            )
        return found[0]

    def one_or_more_vms(
        self, params: Params, items: Sequence[Any], key: str = "Name"
    ) -> list[VmRecord]:
        """`vms_for`, where a cmdlet that acts on VMs needs at least one."""
        vms = self.vms_for(params, items, key)
        if not vms:
            raise VmNotFoundError(params.text(key) or "*")
        return vms

    def check_guest_credentials(self, vm_name: str, user: Any, password: Any) -> None:
        """PowerShell Direct's logon: wrong credentials fail New-PSSession with OpenError."""
        ok_user = hmac.compare_digest(str(user or "").encode(), self.guest_username.encode())
        ok_password = hmac.compare_digest(str(password or "").encode(), self._guest_password)
        if not (ok_user and ok_password):
            raise InvalidCredentialError(vm_name)

    def guest_of(self, vm: VmRecord, *, direct: bool = False) -> GuestBackend:
        """The guest PowerShell Direct or WinRM reaches: a running VM's whose guest has booted
        (a VM is Running at once after Start-VM, its guest later: real-host facts); over
        PowerShell Direct (`direct`) only a Windows guest's (§1.6: Linux is reached by SSH)."""
        guest = self.host.guest(vm.id)
        if vm.state is not VMState.Running or guest.state is not GuestState.RUNNING:
            raise SessionOpenError(vm.name)
        if direct and guest.os_name != "windows":
            raise SessionOpenError(vm.name)
        return guest

    def remember(self, vm: VmRecord, key: str, process: GuestProgram) -> None:
        """Keep a started process in the guest session's state under `key` (guest-ops keeps
        the process object, so its exit code and output outlive the process)."""
        with self._lock:
            self._processes[(vm.id, key)] = (vm.power_cycles, process)

    def process(self, vm: VmRecord, key: str) -> GuestProgram | None:
        """The process kept under `key`; None once the guest session lost it (the guest went
        off, rebooted or was restored: the session and its state end with it)."""
        with self._lock:
            known = self._processes.get((vm.id, key))
        if known is None or known[0] != vm.power_cycles:
            return None
        return known[1]


@cmdlet("Get-Variable")
def _get_variable(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    """Get-Variable -Name N [-Scope Global] [-ValueOnly]: the variables scripts left in this
    runspace's global scope (the only ones the emulator keeps)."""
    p = bind(c, ["Name", "Scope", "ValueOnly"])
    name = p.required("Name")
    found = h.global_variable(c.runspace, name)
    if found is None:
        raise ObjectNotFoundError(f"Cannot find a variable with the name '{name}'.", target=name)
    if p.get("ValueOnly"):
        return [found[1]]
    return [custom(Name=found[0], Value=found[1])]
