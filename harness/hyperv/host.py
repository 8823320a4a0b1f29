"""Host operations over one PSRP session: facts, VM lifecycle, memory settings, state.

Memory settings are checked against Hyper-V's rules (harness.settings) before anything is
sent, so an invalid or runtime-forbidden change never reaches a host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.deadline import Deadline, wait_until
from harness.errors import (
    HostError,
    InfrastructureError,
    InvalidArgumentError,
    ObjectNotFoundError,
)
from harness.hyperv.session import HostSession
from harness.lease import RUN_TAG
from harness.settings import (
    DEFAULT_BUFFER,
    DEFAULT_PRIORITY,
    HostVersion,
    MemoryChange,
    MemorySettings,
    check_runtime_change,
)
from harness.wildcards import literal

log = logging.getLogger(__name__)

_HEARTBEAT_OK = ("OkApplicationsHealthy", "OkApplicationsUnknown", "OkApplicationsCritical")


def prop(obj: Any, name: str, default: Any = None) -> Any:
    """A property of a deserialized PowerShell object, adapted or extended, or a dict key."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    for bag in ("adapted_properties", "extended_properties"):
        values = getattr(obj, bag, None) or {}
        if name in values:
            return values[name]
    return default


def text(value: Any) -> str:
    """An enum or object as PowerShell prints it ('Running'), '' for null."""
    return "" if value is None else str(value)


@dataclass(frozen=True)
class HostFacts:
    computer_name: str
    os_caption: str
    os_version: str
    hyperv_version: HostVersion
    memory_capacity: int
    balancer_available_mb: int  # 0 when the balancer's counters are not available
    balancer_average_pressure: int
    hyperv_module: bool = True
    checkpoint_cmdlets: bool = True
    powershell: int = 5  # the host's PowerShell major version


# The harness drives the Hyper-V PowerShell module with the *-VMCheckpoint cmdlets and reaches
# Windows guests over PowerShell Direct: 2016 on. 2012 R2 is not supported: it has no
# PowerShell Direct (no New-PSSession -VMId), the default Windows guest channel, and its
# Set-VMFirmware has no -SecureBootTemplate, which a Generation 2 Linux guest needs
# (real-host facts, "PowerShell Direct needs a 2016+ host too"; windows-powershell-docs,
# docset winserver2012r2-ps, Set-VMFirmware.md).
SUPPORTED = (HostVersion.V2016, HostVersion.V2019, HostVersion.V2022)


class UnsupportedHostError(HostError):
    """A host the harness cannot drive (real-host facts, "Host versions")."""

    def __init__(self, facts: HostFacts, *, host: str) -> None:
        self.facts = facts
        missing = (
            f"it runs PowerShell {facts.powershell}.0 (the harness's scripts need 5.1)"
            if facts.powershell < 3
            else "it has no Hyper-V PowerShell module (WMI only)"
            if not facts.hyperv_module
            else "its Hyper-V module lacks the *-VMCheckpoint cmdlets"
            if not facts.checkpoint_cmdlets
            else "it has no PowerShell Direct (New-PSSession -VMId) and no Secure Boot"
            " templates (Set-VMFirmware -SecureBootTemplate)"
        )
        super().__init__(
            f"{facts.os_caption or 'this host'} ({facts.os_version},"
            f" Hyper-V {facts.hyperv_version.value}) cannot be driven: {missing}. DM Harness drives"
            " Hyper-V hosts from Windows Server 2016 on (the Hyper-V PowerShell module with"
            " the *-VMCheckpoint cmdlets, PowerShell Direct to Windows guests); use a 2016 or"
            " later host, or the embedded emulator",
            host=host,
            command="script host-facts",
        )


@dataclass(frozen=True)
class VMInfo:
    """What Get-VM and Get-VMMemory say about one VM."""

    name: str
    id: str
    state: str
    heartbeat: str
    generation: int
    notes: str
    memory_assigned: int
    memory_demand: int
    memory_status: str
    memory: MemorySettings


def version_from_build(os_version: str) -> HostVersion:
    """Map a Windows build ('10.0.17763') to the Hyper-V generation whose DM rules apply."""
    try:
        major, minor, build = (int(p) for p in os_version.split(".")[:3])
    except ValueError as exc:
        raise InfrastructureError(f"cannot read the host's OS version {os_version!r}") from exc
    if (major, minor) == (6, 1):
        return HostVersion.V2008R2SP1
    if (major, minor) == (6, 2):
        return HostVersion.V2012
    if (major, minor) == (6, 3):
        return HostVersion.V2012R2
    if build >= 20348:
        return HostVersion.V2022
    if build >= 17763:
        return HostVersion.V2019
    return HostVersion.V2016


class HyperVHost:
    """The harness's view of one Hyper-V host (real or emulated: the same code path)."""

    def __init__(self, session: HostSession, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.clock = clock
        self._facts: HostFacts | None = None

    @property
    def label(self) -> str:
        return self.session.target.label

    def facts(self, refresh: bool = False) -> HostFacts:
        """What the host is; the first call is the connect-time check: UnsupportedHostError
        names a host the harness cannot drive (before 2016) and what it lacks."""
        if self._facts is None or refresh:
            raw = self.session.script("host-facts")[0]
            os_version = text(prop(raw, "OSVersion"))
            facts = HostFacts(
                computer_name=text(prop(raw, "ComputerName")),
                os_caption=text(prop(raw, "OSCaption")),
                os_version=os_version,
                hyperv_version=version_from_build(os_version),
                memory_capacity=int(prop(raw, "MemoryCapacity") or 0),
                balancer_available_mb=int(prop(raw, "AvailableMemoryMB") or 0),
                balancer_average_pressure=int(prop(raw, "AveragePressure") or 0),
                hyperv_module=bool(prop(raw, "HyperVModule", True)),
                checkpoint_cmdlets=bool(prop(raw, "CheckpointCmdlets", True)),
                powershell=int(prop(raw, "PSVersion") or 5),
            )
            if (
                facts.hyperv_version not in SUPPORTED
                or not facts.hyperv_module
                or not facts.checkpoint_cmdlets
            ):
                raise UnsupportedHostError(facts, host=self.label)
            self._facts = facts
        return self._facts

    @property
    def version(self) -> HostVersion:
        return self.facts().hyperv_version

    # -- VMs --------------------------------------------------------------------------
    def create_vm(
        self,
        name: str,
        memory: MemorySettings,
        *,
        run_id: str,
        generation: int = 2,
        template: str | None = None,
        disk_directory: str | None = None,
        switch: str | None = None,
        secure_boot: str | None = None,
        lease: str = "",
    ) -> VMInfo:
        """New VM (on a differencing disk over `template` when given), tagged with run_id
        and its `lease` (`harness.lease.Lease.tags()`: who owns it, for `dmh sweep`), on
        the virtual switch `switch` when given (the WinRM guest channel needs one: a VM on
        no switch has no address) and with the Secure Boot template `secure_boot` (or "Off")
        when given. A name another VM has is refused: Hyper-V allows it, but the harness
        addresses VMs by name."""
        memory.validate(self.version, generation)
        params: dict[str, Any] = {
            "Name": name,
            "StartupBytes": memory.startup,
            "Generation": generation,
            "Notes": f"{RUN_TAG}{run_id}" + (f" {lease}" if lease else ""),
        }
        if template:
            params["TemplatePath"] = template
        if disk_directory:
            params["DiskDirectory"] = disk_directory
        if switch:
            params["SwitchName"] = switch
        self.session.script("new-vm-from-template", **params)
        try:
            if secure_boot:  # "MicrosoftUEFICertificateAuthority" or "Off" for Linux guests
                self.session.script("vm-secure-boot", VMName=name, SecureBoot=secure_boot)
            self._set_memory(name, MemoryChange.full(memory))
        except BaseException:
            self.remove_vm(name)
            raise
        return self.vm(name)

    def adopt_vm(self, name: str, checkpoint: str | None = None) -> VMInfo:
        """Use an existing VM, first restoring a named checkpoint when given."""
        if checkpoint:
            self.restore(name, checkpoint)
        return self.vm(name)

    def vm(self, name: str) -> VMInfo:
        raw = _one(self.session.cmdlet("Get-VM", Name=literal(name)), name, self.label)
        mem = _one(self.session.cmdlet("Get-VMMemory", VMName=literal(name)), name, self.label)
        return _vm_info(raw, mem)

    def vms(self) -> list[VMInfo]:
        return [self.vm(text(prop(raw, "Name"))) for raw in self.session.cmdlet("Get-VM")]

    def leftovers(self, run_id: str | None = None) -> list[str]:
        """Names of VMs the harness created (any run, or one run) that still exist."""
        tag = RUN_TAG + (run_id or "")
        found = []
        for raw in self.session.cmdlet("Get-VM"):
            notes = text(prop(raw, "Notes"))
            # One run: its id whole (the Notes may go on with the VM's lease), not a prefix.
            if notes == tag or notes.startswith(tag if run_id is None else f"{tag} "):
                found.append(text(prop(raw, "Name")))
        return found

    def configure_memory(self, name: str, memory: MemorySettings, generation: int = 2) -> None:
        """Write all memory settings in one Set-VMMemory (validated as one, §1.1)."""
        memory.validate(self.version, generation)
        self._set_memory(name, MemoryChange.full(memory))

    def change_memory(self, name: str, change: MemoryChange) -> MemorySettings:
        """Change settings of a VM in any state; refuse what its state and host forbid.
        The settings the VM has afterwards."""
        current = self.vm(name)
        wanted = change.applied_to(current.memory)
        wanted.validate(self.version, current.generation)
        if current.state != "Off":
            check_runtime_change(current.memory, wanted, self.version)
        self._set_memory(name, change)
        return wanted

    def _set_memory(self, name: str, change: MemoryChange) -> None:
        # Validated by the caller: this is the one place that sends a memory change.
        self.session.cmdlet("Set-VMMemory", VMName=literal(name), **change.parameters())

    def start_vm(self, name: str, heartbeat_deadline: float = 120.0) -> VMInfo:
        """Start the VM and wait until its heartbeat is OK, within a deadline."""
        self.session.cmdlet("Start-VM", Name=literal(name))
        return self.wait_for(
            name,
            lambda vm: vm.state == "Running" and vm.heartbeat in _HEARTBEAT_OK,
            heartbeat_deadline,
            "a Running state with heartbeat OK",
        )

    def stop_vm(self, name: str, turn_off: bool = True) -> None:
        params: dict[str, Any] = {"Name": literal(name), "Force": True}
        if turn_off:
            params["TurnOff"] = True
        self.session.cmdlet("Stop-VM", **params)

    def remove_vm(self, name: str) -> list[str]:
        """Turn off, remove, and delete the differencing disks the harness created; the disks
        that could not be deleted (each with Windows' reason), logged as a warning: the VM is
        gone, its disks are a leak to clean up by hand."""
        try:
            raw = _single(self.session.script("remove-vm", Name=name))
        except (ObjectNotFoundError, InvalidArgumentError):
            # Hyper-V reports a missing VM as InvalidArgument, like a bad argument: look.
            if any(text(prop(raw, "Name")) == name for raw in self.session.cmdlet("Get-VM")):
                raise
            log.info("%s: VM %r was already gone", self.label, name)
            return []
        left = [text(d) for d in prop(raw, "LeftDisks") or []]
        if left:
            log.warning("%s: VM %r removed, disks left behind: %s", self.label, name, left)
        return left

    def checkpoint(self, name: str, checkpoint: str) -> None:
        self.session.cmdlet("Checkpoint-VM", Name=literal(name), SnapshotName=checkpoint)

    def restore(self, name: str, checkpoint: str) -> None:
        self.session.cmdlet(
            "Restore-VMCheckpoint", VMName=literal(name), Name=literal(checkpoint), Confirm=False
        )

    def wait_for(
        self, name: str, condition: Callable[[VMInfo], bool], deadline: float, what: str
    ) -> VMInfo:
        """The VM once `condition` holds; DeadlineError naming its last state if it never does."""
        seen: list[VMInfo] = []

        def reached() -> VMInfo | None:
            seen.append(self.vm(name))
            return seen[-1] if condition(seen[-1]) else None

        return wait_until(
            reached,
            Deadline(deadline, clock=self.clock),
            what=f"VM {name!r} on {self.label} to reach {what}",
            max_interval=1.0,
            detail=lambda: f"state {seen[-1].state}, heartbeat {seen[-1].heartbeat or 'none'}",
        )


def _single(results: Iterable[Any]) -> Any:
    return next(iter(results), None)


def _one(results: Iterable[Any], name: str, host: str) -> Any:
    # A pattern that matches nothing is no error to Hyper-V, and two VMs may share a name
    # (real-host facts): say either here, rather than act on the wrong VM.
    items = list(results)
    if not items:
        raise ObjectNotFoundError(f"no VM named {name!r}", host=host, command="Get-VM")
    if len(items) > 1:
        raise InvalidArgumentError(
            f"{len(items)} VMs are named {name!r}; the harness needs one VM per name"
            " (rename or remove the others)",
            host=host,
            command="Get-VM",
            target=name,
        )
    return items[0]


def _vm_info(raw: Any, mem: Any) -> VMInfo:
    return VMInfo(
        name=text(prop(raw, "Name")),
        id=text(prop(raw, "Id")),
        state=text(prop(raw, "State")),
        heartbeat=text(prop(raw, "Heartbeat")),
        generation=int(prop(raw, "Generation", 2)),
        notes=text(prop(raw, "Notes")),
        memory_assigned=int(prop(raw, "MemoryAssigned", 0)),
        memory_demand=int(prop(raw, "MemoryDemand", 0)),
        memory_status=text(prop(raw, "MemoryStatus")),
        memory=MemorySettings(
            dynamic=bool(prop(mem, "DynamicMemoryEnabled")),
            startup=int(prop(mem, "Startup", 0)),
            minimum=int(prop(mem, "Minimum", 0)),
            maximum=int(prop(mem, "Maximum", 0)),
            buffer=int(prop(mem, "Buffer", DEFAULT_BUFFER)),
            priority=int(prop(mem, "Priority", DEFAULT_PRIORITY)),
        ),
    )
