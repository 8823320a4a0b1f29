"""A Linux guest that is a real QEMU VM, with the face the emulated host drives
(guestface.GuestBackend: boot, publish, committed_mb, view, start_process, power_off, ...).

The DM model drives the real VM: the assigned memory the balancer publishes becomes QMP
requests (hot-add: virtio-mem requested-size in 2 MB blocks, never taken back while the VM
runs, as Hyper-V never hot-removes; removal: the virtio-balloon target); the demand the
balancer sees is the guest kernel's own Committed_AS; the guest's view (MemTotal,
MemAvailable, ...) is what its kernel says and its assigned memory what QMP says the VM has.
OOM kills in the guest become memory events like the process backend's.

Longer than ~500 lines on purpose: it is the whole face a guest shows the host (life
cycle, memory, files, programs, SSH sessions), each part a thin call into launcher, agent,
process and integration, and splitting the face would split the one lock that orders them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from harness.emulator.errors import GuestError
from harness.emulator.guestenv import ENV_NAME, ENV_OS, guest_environment
from harness.emulator.guestface import (
    OOM_KILL,
    GuestMemoryEvent,
    GuestState,
    cannot_run,
    copy_in,
    no_program,
    not_found,
    not_running,
    path_parts,
)
from harness.emulator.guestview import GuestProfile, GuestView
from harness.emulator.integration import LinuxIntegration
from harness.emulator.qemu.agent import AgentLaunch
from harness.emulator.qemu.errors import QemuError, QemuUnsupportedError
from harness.emulator.qemu.integration import publish_integration
from harness.emulator.qemu.launcher import BLOCK_MB, GUEST_SCRATCH, QemuVm, VmSpec
from harness.emulator.qemu.process import QemuProgram
from harness.errors import SettingError

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # s between reads of the guest's meminfo and the VM's sizes
# The idle OS's commit: a distribution's services commit memory (LinuxProfile's baseline);
# a busybox initramfs commits almost none. A real process in the guest reserves it
# (untouched anonymous memory: Committed_AS rises, RAM is not used), so the demand the host
# sees, and the scenarios built on it, are those of a full guest OS.
IDLE_OS = (
    "import mmap, sys, time\n"
    "m = mmap.mmap(-1, int(sys.argv[1]) << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
    "time.sleep(1e9)\n"
)
AGENT_WAIT = 1.0  # s the watch waits for the agent before it drives the VM again
LIVE_READ_WAIT = 0.5  # s a view read waits for the guest before it takes the last reading
IDLE_KERNEL_COMMIT_MB = 50  # what the initramfs guest commits on its own (measured)
HOTPLUG_CAP_MB = 16 * 1024  # the virtio-mem region's largest size (Maximum may be 1 TB)


class QemuGuest:
    """One VM's Linux guest as a QEMU VM. Thread-safe; the VM boots on a thread of its own
    (6–9 s under TCG), so the host's lock is never held for a boot."""

    def __init__(self, name: str, profile: GuestProfile, shares: Sequence[str] = ()) -> None:
        if profile.os_name != "linux":
            raise QemuUnsupportedError(f"{profile.os_name} guests", vm=name, hint="Use Linux.")
        self.name = name
        self.profile = profile
        self._shares = tuple(shares)
        self._lock = threading.RLock()
        self._state = GuestState.OFF
        self._vm: QemuVm | None = None
        self._boot_error: QemuError | None = None
        self._booted = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._programs: list[QemuProgram] = []
        self._seq = 0
        self._published: GuestView | None = None
        self._real: GuestView | None = None
        self._meminfo: dict[str, int] = {}
        self._events: list[GuestMemoryEvent] = []
        self._event_index = 0
        self._plugged_mb = 0
        self._requested: tuple[int, int] | None = None  # (plugged, balloon) last asked for
        self._target_mb: int | None = None
        self._apply_lock = threading.Lock()
        self._actual_mb = 0
        self.integration = LinuxIntegration(auto_online="online_movable")
        self._kvp_pid: int | None = None

    # -- life cycle -------------------------------------------------------------------
    @property
    def state(self) -> GuestState:
        return self._state

    @property
    def os_name(self) -> str:
        return self.profile.os_name

    @property
    def vm(self) -> QemuVm | None:
        return self._vm

    @property
    def booted(self) -> bool:
        """The kernel is up and its agent answered (or the boot failed: then the host
        finishes the boot and the first use of the guest raises the boot error)."""
        return self._booted.is_set()

    def boot(self) -> None:
        """Power on: the VM is launched when the host publishes its first view (which
        carries its startup and maximum memory)."""
        with self._lock:
            self._state = GuestState.BOOTING
            self._generation += 1
            self._booted.clear()
            self._boot_error = None
            self._stop.clear()
            self._requested = None

    def ready(self) -> None:
        with self._lock:
            if self._state is GuestState.BOOTING:
                self._state = GuestState.RUNNING

    def freeze(self) -> None:
        """Paused or saved: the VM's CPUs stop (QMP stop)."""
        with self._lock:
            vm, self._state = self._vm, GuestState.FROZEN
        if vm is not None:
            with contextlib.suppress(QemuError):
                vm.qmp.execute("stop")

    def thaw(self) -> None:
        with self._lock:
            vm = self._vm
            if vm is None and self._state is not GuestState.FROZEN:
                # From a checkpoint's saved state: QEMU keeps no such state here; boot afresh.
                log.warning("guest %s: no saved QEMU state to resume; booting afresh", self.name)
                self.boot()
                return
            self._state = GuestState.RUNNING
        if vm is not None:
            with contextlib.suppress(QemuError):
                vm.qmp.execute("cont")

    def power_off(self) -> tuple[QemuProgram, ...]:
        """Off: the VM stops (its programs die with it) and its scratch directory goes. No
        host processes are left for the host to stop."""
        with self._lock:
            self._state = GuestState.OFF
            self._generation += 1
            self._stop.set()
            vm, self._vm = self._vm, None
            programs, self._programs = self._programs, []
            self._real = self._published = None
            self._target_mb = None
        for program in programs:
            program.vm_stopped()
        if vm is not None:
            threading.Thread(target=vm.stop, name=f"dmh-qemu-stop-{self.name}").start()
        return ()

    def shutdown(self, *, graceful: bool = True, timeout: float = 5.0) -> None:
        self.power_off()

    def _launch(self, generation: int, spec: VmSpec) -> None:
        try:
            vm = QemuVm(spec)
        except Exception as exc:  # any failure is a boot failure the host reports, not a hang
            error = exc if isinstance(exc, QemuError) else QemuError(str(exc), vm=self.name)
            log.error("guest %s did not boot: %s", self.name, error.message)
            with self._lock:
                self._boot_error = error
            self._booted.set()
            return
        with self._lock:
            if generation != self._generation:  # turned off while it booted
                stale: QemuVm | None = vm
            else:
                stale, self._vm = None, vm
                self._plugged_mb = 0
        if stale is not None:
            stale.stop()
            return
        self._start_idle_os(vm)
        with self._lock:
            self._kvp_pid = None
        self._publish_integration(vm)
        self._booted.set()
        threading.Thread(
            target=self._watch, args=(vm, generation), name=f"dmh-qemu-{self.name}", daemon=True
        ).start()

    def _start_idle_os(self, vm: QemuVm) -> None:
        idle_mb = max(0, self.profile.baseline_commit_mb - IDLE_KERNEL_COMMIT_MB)
        if not idle_mb:
            return
        try:
            vm.agent.request(
                "spawn", 30.0, argv=["python3", "-c", IDLE_OS, str(idle_mb)], env={},
                cwd="/", stdout="/dev/null", stderr="/dev/null",
            )  # fmt: skip
        except QemuError as exc:
            log.warning("guest %s: no idle OS commit (%s)", self.name, exc.message)

    def set_integration(self, integration: LinuxIntegration) -> None:
        """Change what the guest's integration services publish, seen at once in the guest."""
        with self._lock:
            self.integration = integration
            vm = self._vm
        if vm is not None and self._booted.is_set():
            self._publish_integration(vm)

    def _publish_integration(self, vm: QemuVm) -> None:
        with self._lock:
            integration, kvp = self.integration, self._kvp_pid
        try:
            kvp = publish_integration(vm, integration, kvp)
        except QemuError as exc:
            log.warning("guest %s: integration facts not published (%s)", self.name, exc.message)
            return
        with self._lock:
            self._kvp_pid = kvp

    def launch(self, argv: Sequence[str]) -> AgentLaunch:
        """How `argv` runs in the guest with pipes its caller holds (an SSH session's shell):
        through the agent, in the scratch directory (the guest user's home)."""
        with self._lock:
            if self._state is not GuestState.RUNNING:
                raise not_running(self.name)
        vm = self.wait_booted()
        env = self._environment({"SHELL": "/bin/sh", "USER": "guest", "LOGNAME": "guest"})
        return AgentLaunch(vm.agent, list(argv), env, GUEST_SCRATCH)

    def _environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """What the process backend's guest programs get (the emulator's allow-listed
        variables, PATH included: the shared Python environment is where it is here), with
        the home and temporary directory the guest's own."""
        explicit = {ENV_OS: "linux", ENV_NAME: self.name, **dict(env or {})}
        full = guest_environment(explicit)
        if "TMPDIR" not in explicit:
            full.pop("TMPDIR", None)
        if "HOME" not in explicit:
            full["HOME"] = GUEST_SCRATCH
        return full

    def wait_booted(self, timeout: float = 180.0) -> QemuVm:
        """The running VM, once its agent answers; the boot's error if it failed."""
        if not self._booted.wait(timeout):
            raise QemuError(f"the VM did not boot within {timeout} s", vm=self.name, stage="boot")
        with self._lock:
            if self._boot_error is not None:
                raise self._boot_error
            if self._vm is None:
                raise GuestError(
                    f"The virtual machine '{self.name}' is not running; it cannot run programs.",
                    target=self.name,
                    category="InvalidOperation",
                    error_id="InvalidState",
                )
            return self._vm

    # -- memory: the model drives the VM, the VM's truth comes back ---------------------
    def publish(self, view: GuestView) -> None:
        """The host's view after a balancer pass: launch the VM on the first one, else ask
        the VM for the assigned memory the model decided."""
        with self._lock:
            first = self._published is None and self._vm is None and not self._booted.is_set()
            self._published = view
            self._target_mb = view.assigned_mb
            launching = first and self._state is not GuestState.OFF
            generation = self._generation
        if launching:
            base = view.assigned_mb
            hotplug = max(0, min(view.max_memory_mb - base, HOTPLUG_CAP_MB))
            hotplug -= hotplug % BLOCK_MB
            spec = VmSpec(self.name, base, hotplug, shares=self._shares)
            threading.Thread(
                target=self._launch,
                args=(generation, spec),
                name=f"dmh-qemu-boot-{self.name}",
                daemon=True,
            ).start()

    def _apply(self, vm: QemuVm) -> None:
        with self._apply_lock:
            self._apply_locked(vm)

    def _apply_locked(self, vm: QemuVm) -> None:
        target = self._target_mb
        if target is None:
            return
        base, room = vm.spec.base_mb, vm.spec.hotplug_mb
        # Hot-added memory stays while the VM runs; removal is the balloon's (§3.4). But
        # QEMU's balloon target counts boot memory only and must be above zero, so a removal
        # deeper than the boot memory falls to virtio-mem unplug: the guest's MemTotal falls
        # either way, and a real kernel unplugs only what it can free (recipe §3).
        plugged = min(room, max(self._plugged_mb, target - base))
        if target - plugged < BLOCK_MB:
            plugged = max(0, target - BLOCK_MB)
        plugged += plugged % BLOCK_MB
        wanted = (plugged, min(max(BLOCK_MB, target - plugged), base))
        if wanted == self._requested:
            return
        if wanted[0] != (self._requested or (0, 0))[0]:
            vm.qmp.request_plugged(wanted[0])
        if self._requested is None or wanted[1] != self._requested[1]:
            vm.qmp.balloon(wanted[1])
        self._requested = wanted
        log.debug("guest %s: asked for %s MB plugged, balloon target %s MB", self.name, *wanted)

    def _watch(self, vm: QemuVm, generation: int) -> None:
        """Until power-off: apply the model's target, read the VM's sizes and the guest's
        meminfo and OOM kills."""
        pending: concurrent.futures.Future[dict[str, Any]] | None = None
        while not self._stop.is_set() and generation == self._generation:
            try:
                # The agent reads the guest while QMP answers: one round trip per pass.
                if pending is None:
                    pending = vm.agent.send("memory", {"since": self._event_index})
                self._apply(vm)
                self._plugged_mb = vm.qmp.plugged_mb() if vm.spec.hotplug_mb else 0
                actual = vm.qmp.balloon_actual_mb()
                answer = pending.result(AGENT_WAIT)
            except concurrent.futures.TimeoutError:
                # A guest short of memory answers late (the agent is one of its processes):
                # the host keeps driving the VM through QMP and keeps waiting for the answer.
                log.debug("guest %s: the agent is slow to answer", self.name)
                continue
            except QemuError as exc:
                if generation == self._generation and not self._stop.is_set():
                    log.warning("guest %s: lost the VM: %s", self.name, exc)
                return
            pending = None
            self._update(vm, actual, answer)
            self._stop.wait(POLL_INTERVAL)

    def _update(self, vm: QemuVm, actual_mb: int, answer: Mapping[str, object]) -> None:
        meminfo = {str(k): int(v) for k, v in dict(answer["meminfo"]).items()}  # type: ignore[call-overload]
        events = [
            GuestMemoryEvent(OOM_KILL, str(e["name"]), int(e["owner"]), float(e["at"]))
            for e in answer["events"]  # type: ignore[attr-defined]
        ]
        for event in events:
            log.warning("guest %s: %s", self.name, event.message)
        with self._lock:
            self._meminfo = meminfo
            self._events.extend(events)
            self._event_index = int(answer["next"])  # type: ignore[call-overload]
            self._actual_mb = actual_mb
            self._real = self._make_view(vm, meminfo)

    def _make_view(self, vm: QemuVm, meminfo: Mapping[str, int]) -> GuestView:
        published, kb = self._published, 1024
        return GuestView(
            os_name="linux",
            total_mb=meminfo["MemTotal"] // kb,
            available_mb=meminfo["MemAvailable"] // kb,
            free_mb=meminfo["MemFree"] // kb,
            committed_mb=meminfo["Committed_AS"] // kb,
            commit_limit_mb=meminfo["CommitLimit"] // kb,
            max_memory_mb=published.max_memory_mb if published else 0,
            assigned_mb=self._actual_mb + self._plugged_mb,
            ballooned_mb=vm.spec.base_mb - self._actual_mb,
            cached_mb=meminfo.get("Cached", 0) // kb,
            anon_mb=meminfo.get("AnonPages", 0) // kb,
        )

    def committed_mb(self) -> int:
        """The guest kernel's Committed_AS (the profile's idle figure until it has booted)."""
        with self._lock:
            if "Committed_AS" in self._meminfo and self._vm is not None:
                return self._meminfo["Committed_AS"] // 1024
        return self.profile.baseline_commit_mb

    @property
    def view(self) -> GuestView | None:
        """What the guest kernel shows its programs (the host's model until it is up), read
        from the guest now: a sample must never be older than what the app itself read."""
        with self._lock:
            vm, cached = self._vm, self._real if self._real is not None else self._published
            live = vm is not None and self._real is not None and self._state is GuestState.RUNNING
        if vm is None or not live:
            return cached
        try:
            answer = vm.agent.request("memory", LIVE_READ_WAIT, since=1 << 30)
        except QemuError:
            return cached  # busy or going away: the last reading
        meminfo = {str(k): int(v) for k, v in answer["meminfo"].items()}
        with self._lock:
            return self._make_view(vm, meminfo)

    @property
    def synthetic_mb(self) -> int:
        return 0

    @synthetic_mb.setter
    def synthetic_mb(self, value: int) -> None:
        if value < 0:
            raise SettingError("synthetic_mb", value, "must be ≥ 0")
        if value:
            raise QemuUnsupportedError(
                "a synthetic load", vm=self.name, hint="Start a program that allocates memory."
            )

    @property
    def warnings(self) -> tuple[str, ...]:
        return ()

    def memory_events(self) -> tuple[GuestMemoryEvent, ...]:
        with self._lock:
            return tuple(self._events)

    def meminfo(self) -> Mapping[str, int]:
        """The guest's /proc/meminfo (kB) as last read."""
        with self._lock:
            return dict(self._meminfo)

    # -- files ------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The host side of the guest's scratch directory (/dmh in the guest)."""
        return self.wait_booted().share_dir

    def host_path(self, guest_path: str) -> Path:
        """Where a guest path lives on the host: in the scratch directory (/dmh in the guest),
        laid out as the process backend lays out its guest directory (relative paths at its
        root, 'C:\\x' under C/); absolute Linux paths elsewhere are the guest's read-only
        shares."""
        return self.directory.joinpath(*path_parts(guest_path, GUEST_SCRATCH))

    def _guest_cwd(self, cwd: str | None) -> str:
        """The working directory in the guest: a shared absolute Linux path as it is, any
        other in the scratch directory (made if missing)."""
        posix = PurePosixPath(cwd or ".")
        if cwd and posix.is_absolute() and not posix.is_relative_to(GUEST_SCRATCH):
            return cwd
        parts = path_parts(cwd, GUEST_SCRATCH) if cwd else []
        self.directory.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        return str(PurePosixPath(GUEST_SCRATCH, *parts))

    def copy_in(self, source: str | os.PathLike[str], destination: str) -> Path:
        return copy_in(self.host_path, source, destination)

    # -- programs ---------------------------------------------------------------------
    def processes(self) -> tuple[QemuProgram, ...]:
        with self._lock:
            return tuple(self._programs)

    def pids(self) -> list[int]:
        """Guest pids of the programs started here (they are not host processes)."""
        return sorted(p.pid for p in self.processes() if p.running)

    def start_process(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = False,
        merge_output: bool = False,
    ) -> QemuProgram:
        """Start a program in the guest through the agent; its output goes to files in the
        scratch directory, which the host reads directly."""
        if not argv:
            raise no_program()
        if stdin:
            raise QemuUnsupportedError(
                "stdin for guest programs", vm=self.name, hint="Pass input as files."
            )
        with self._lock:
            if self._state is not GuestState.RUNNING:
                raise cannot_run(self.name, self._state)
        vm = self.wait_booted()
        guest_cwd = self._guest_cwd(cwd)
        with self._lock:
            self._seq += 1
            stem = f".dmh/proc-{self._seq:04d}"
        (vm.share_dir / ".dmh").mkdir(exist_ok=True)
        out, err = f"{stem}.stdout", f"{stem}.stdout" if merge_output else f"{stem}.stderr"
        full_env = self._environment(env)
        answer = vm.agent.request(
            "spawn",
            30.0,
            argv=list(argv),
            env=full_env,
            cwd=guest_cwd,
            stdout=f"{GUEST_SCRATCH}/{out}",
            stderr=f"{GUEST_SCRATCH}/{err}",
        )
        if "missing" in answer:
            raise not_found(str(argv[0]))
        program = QemuProgram(
            vm.agent, int(answer["pid"]), argv, vm.share_dir / out, vm.share_dir / err
        )
        with self._lock:
            self._programs.append(program)
        log.debug("guest %s started pid %s: %s", self.name, program.pid, list(argv))
        return program

    def run(
        self, argv: Sequence[str], *, stdin: str = "", timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Run a command in the guest to completion: (rc, stdout, stderr)."""
        result = self.wait_booted().agent.exec(
            argv, stdin=stdin, timeout=timeout, cwd=GUEST_SCRATCH
        )
        return result.rc, result.stdout, result.stderr

    def signal_all(self, sig: int = signal.SIGKILL) -> None:
        for program in self.processes():
            program.signal(sig)

    # -- direct levers (tests and benchmarks: the real VM without the model) ------------
    def request_memory(self, assigned_mb: int) -> None:
        """Ask the VM for this much memory now, as a balancer decision would."""
        with self._lock:
            self._target_mb = assigned_mb
        self._apply(self.wait_booted())

    def wait_memtotal(self, predicate: Callable[[int], bool], timeout: float) -> float:
        """Seconds until the guest's MemTotal (MB, read through the agent) satisfies
        `predicate`; raises QemuError after `timeout`."""
        vm = self.wait_booted()
        started = time.monotonic()
        while True:
            total = int(vm.agent.request("memory", 10.0, since=1 << 30)["meminfo"]["MemTotal"])
            if predicate(total // 1024):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise QemuError(
                    f"MemTotal stayed at {total // 1024} MB for {timeout} s", vm=self.name
                )
