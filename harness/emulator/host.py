"""The emulated Hyper-V host: VMs, their states, memory settings and checkpoints, the DM
balancer and its counters, and the guests that run real processes. What cmdlets call.

Longer than ~500 lines on purpose: one class whose single lock guards every VM's state, so
each operation's checks and changes stay together and atomic; the records it returns, the
lookups and the driver are small beside it.
"""

from __future__ import annotations

import enum
import logging
import platform
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PureWindowsPath

from harness.emulator.backends import backend, make_guest
from harness.emulator.balancer import (
    Balancer,
    MemoryState,
    NotEnoughMemory,
    Phase,
    Timings,
    VmMemory,
)
from harness.emulator.errors import (
    AmbiguousVmError,
    ArgumentValidationError,
    CheckpointError,
    CheckpointNotFoundError,
    InvalidParameterError,
    MemorySettingError,
    NotEnoughMemoryError,
    ObjectNotFoundError,
    ParameterMismatchError,
    RuntimeMemoryChangeError,
    VmNotFoundError,
    VmStateError,
)
from harness.emulator.guestface import GuestBackend, GuestProgram
from harness.emulator.guestview import GuestProfile, GuestView, LinuxProfile, WindowsProfile
from harness.emulator.wildcards import wildcard_regex
from harness.errors import RuntimeChangeError, SettingError
from harness.settings import (
    SET_VMMEMORY_PARAMETERS,
    SIZE_FIELDS,
    HostVersion,
    MemoryChange,
    MemorySettings,
    check_runtime_change,
    max_memory_per_vm,
)
from harness.units import MB, TB, parse_size

log = logging.getLogger(__name__)

DEFAULT_STARTUP = 512 * MB  # New-VM's documented default (§1.4)
MAX_NAME_LENGTH = 100  # VM and checkpoint names (§1.5)


class VMState(enum.IntEnum):
    """Hyper-V's VMState values (Microsoft.HyperV.PowerShell.VMState)."""

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777


class Heartbeat(enum.IntEnum):
    """VMHeartbeatStatus (§1.3)."""

    Unknown = 0
    Disabled = 1
    NoContact = 2
    Error = 3
    LostCommunication = 4
    OkApplicationsUnknown = 5
    OkApplicationsHealthy = 6
    OkApplicationsCritical = 7
    Paused = 8


class CheckpointType(enum.IntEnum):
    """Set-VM -CheckpointType values, numbered as in Msvm_VirtualSystemSettingData (§1.5)."""

    Disabled = 2
    Production = 3
    ProductionOnly = 4
    Standard = 5


_CONFIG_VERSION = {
    HostVersion.V2008R2SP1: "3.0",
    HostVersion.V2012: "4.0",
    HostVersion.V2012R2: "5.0",
    HostVersion.V2016: "8.0",
    HostVersion.V2019: "9.0",
    HostVersion.V2022: "10.0",
}


def default_reserve(total_memory: int) -> int:
    """Host memory reserve: 384 MB + 64 MB per GB of host RAM (the 2008 R2 formula, §3.8,
    §8.11), capped at 4 GB and at half the host so small emulated hosts stay usable."""
    total_mb = total_memory // MB
    reserve_mb = min(384 + 64 * (total_mb // 1024), 4096, total_mb // 2)
    return (reserve_mb - reserve_mb % 2) * MB


# -- snapshots ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VmRecord:
    """One VM as Get-VM and Get-VMMemory show it (§1.2, §1.3); sizes in bytes."""

    id: uuid.UUID
    name: str
    computer_name: str
    generation: int
    state: VMState
    heartbeat: Heartbeat | None  # None when the VM is off or saved (§1.3)
    uptime: timedelta
    notes: str
    vhd_path: str
    guest_os: str
    checkpoint_type: CheckpointType
    creation_time: datetime
    processor_count: int
    version: str
    memory: MemorySettings
    memory_assigned: int
    memory_demand: int
    memory_status: str
    smart_paging_file_in_use: bool
    smart_paging_file_path: str
    memory_available: int  # Msvm_SummaryInformation.MemoryAvailable %, INVALID if no data
    available_memory_buffer: int  # Msvm_SummaryInformation.AvailableMemoryBuffer %
    parent_checkpoint_id: uuid.UUID | None
    power_cycles: int = 0  # times the guest was lost (off, reboot, restore): sessions end
    switch_name: str = ""  # the virtual switch its adapter is on ('' for none: no address)

    @property
    def dynamic_memory_enabled(self) -> bool:
        return self.memory.dynamic

    @property
    def memory_startup(self) -> int:
        return self.memory.startup

    @property
    def memory_minimum(self) -> int:
        return self.memory.minimum

    @property
    def memory_maximum(self) -> int:
        return self.memory.maximum


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint as Get-VMCheckpoint shows it; `memory` is what Get-VMMemory -VMSnapshot
    reads (§1.5). `checkpoint_type` is Standard (with memory state) or Production."""

    id: uuid.UUID
    name: str
    vm_id: uuid.UUID
    vm_name: str
    creation_time: datetime
    checkpoint_type: CheckpointType
    vm_state: VMState
    memory: MemorySettings
    parent_checkpoint_id: uuid.UUID | None


@dataclass
class _Checkpoint:
    info: CheckpointInfo
    memory_state: MemoryState | None  # Standard checkpoints of a VM that was on
    disk: str = ""  # the VM's disk when the checkpoint was taken, frozen since


class _Vm:
    def __init__(
        self,
        name: str,
        generation: int,
        settings: MemorySettings,
        guest: GuestBackend,
        vm_id: uuid.UUID,
        vhd_path: str,
        notes: str,
    ) -> None:
        self.id = vm_id
        self.key = str(vm_id)
        self.name = name
        self.generation = generation
        self.settings = settings
        self.guest = guest
        self.state = VMState.Off
        self.notes = notes
        self.vhd_path = vhd_path
        self.checkpoint_type = CheckpointType.Production
        self.smart_paging_path = ""
        self.created = datetime.now(timezone.utc)
        self.checkpoints: list[_Checkpoint] = []
        self.parent_checkpoint: uuid.UUID | None = None
        self.boot_done_at = 0.0
        self.uptime_base = 0.0
        self.running_since: float | None = None
        self.committed_mb = guest.profile.baseline_commit_mb
        self.power_cycles = 0
        self.booting = False  # Running, guest not up yet
        self.switch = ""


VmRef = uuid.UUID | str  # an id, or an exact VM name (not a wildcard pattern)
# Set-VMMemory takes these only with Dynamic Memory enabled (§1.1), in the order it names them
_DYNAMIC_ONLY = ("buffer", "minimum", "maximum")
_ON = (VMState.Starting, VMState.Running, VMState.Paused)


class EmulatedHost:
    """A Hyper-V host with Dynamic Memory, in process. Thread-safe (one RLock).

    Sizes are bytes (ints) or strings like "16GB". VMs are addressed by `uuid.UUID` id or
    by exact name; `find_vms` takes PowerShell wildcards.
    """

    def __init__(
        self,
        total_memory: int | str = "16GB",
        *,
        reserve: int | str | None = None,
        version: HostVersion | str = HostVersion.V2022,
        guest_os: str = "windows",
        timings: Timings | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        hot_add_block: int | str = 128 * MB,
        numa_node_memory: int | str | None = None,
        guest_root: str | Path | None = None,
        windows_profile: GuestProfile | None = None,
        linux_profile: GuestProfile | None = None,
        disks: Mapping[str, str] | None = None,
        switches: tuple[str, ...] = ("dmh-switch",),
        guest_backend: str = "process",
    ) -> None:
        backend(guest_backend)  # an unknown name fails here, before anything is made
        self.guest_backend = guest_backend
        self.total_memory = parse_size(total_memory, "total_memory")
        self.reserve = (
            default_reserve(self.total_memory)
            if reserve is None
            else parse_size(reserve, "reserve")
        )
        self.version = HostVersion.parse(version)
        self.guest_os = _check_os(guest_os)
        self.switches = switches  # virtual switches New-VM -SwitchName may name
        self.timings = timings or Timings.fast()
        self.clock = clock
        self.name = name or (platform.node() or "localhost").upper()
        self._profiles: dict[str, GuestProfile] = {
            "windows": windows_profile or WindowsProfile(),
            "linux": linux_profile or LinuxProfile(),
        }
        numa = None if numa_node_memory is None else parse_size(numa_node_memory) // MB
        self.balancer = Balancer(
            self.total_memory // MB,
            self.reserve // MB,
            self.timings,
            block_mb=parse_size(hot_add_block, "hot_add_block") // MB,
            numa_node_mb=numa,
            guest_available_counter=self.version is HostVersion.V2022,  # build ≥ 20348 (§4.1)
        )
        self._owns_root = guest_root is None
        self._root = (
            Path(tempfile.gettempdir()) / f"dmh-host-{uuid.uuid4().hex[:12]}"
            if guest_root is None
            else Path(guest_root)
        )
        self._lock = threading.RLock()
        self._vms: dict[uuid.UUID, _Vm] = {}
        self._disks: dict[str, tuple[str, str]] = {}
        self._parents: dict[str, str] = {}  # differencing disk -> its parent (by key)
        self._closed = False
        for path, os_name in (disks or {}).items():
            self.add_disk(path, os_name)

    # -- lookup -----------------------------------------------------------------------
    def _find(self, ref: VmRef) -> _Vm:
        if isinstance(ref, uuid.UUID):
            vm = self._vms.get(ref)
            if vm is None:
                raise VmNotFoundError(str(ref), by_id=True)
            return vm
        folded = ref.casefold()
        found = [vm for vm in self._vms.values() if vm.name.casefold() == folded]
        if not found:
            raise VmNotFoundError(ref)
        if len(found) > 1:
            raise AmbiguousVmError(ref, len(found))
        return found[0]

    def find_vms(self, pattern: str = "*") -> list[VmRecord]:
        """VMs whose name matches a PowerShell wildcard pattern, by name (Get-VM -Name).
        No match is an empty list; the cmdlet layer decides whether that is an error."""
        regex = wildcard_regex(pattern)
        with self._lock:
            now = self._advance()
            vms = [vm for vm in self._vms.values() if regex.match(vm.name)]
            vms.sort(key=lambda vm: (vm.name.casefold(), vm.created))
            return [self._record(vm, now) for vm in vms]

    def get_vm(self, ref: VmRef) -> VmRecord:
        with self._lock:
            now = self._advance()
            return self._record(self._find(ref), now)

    def guest(self, ref: VmRef) -> GuestBackend:
        with self._lock:
            return self._find(ref).guest

    # -- virtual disks ----------------------------------------------------------------
    def add_disk(self, path: str, guest_os: str, parent: str = "") -> None:
        """Register a virtual disk (a template or a VM's disk; a differencing disk over
        `parent`) and the guest OS on it, so a VM created from it gets that guest. Paths
        compare case-insensitively, like Windows'."""
        with self._lock:
            self._disks[_disk_key(path)] = (path, _check_os(guest_os))
            if parent:
                self._parents[_disk_key(path)] = parent

    def remove_disk(self, path: str) -> bool:
        """Forget a virtual disk; False if it was not registered."""
        with self._lock:
            self._parents.pop(_disk_key(path), None)
            return self._disks.pop(_disk_key(path), None) is not None

    def disk_os(self, path: str) -> str | None:
        """The guest OS on a registered disk, None if there is no such disk."""
        with self._lock:
            entry = self._disks.get(_disk_key(path))
            return None if entry is None else entry[1]

    def disks(self) -> Mapping[str, str]:
        """Registered disk paths → guest OS."""
        with self._lock:
            return dict(self._disks.values())

    # -- creation and settings --------------------------------------------------------
    def new_vm(
        self,
        name: str,
        memory_startup: int | str = DEFAULT_STARTUP,
        *,
        generation: int = 2,
        guest_os: str | None = None,
        profile: GuestProfile | None = None,
        vhd_path: str = "",
        notes: str = "",
        switch: str = "",
    ) -> VmRecord:
        """New-VM (§1.4): static memory of `memory_startup`; DM is enabled later with
        set_memory, and then uses Minimum 512 MB (or Startup if lower), Maximum 1 TB (or
        the version's limit), and settings' default Buffer and Priority (§8.12: common values,
        unconfirmed)."""
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidParameterError(
                f"The virtual machine name must have 1 to {MAX_NAME_LENGTH} characters.",
                target=name,
            )
        if generation not in (1, 2):
            raise InvalidParameterError(
                f"The generation '{generation}' is not valid; use 1 or 2.", target=name
            )
        os_name = _check_os(guest_os or (profile.os_name if profile else self.guest_os))
        vm_id = uuid.uuid4()
        startup = _to_mb_bytes(memory_startup, "MemoryStartupBytes")
        settings = MemorySettings(
            dynamic=False,
            startup=startup,
            minimum=min(512 * MB, startup),
            maximum=min(1 * TB, max_memory_per_vm(self.version, generation)),
        )
        self._check_settings(name, vm_id, settings, generation, ("startup",), creating=True)
        with self._lock:
            chosen = profile or self._profiles[os_name]
            guest = make_guest(self.guest_backend, name, chosen, self._root / str(vm_id))
            if switch and switch.casefold() not in (s.casefold() for s in self.switches):
                raise ObjectNotFoundError(
                    f'Hyper-V was unable to find a virtual switch with name "{switch}".',
                    target=switch,
                )
            vm = _Vm(name, generation, settings, guest, vm_id, vhd_path, notes)
            vm.switch = switch
            self._vms[vm_id] = vm
            self.balancer.add(vm.key, settings, guest.profile)
            log.debug("new VM %r (%s)", name, vm_id)
            return self._record(vm, self.clock())

    def set_memory(self, ref: VmRef, change: MemoryChange) -> VmRecord:
        """Set-VMMemory: every value `change` sets goes into ONE write and the final combination
        is validated, here and only here (§1.1). Byte values are truncated to whole MB as the
        cmdlet does."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            final_dynamic = vm.settings.dynamic if change.dynamic is None else change.dynamic
            given = change.fields()
            dm_only = tuple(SET_VMMEMORY_PARAMETERS[f] for f in _DYNAMIC_ONLY if f in given)
            if dm_only and not final_dynamic:
                raise ParameterMismatchError(vm.name, dm_only)
            sizes = tuple(f for f in SIZE_FIELDS if f in given)
            changes = {
                **given,
                **{f: _to_mb_bytes(given[f], SET_VMMEMORY_PARAMETERS[f]) for f in sizes},
            }
            new = vm.settings.with_changes(**changes)
            if new == vm.settings:
                return self._record(vm, now)
            if vm.state is VMState.Saved:
                raise VmStateError(vm.name, vm.id, "Saved", "memory cannot change in saved state")
            self._check_settings(vm.name, vm.id, new, vm.generation, sizes)
            if vm.state in _ON:
                try:
                    check_runtime_change(vm.settings, new, self.version)
                except RuntimeChangeError as exc:
                    raise RuntimeMemoryChangeError(vm.name, vm.id, exc, str(exc)) from exc
            try:
                self.balancer.update(vm.key, new)
            except NotEnoughMemory as exc:
                raise NotEnoughMemoryError(
                    vm.name, vm.id, exc.needed_mb, exc.available_mb, "resize"
                ) from exc
            vm.settings = new
            self._publish_now(vm)
            return self._record(vm, now)

    def _check_settings(
        self,
        vm_name: str,
        vm_id: uuid.UUID,
        settings: MemorySettings,
        generation: int,
        sizes: tuple[str, ...],
        *,
        creating: bool = False,
    ) -> None:
        for field in sizes:
            mb = getattr(settings, field) // MB
            if mb % 2:  # §1.9: Hyper-V's own words for an odd MB size
                reason = SettingError(field, f"{mb}MB", "memory sizes must be 2 MB aligned (§2.1)")
                detail = (
                    f"Invalid memory value assigned for '{vm_name}'. Memory values must be"
                    f" properly aligned.\nThe memory value assigned ('{mb}' MB) is not properly"
                    " aligned. Try again with a memory value that is properly aligned."
                )
                raise MemorySettingError(vm_name, vm_id, reason, detail, creating=creating)
        try:
            settings.validate(self.version, generation)
        except SettingError as exc:
            raise MemorySettingError(vm_name, vm_id, exc, str(exc), creating=creating) from exc

    def set_notes(self, ref: VmRef, notes: str) -> VmRecord:
        with self._lock:
            vm = self._find(ref)
            vm.notes = notes
            return self._record(vm, self._advance())

    def set_checkpoint_type(self, ref: VmRef, checkpoint_type: CheckpointType) -> VmRecord:
        with self._lock:
            vm = self._find(ref)
            vm.checkpoint_type = CheckpointType(checkpoint_type)
            return self._record(vm, self._advance())

    def set_smart_paging_path(self, ref: VmRef, path: str) -> VmRecord:
        with self._lock:
            vm = self._find(ref)
            vm.smart_paging_path = path
            return self._record(vm, self._advance())

    # -- power ------------------------------------------------------------------------
    def start(self, ref: VmRef) -> VmRecord:
        """Start-VM: from Off it needs Startup memory free (§3.1); from Saved, the memory it
        had; a paused VM is resumed; a VM that is on stays as it is."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            if vm.state is VMState.Off:
                self._power_on(vm, now, restart=False)
            elif vm.state is VMState.Saved:
                try:
                    self.balancer.resume(vm.key, now)
                except NotEnoughMemory as exc:
                    raise NotEnoughMemoryError(
                        vm.name, vm.id, exc.needed_mb, exc.available_mb, "start"
                    ) from exc
                vm.state = VMState.Running
                vm.running_since = now
                vm.guest.thaw()
                if vm.booting:
                    vm.guest.boot()  # saved mid-boot: still booting
                self._publish_now(vm)
            elif vm.state is VMState.Paused:
                self._resume_paused(vm, now)
            return self._record(vm, now)

    def _power_on(self, vm: _Vm, now: float, *, restart: bool) -> None:
        try:
            self.balancer.power_on(vm.key, now, restart=restart)
        except NotEnoughMemory as exc:
            vm.state = VMState.Off
            raise NotEnoughMemoryError(
                vm.name, vm.id, exc.needed_mb, exc.available_mb, "start"
            ) from exc
        # Running at once, as Start-VM returns on a real host; the guest boots until
        # boot_done_at (heartbeat NoContact, PowerShell Direct refused: real-host facts).
        vm.state = VMState.Running
        vm.booting = True
        vm.boot_done_at = now + self.timings.boot
        vm.uptime_base = 0.0
        vm.running_since = now
        vm.committed_mb = vm.guest.profile.baseline_commit_mb
        vm.guest.boot()
        if self.balancer.memory(vm.key).smart_paging_in_use:
            log.info("VM %r restarts on Smart Paging (§3.6)", vm.name)
        self._publish_now(vm)
        self._advance(now)

    def stop(self, ref: VmRef, *, turn_off: bool = False) -> VmRecord:
        """Stop-VM (graceful shutdown) or Stop-VM -TurnOff; a saved VM loses its saved state.
        Every process the guest started is stopped."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            leftovers: tuple[GuestProgram, ...] = ()
            if vm.state is not VMState.Off:
                leftovers = self._power_off(vm)
            snapshot = self._record(vm, now)
        _stop_all(leftovers, graceful=not turn_off)
        return snapshot

    def _power_off(self, vm: _Vm) -> tuple[GuestProgram, ...]:
        vm.power_cycles += 1
        vm.booting = False
        self.balancer.power_off(vm.key)
        vm.state = VMState.Off
        vm.running_since = None
        vm.uptime_base = 0.0
        return vm.guest.power_off()

    def restart(self, ref: VmRef) -> VmRecord:
        """Restart-VM: the guest reboots (its processes end) and the VM needs Startup memory
        again; if the host lacks it, Smart Paging bridges the gap (§3.6)."""
        leftovers: tuple[GuestProgram, ...] = ()
        try:
            with self._lock:
                now = self._advance()
                vm = self._find(ref)
                if vm.state not in _ON:
                    raise VmStateError(vm.name, vm.id, vm.state.name, "only a running VM restarts")
                leftovers = self._power_off(vm)
                self._power_on(vm, now, restart=True)
                return self._record(vm, now)
        finally:
            _stop_all(leftovers, graceful=False)

    def save(self, ref: VmRef) -> VmRecord:
        """Save-VM: memory goes to disk and back to the host; guest processes are frozen."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            if vm.state not in _ON:
                raise VmStateError(vm.name, vm.id, vm.state.name, "only a running VM is saved")
            self.balancer.save(vm.key)
            vm.guest.freeze()
            vm.running_since = None
            vm.uptime_base = 0.0  # a saved VM reports no uptime
            vm.state = VMState.Saved
            return self._record(vm, now)

    def pause(self, ref: VmRef) -> VmRecord:
        """Suspend-VM: memory stays assigned; guest processes are frozen."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            if vm.state not in (VMState.Running, VMState.Starting):
                raise VmStateError(vm.name, vm.id, vm.state.name, "only a running VM pauses")
            self.balancer.pause(vm.key)
            vm.guest.freeze()
            vm.state = VMState.Paused
            return self._record(vm, now)

    def resume(self, ref: VmRef) -> VmRecord:
        """Resume-VM (from Paused)."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            if vm.state is not VMState.Paused:
                raise VmStateError(vm.name, vm.id, vm.state.name, "only a paused VM resumes")
            self._resume_paused(vm, now)
            return self._record(vm, now)

    def _resume_paused(self, vm: _Vm, now: float) -> None:
        self.balancer.resume(vm.key, now)
        vm.state = VMState.Running
        vm.guest.thaw()
        if vm.booting:
            vm.guest.boot()  # it was paused mid-boot: still booting

    def remove(self, ref: VmRef) -> None:
        """Remove-VM: the VM must be off; its checkpoints go with it."""
        with self._lock:
            self._advance()
            vm = self._find(ref)
            if vm.state is not VMState.Off:
                raise VmStateError(vm.name, vm.id, vm.state.name, "turn it off before removing")
            del self._vms[vm.id]
            self.balancer.remove(vm.key)
        _stop_all(vm.guest.power_off(), graceful=False)

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self, ref: VmRef, name: str | None = None) -> CheckpointInfo:
        """Checkpoint-VM. Production (the default, §1.5) keeps no memory state; Standard keeps
        the VM's memory state (assigned, balloon and hot-add state, counters)."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            kind = vm.checkpoint_type
            if kind is CheckpointType.Disabled:
                raise CheckpointError(vm.name, "Checkpoints are disabled for this virtual machine.")
            stamp = datetime.now().astimezone()
            label = name if name is not None else f"{vm.name} - ({_hyperv_time(stamp)})"
            if not label or len(label) > MAX_NAME_LENGTH:
                raise InvalidParameterError(
                    f"The checkpoint name must have 1 to {MAX_NAME_LENGTH} characters.",
                    target=label,
                )
            booting = vm.booting and vm.state is VMState.Running
            if kind is CheckpointType.ProductionOnly and booting:
                raise CheckpointError(
                    vm.name,
                    "A production checkpoint needs the guest's integration services, which are"
                    " not running yet.",
                )
            # a Production checkpoint falls back to Standard if the guest cannot quiesce yet
            standard = kind is CheckpointType.Standard or (
                kind is CheckpointType.Production and booting
            )
            keeps_memory = standard and vm.state is not VMState.Off
            info = CheckpointInfo(
                id=uuid.uuid4(),
                name=label,
                vm_id=vm.id,
                vm_name=vm.name,
                creation_time=stamp,
                checkpoint_type=CheckpointType.Standard if standard else CheckpointType.Production,
                vm_state=vm.state,
                memory=vm.settings,
                parent_checkpoint_id=vm.parent_checkpoint,
            )
            state = self.balancer.capture(vm.key) if keeps_memory else None
            vm.checkpoints.append(_Checkpoint(info, state, vm.vhd_path))
            # The disk as it was is frozen for the checkpoint; the VM writes to a new .avhdx
            # over it, which HardDrives.Path names from now on (real-host facts).
            vm.vhd_path = self._child_disk(vm.vhd_path)
            vm.parent_checkpoint = info.id
            log.debug("checkpoint %r of %r at %.3f", label, vm.name, now)
            return info

    def checkpoints(self, ref: VmRef, pattern: str = "*") -> list[CheckpointInfo]:
        regex = wildcard_regex(pattern)
        with self._lock:
            vm = self._find(ref)
            return [cp.info for cp in vm.checkpoints if regex.match(cp.info.name)]

    def checkpoint_disks(self, ref: VmRef) -> list[str]:
        """The disks frozen for the VM's checkpoints (their HardDrives)."""
        with self._lock:
            return [cp.disk for cp in self._find(ref).checkpoints if cp.disk]

    def _find_checkpoint(self, vm: _Vm, ref: uuid.UUID | str) -> _Checkpoint:
        for cp in vm.checkpoints:
            if cp.info.id == ref or (isinstance(ref, str) and cp.info.name == ref):
                return cp
        raise CheckpointNotFoundError(str(ref))

    def restore_checkpoint(self, ref: VmRef, checkpoint: uuid.UUID | str) -> VmRecord:
        """Restore-VMCheckpoint (real-host facts). A running VM is saved first; its current
        state is discarded (processes end, its .avhdx is deleted) and the checkpoint's memory
        settings come back, on a new .avhdx over the checkpoint's disk. A Production
        checkpoint leaves the VM Off (§1.5); a Standard one of a VM that was on leaves it Saved
        with the old memory state, and a VM that was running is started again from it."""
        with self._lock:
            now = self._advance()
            vm = self._find(ref)
            cp = self._find_checkpoint(vm, checkpoint)
            was_running = vm.state in _ON
            leftovers = self._power_off(vm) if vm.state is not VMState.Off else ()
            vm.settings = cp.info.memory
            self.balancer.update(vm.key, vm.settings)
            if cp.memory_state is not None:
                phase = self.balancer.restore(vm.key, cp.memory_state, now)
                vm.state = VMState.Saved if phase is Phase.SAVED else VMState.Off
                vm.boot_done_at = now
            vm.parent_checkpoint = cp.info.id
            if cp.disk or vm.vhd_path:
                discarded = vm.vhd_path
                vm.vhd_path = self._child_disk(cp.disk)
                if discarded and discarded != cp.disk:
                    self.remove_disk(discarded)
        _stop_all(leftovers, graceful=False)
        if was_running and vm.state is VMState.Saved:
            return self.start(vm.id)
        return self.get_vm(vm.id)

    def _child_disk(self, parent: str) -> str:
        """A new .avhdx over `parent` ('' for a VM with no disk), named as Hyper-V names them:
        <parent name>_<GUID>.avhdx beside it."""
        if not parent:
            return ""
        pure = PureWindowsPath(parent)
        stem = pure.stem.split("_", 1)[0] if pure.suffix.lower() == ".avhdx" else pure.stem
        child = str(pure.with_name(f"{stem}_{str(uuid.uuid4()).upper()}.avhdx"))
        entry = self._disks.get(_disk_key(parent))
        self._disks[_disk_key(child)] = (child, entry[1] if entry else self.guest_os)
        self._parents[_disk_key(child)] = parent
        return child

    def disk_parent(self, path: str) -> str | None:
        """The parent of a differencing disk (Get-VHD's ParentPath); None if `path` is not a
        registered disk, '' if it has no parent."""
        with self._lock:
            if _disk_key(path) not in self._disks:
                return None
            return self._parents.get(_disk_key(path), "")

    def remove_checkpoint(self, ref: VmRef, checkpoint: uuid.UUID | str) -> None:
        with self._lock:
            vm = self._find(ref)
            cp = self._find_checkpoint(vm, checkpoint)
            vm.checkpoints.remove(cp)
            if vm.parent_checkpoint == cp.info.id:
                vm.parent_checkpoint = cp.info.parent_checkpoint_id
            if not vm.checkpoints:
                # The last one gone: Hyper-V merges the .avhdx chain back into the VM's disk.
                path = vm.vhd_path
                while path.lower().endswith(".avhdx") and _disk_key(path) in self._parents:
                    parent = self._parents[_disk_key(path)]
                    self.remove_disk(path)
                    path = parent
                vm.vhd_path = path

    # -- counters and views -----------------------------------------------------------
    def memory(self, ref: VmRef) -> VmMemory:
        """The balancer's full view of one VM (MB): assigned, demand, pressure, counts."""
        with self._lock:
            self._advance()
            return self.balancer.memory(self._find(ref).key)

    def vm_counters(self, ref: VmRef) -> Mapping[str, float]:
        """ "Hyper-V Dynamic Memory VM" counters of one VM (§4.1)."""
        with self._lock:
            self._advance()
            return self.balancer.counters(self._find(ref).key)

    def balancer_counters(self) -> Mapping[str, float]:
        """ "Hyper-V Dynamic Memory Balancer" counters (§4.2)."""
        with self._lock:
            self._advance()
            return self.balancer.balancer_counters()

    def guest_view(self, ref: VmRef) -> GuestView | None:
        """The memory the guest shows its programs (last published), None before first boot."""
        with self._lock:
            return self._find(ref).guest.view

    def available_memory(self) -> int:
        """Bytes left for VMs after the host reserve (§3.8)."""
        with self._lock:
            return self.balancer.available_mb() * MB

    # -- time -------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """One balancer pass: measure each running guest, feed the reports, balance, and
        publish every guest's new view."""
        with self._lock:
            now = self._advance(now)
            on = [
                vm for vm in self._vms.values() if vm.state in (VMState.Running, VMState.Starting)
            ]
        # psutil reads /proc: done without the lock so cmdlets never wait on it
        measured = [(vm, vm.guest.committed_mb()) for vm in on]
        with self._lock:
            for vm, committed in measured:
                if vm.state in (VMState.Running, VMState.Starting):
                    vm.committed_mb = committed
                    self.balancer.report(vm.key, committed)
            self.balancer.tick(now)
            views = [(vm.guest, self._view(vm)) for vm in self._vms.values() if vm.state in _ON]
        for guest, view in views:
            guest.publish(view)

    def refresh_guests(self) -> None:
        """Between balancer passes: each running guest's counters follow what its programs
        hold now, as a kernel's do; the host learns of it only at its next pass (§3.1)."""
        with self._lock:
            self._advance()
            live = (VMState.Running, VMState.Starting)
            on = [vm for vm in self._vms.values() if vm.state in live]
        measured = [(vm, vm.guest.committed_mb()) for vm in on]
        with self._lock:
            views = []
            for vm, committed in measured:
                if vm.state in live:
                    vm.committed_mb = committed
                    views.append((vm.guest, self._view(vm)))
        for guest, view in views:
            guest.publish(view)

    def _advance(self, now: float | None = None) -> float:
        """Finish boots whose time has come; returns `now`."""
        if now is None:
            now = self.clock()
        for vm in self._vms.values():
            if (
                vm.booting
                and now >= vm.boot_done_at
                and vm.state is VMState.Running
                and vm.guest.booted
            ):
                vm.booting = False
                vm.guest.ready()
        return now

    def _view(self, vm: _Vm) -> GuestView:
        assigned, high_water = self.balancer.sizes(vm.key)
        s = vm.settings
        maximum = s.maximum if s.dynamic else s.startup
        return vm.guest.profile.view(vm.committed_mb, assigned, high_water, maximum // MB)

    def _publish_now(self, vm: _Vm) -> None:
        if vm.state in _ON:
            vm.guest.publish(self._view(vm))

    def _record(self, vm: _Vm, now: float) -> VmRecord:
        mem = self.balancer.memory(vm.key)
        uptime = vm.uptime_base
        if vm.running_since is not None and vm.state in _ON:
            uptime += max(0.0, now - vm.running_since)
        return VmRecord(
            id=vm.id,
            name=vm.name,
            computer_name=self.name,
            generation=vm.generation,
            state=vm.state,
            heartbeat=_heartbeat(vm.state, vm.booting),
            uptime=timedelta(seconds=round(uptime, 3)),
            notes=vm.notes,
            vhd_path=vm.vhd_path,
            guest_os=vm.guest.os_name,
            checkpoint_type=vm.checkpoint_type,
            creation_time=vm.created,
            processor_count=1,
            version=_CONFIG_VERSION[self.version],
            memory=vm.settings,
            memory_assigned=mem.assigned_mb * MB,
            memory_demand=mem.demand_mb * MB,
            memory_status=mem.status,
            smart_paging_file_in_use=mem.smart_paging_in_use,
            smart_paging_file_path=vm.smart_paging_path,
            memory_available=mem.memory_available,
            available_memory_buffer=mem.available_memory_buffer,
            parent_checkpoint_id=vm.parent_checkpoint,
            power_cycles=vm.power_cycles,
            switch_name=vm.switch,
        )

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Turn every VM off (stopping every guest process) and delete the guests' files if
        this host created their directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            leftovers: list[GuestProgram] = []
            for vm in self._vms.values():
                if vm.state is not VMState.Off:
                    leftovers.extend(self._power_off(vm))
                else:
                    leftovers.extend(vm.guest.power_off())
        _stop_all(tuple(leftovers), graceful=False)
        if self._owns_root:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> EmulatedHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostDriver:
    """Ticks a host's balancer in real time at its timings' cadence, on a daemon thread, and
    refreshes its guests' counters in between (at `Timings.guest_refresh`)."""

    def __init__(self, host: EmulatedHost, interval: float | None = None) -> None:
        self.host = host
        self.interval = interval if interval is not None else host.timings.tick
        self.refresh = min(self.interval, host.timings.guest_refresh)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.last_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> HostDriver:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"dmh-host-driver-{self.host.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                if time.monotonic() >= next_tick - 0.01:  # a wait may wake a little early
                    next_tick = time.monotonic() + self.interval
                    self.host.tick()
                    self.ticks += 1
                else:
                    self.host.refresh_guests()
            except Exception as exc:  # keep driving: one bad tick must not freeze the host
                if self.last_error is None or type(exc) is not type(self.last_error):
                    log.exception("balancer tick failed")
                self.last_error = exc
            if self._stop.wait(max(0.0, min(self.refresh, next_tick - time.monotonic()))):
                return

    def __enter__(self) -> HostDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _heartbeat(state: VMState, booting: bool) -> Heartbeat | None:
    if state is VMState.Running:
        return Heartbeat.NoContact if booting else Heartbeat.OkApplicationsUnknown
    if state is VMState.Starting:
        return Heartbeat.NoContact
    if state is VMState.Paused:
        return Heartbeat.Paused
    return None


def _disk_key(path: str) -> str:
    return path.replace("/", "\\").casefold()


def _check_os(os_name: str) -> str:
    name = os_name.lower()
    if name not in ("windows", "linux"):
        raise InvalidParameterError(
            f"Unknown guest OS '{os_name}'; use 'windows' or 'linux'.", target=os_name
        )
    return name


def _to_mb_bytes(size: int | str, label: str) -> int:
    """Bytes → whole MB → bytes, like the cmdlet's integer division by 2^20 (§1.1)."""
    if isinstance(size, str):
        try:
            return parse_size(size, label)
        except SettingError as exc:
            raise InvalidParameterError(str(exc), target=size, reason=exc) from exc
    if isinstance(size, bool) or size < 0:
        raise ArgumentValidationError(label, size, f"The value {size} is not valid.")
    return size // MB * MB


def _hyperv_time(stamp: datetime) -> str:
    """Checkpoint default name time: 'M/d/yyyy - h:mm:ss tt' (en-US)."""
    hour = stamp.hour % 12 or 12
    suffix = "AM" if stamp.hour < 12 else "PM"
    return (
        f"{stamp.month}/{stamp.day}/{stamp.year} - {hour}:{stamp.minute:02d}:"
        f"{stamp.second:02d} {suffix}"
    )


def _stop_all(processes: tuple[GuestProgram, ...], *, graceful: bool) -> None:
    for proc in processes:
        proc.stop(timeout=5.0 if graceful else 1.0, graceful=graceful)


__all__ = [
    "CheckpointInfo",
    "CheckpointType",
    "EmulatedHost",
    "Heartbeat",
    "HostDriver",
    "VMState",
    "VmRecord",
    "default_reserve",
]
