"""The emulated guest: a VM's guest OS as real local processes in their own namespaces and
memory cgroup, and the guest's memory view published where the programs it runs look for it
(/proc/meminfo, node meminfo, sysinfo() through the preload library, the cgroup files).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

from harness.emulator.guestenv import ENV_NAME, ENV_OS, guest_environment
from harness.emulator.guestface import (
    GuestLaunch,
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
from harness.emulator.integration import KVP_DAEMON, LinuxIntegration
from harness.emulator.process.guestmem import GuestMemory
from harness.emulator.process.guestproc import LocalProcess
from harness.emulator.process.sandbox.cgroup import Cgroup
from harness.emulator.process.sandbox.containment import GuestSandbox, support
from harness.emulator.process.sandbox.overlay import (
    ENV_COUNTERS,
    ENV_MEMINFO,
    Overlay,
    meminfo_overlay,
    overlay_command,
)
from harness.emulator.process.sandbox.preload import library
from harness.errors import SettingError

log = logging.getLogger(__name__)

ENV_DIR = "DMH_GUEST_DIR"
ENV_OVERLAY = "DMH_GUEST_OVERLAY"  # "1" when /proc/meminfo is the guest's own view


# -- the guest ----------------------------------------------------------------------------
class EmulatedGuest:
    """One VM's guest OS. Thread-safe. Its directory is created on first use, and its sandbox
    (namespaces, memory cgroup) when its first process starts, so guests that never run a
    process (benchmarks, balancer tests) cost no files and no processes."""

    def __init__(self, name: str, profile: GuestProfile, directory: Path) -> None:
        self.name = name
        self.profile = profile
        self._dir = directory
        self._created = False
        self._lock = threading.RLock()
        self._state = GuestState.OFF
        self._processes: list[LocalProcess] = []
        self._seq = 0
        self._synthetic_mb = 0
        self._view: GuestView | None = None
        self.memory = GuestMemory(name, profile)
        # What a Linux guest's integration services publish (/sys/module/hv_balloon, ...).
        self.integration: LinuxIntegration | None = (
            LinuxIntegration() if profile.os_name == "linux" else None
        )

    # -- what the host drives ---------------------------------------------------------
    @property
    def state(self) -> GuestState:
        return self._state

    @property
    def os_name(self) -> str:
        return self.profile.os_name

    @property
    def booted(self) -> bool:
        """Its OS is up once the host's boot time has passed (a QEMU guest's: once its agent
        answers); the host finishes the boot only then."""
        return True

    def boot(self) -> None:
        with self._lock:
            self._state = GuestState.BOOTING

    def ready(self) -> None:
        with self._lock:
            if self._state is GuestState.BOOTING:
                self._state = GuestState.RUNNING

    def freeze(self) -> None:
        """The VM paused or saved: its processes stop where they are."""
        with self._lock:
            if self._state is GuestState.RUNNING:
                for proc in self._processes:
                    proc.signal(signal.SIGSTOP)
            self._state = GuestState.FROZEN

    def thaw(self) -> None:
        """Running again: after a pause or save, or from a checkpoint's saved state (then
        with no processes: they are not part of a checkpoint)."""
        with self._lock:
            if self._state is GuestState.FROZEN:
                for proc in self._processes:
                    proc.signal(signal.SIGCONT)
            self._state = GuestState.RUNNING

    def power_off(self) -> tuple[LocalProcess, ...]:
        """The VM is off: refuse new processes at once and hand back those still to stop
        (the host stops them outside its lock). The guest's sandbox, and with it anything
        left in it, goes once the last of them has stopped."""
        with self._lock:
            self._state = GuestState.OFF
            processes, self._processes = tuple(self._processes), []
            self._synthetic_mb = 0
            sandbox = self.memory.release()
        if sandbox is not None:
            _close_after(sandbox, processes)
        return processes

    def shutdown(self, *, graceful: bool = True, timeout: float = 5.0) -> None:
        """The VM stopped: every process it started stops too, descendants included."""
        for proc in self.power_off():
            proc.stop(timeout, graceful=graceful)

    # -- memory -----------------------------------------------------------------------
    @property
    def synthetic_mb(self) -> int:
        """Commit added without a process (a synthetic load for benchmarks and tests)."""
        return self._synthetic_mb

    @synthetic_mb.setter
    def synthetic_mb(self, value: int) -> None:
        if value < 0:
            raise SettingError("synthetic_mb", value, "must be ≥ 0")
        self._synthetic_mb = value

    def _fixed_mb(self) -> int:
        """Memory of the idle OS and the synthetic load: held, but by no real process."""
        return self.profile.baseline_commit_mb + self._synthetic_mb

    def committed_mb(self) -> int:
        """The guest's commit (Windows Committed Bytes, Linux Committed_AS): idle OS +
        synthetic load + its processes' private writable mappings (measured at each call,
        which is the balancer tick)."""
        with self._lock:
            processes = list(self._processes)
        return self._fixed_mb() + self.memory.measure(processes).commit_mb

    @property
    def view(self) -> GuestView | None:
        return self._view

    @property
    def warnings(self) -> tuple[str, ...]:
        """What is not emulated on this machine, e.g. "guest memory not enforced: …"."""
        return self.memory.warnings

    def memory_events(self) -> tuple[GuestMemoryEvent, ...]:
        """Every time the guest OS acted because memory ran out (OOM kill, commit limit)."""
        return self.memory.events()

    def publish(self, view: GuestView) -> None:
        """Record the guest's current view, completed with what its processes hold (resident
        memory, page cache); rewrite its files; keep its memory limit on its size."""
        measured = self.memory.measured
        view = self.profile.view(
            view.committed_mb,
            view.assigned_mb,
            view.total_mb,
            view.max_memory_mb,
            anon_mb=self._fixed_mb() + measured.anon_mb,
            cache_mb=measured.cache_mb,
        )
        with self._lock:
            processes = list(self._processes)
            if view != self._view:
                self._view = view
                if self._created:
                    try:
                        self._write_view(view)
                    except OSError as exc:  # e.g. the host was closed and its files removed
                        log.debug("guest %s: cannot publish its view: %s", self.name, exc)
        if self._state is not GuestState.OFF:
            self.memory.enforce(view, self._fixed_mb(), processes)

    # -- files ------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The guest's file system root on the host (created on first use)."""
        with self._lock:
            if not self._created:
                _reap_stale_directories()
                (self._dir / ".dmh").mkdir(parents=True, exist_ok=True)
                me = psutil.Process()
                (self._dir / ".dmh" / "owner").write_text(f"{me.pid} {me.create_time()!r}\n")
                self._created = True
                if self._view is not None:
                    self._write_view(self._view)
            return self._dir

    @property
    def meminfo_path(self) -> Path:
        return self.directory / ".dmh" / "meminfo"

    @property
    def counters_path(self) -> Path:
        return self.directory / ".dmh" / "counters.json"

    def _node_path(self, node: int) -> Path:
        return self._dir / ".dmh" / f"node{node}-meminfo"

    def _write_view(self, view: GuestView) -> None:
        meta = self._dir / ".dmh"
        _rewrite(meta / "meminfo", view.meminfo().encode())
        counters = json.dumps(view.counters(), indent=1, sort_keys=True).encode() + b"\n"
        _replace(meta / "counters.json", counters)
        for node in _NODES:
            # One node holds the guest's memory; any other the machine has shows none.
            text = view.node_meminfo(node) if node == _NODES[0] else _empty_node(view, node)
            _rewrite(self._node_path(node), text.encode())

    def _overlays(self) -> list[tuple[Path, str]]:
        overlays = [(self.meminfo_path, "/proc/meminfo")]
        for node in _NODES:
            overlays.append((self._node_path(node), f"{_NODE_DIR}/node{node}/meminfo"))
        if self.integration is not None:
            overlays += self.integration.publish(self._dir / ".dmh" / "integration")
        return overlays

    def set_integration(self, integration: LinuxIntegration) -> None:
        """Change what the guest's integration services publish (seen at once: the files
        are bind-mounted) and start or stop its KVP daemon to match."""
        with self._lock:
            self.integration = integration
            if self._created:
                integration.publish(self._dir / ".dmh" / "integration")
        if self._state is GuestState.RUNNING:
            self._ensure_daemons()

    def host_path(self, guest_path: str) -> Path:
        """Where a guest path ('C:\\app\\x.py', '/opt/x', 'rel/x') lives on the host."""
        return self.directory.joinpath(*path_parts(guest_path))

    def copy_in(self, source: str | os.PathLike[str], destination: str) -> Path:
        """Copy a host file into the guest (like Copy-VMFile -CreateFullPath, §1.7)."""
        return copy_in(self.host_path, source, destination)

    # -- processes --------------------------------------------------------------------
    def processes(self) -> tuple[LocalProcess, ...]:
        with self._lock:
            return tuple(self._processes)

    def pids(self) -> list[int]:
        """Host pids of every process running in the guest, detached daemons included."""
        with self._lock:
            processes = list(self._processes)
        found = set(self.memory.pids())
        for proc in processes:
            found.update(p.pid for p in proc.tree())
        return sorted(found)

    def launch(self, argv: Sequence[str]) -> GuestLaunch:
        """How `argv` runs inside this guest with pipes its caller holds (an SSH session's
        shell): in the guest's namespaces and memory cgroup, with the guest's environment,
        in the guest's directory (its home)."""
        with self._lock:
            if self._state is not GuestState.RUNNING:
                raise not_running(self.name)
            home = self.directory
            sandbox, overlay, env = self._contained(None)
            env.update({"HOME": str(home), "SHELL": "/bin/sh", "USER": "guest", "LOGNAME": "guest"})
            command, _ = self._command(argv, sandbox, overlay, home)
        self._ensure_daemons()
        return GuestLaunch(command, env, home)

    def _contained(
        self, env: Mapping[str, str] | None
    ) -> tuple[GuestSandbox, Overlay, dict[str, str]]:
        """The guest's sandbox (made for its first program), how its programs see its
        meminfo, and the environment they start with. Called under the lock."""
        published = self.meminfo_path.exists()
        sandbox = self.memory.sandbox(
            self._overlays() if published else [], self._view, self._fixed_mb()
        )
        overlay = Overlay.NONE
        if published:
            overlay = Overlay.ROOT if sandbox.namespaced else meminfo_overlay()
        return sandbox, overlay, self._environment(env, overlay)

    def _command(
        self, argv: Sequence[str], sandbox: GuestSandbox, overlay: Overlay, workdir: Path
    ) -> tuple[list[str], Cgroup | None]:
        """The command line that runs `argv` in the guest, in a memory group of its own: what
        each program or session starts (the app, a load) may grow to the guest's size, not
        share one limit."""
        command = list(argv)
        if overlay is not Overlay.NONE and not sandbox.namespaced:
            command = [*overlay_command(overlay, self.meminfo_path), *command]
        return sandbox.command(command, workdir)

    def _ensure_daemons(self) -> None:
        """A Linux guest's KVP daemon runs when its integration says so (§1.8): a process
        named hv_kvp_daemon, as `ps` and /proc/PID/comm show it."""
        if self.integration is None:
            return
        daemon = self._dir / ".dmh" / "integration" / "bin" / KVP_DAEMON
        running = [p for p in self.processes() if p.argv[:1] == (str(daemon),) and p.running]
        if self.integration.kvp_daemon and not running and daemon.exists():
            self.start_process([str(daemon), "infinity"])
        elif not self.integration.kvp_daemon:
            for proc in running:
                proc.stop(1.0, graceful=False)

    def _environment(self, env: Mapping[str, str] | None, overlay: Overlay) -> dict[str, str]:
        full_env = guest_environment(env)
        preload = library().path
        if preload is not None:
            inherited = full_env.get("LD_PRELOAD", "")
            full_env["LD_PRELOAD"] = f"{preload} {inherited}".strip()
        full_env.update(
            {
                ENV_MEMINFO: str(self.meminfo_path),
                ENV_COUNTERS: str(self.counters_path),
                ENV_OS: self.os_name,
                ENV_DIR: str(self.directory),
                ENV_NAME: self.name,
                ENV_OVERLAY: "0" if overlay is Overlay.NONE else "1",
            }
        )
        return full_env

    def start_process(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = False,
        merge_output: bool = False,
    ) -> LocalProcess:
        """Start a real local process in this guest, with the guest's memory view in its
        environment and, where the OS allows, as its /proc/meminfo. Its stdout and stderr
        go to files in the guest's directory (one file if `merge_output`); `stdin=True`
        gives it a pipe to `LocalProcess.send` to."""
        if not argv:
            raise no_program()
        with self._lock:
            if self._state is not GuestState.RUNNING:
                raise cannot_run(self.name, self._state)
            workdir = self.host_path(cwd) if cwd else self.directory
            workdir.mkdir(parents=True, exist_ok=True)
            sandbox, overlay, full_env = self._contained(env)
            program = _resolve(argv[0], full_env, workdir)
            self._seq += 1
            stem = self.directory / ".dmh" / f"proc-{self._seq:04d}"
            out_path, err_path = stem.with_suffix(".stdout"), stem.with_suffix(".stderr")
            command, cgroup = self._command([program, *argv[1:]], sandbox, overlay, workdir)
            if merge_output:
                err_path = out_path
            with open(out_path, "wb") as out, open(err_path, "ab") as err:
                stdin_arg: int | IO[bytes] = subprocess.PIPE if stdin else subprocess.DEVNULL
                popen = subprocess.Popen(
                    command,
                    stdin=stdin_arg,
                    stdout=out,
                    stderr=subprocess.STDOUT if merge_output else err,
                    cwd=workdir,
                    env=full_env,
                    start_new_session=True,  # its own process group: stop() kills the tree
                )
            proc = LocalProcess(
                popen, argv, out_path, err_path, cgroup, launcher=sandbox.namespaced
            )
            self._processes.append(proc)
            log.debug("guest %s started pid %s: %s", self.name, proc.pid, list(argv))
            return proc


def _resolve(program: str, env: Mapping[str, str], cwd: Path) -> str:
    """Find the program now, so an unknown command fails like one (not as exit code 127)."""
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(program) if os.path.isabs(program) else cwd / program
        if path.is_file():
            return str(path)
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found:
            return found
    raise not_found(program)


def _rewrite(path: Path, data: bytes) -> None:
    """Rewrite a file bind-mounted into the guest (over /proc/meminfo, a node's meminfo) in
    place with one write: the mount pins its inode, so it cannot be replaced, and a reader
    must never see it empty. Its lines have a fixed width, so its size does not change. A
    read that meets the write can still copy some lines of the old view and some of the new
    (Linux does not order a read against a write to the same page): measured 14 in 824,000
    reads while views were published 3,000 times a second; the harness writes a view
    only when it changes, on a balancer tick (0.1 s) or a setting change."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, data, 0)
        if len(data) < size:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    """Replace a file that is not bind-mounted (the counters) whole: a reader opens either
    the old version or the new one, never a mix (found torn under load when it too was
    rewritten in place)."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


_NODE_DIR = "/sys/devices/system/node"
_NODES: list[int] = sorted(
    int(m.group(1))
    for p in (Path(_NODE_DIR).glob("node*/meminfo") if Path(_NODE_DIR).is_dir() else [])
    if (m := re.fullmatch(r"node(\d+)", p.parent.name))
)


def _empty_node(view: GuestView, node: int) -> str:
    empty = GuestView(view.os_name, 0, 0, 0, 0, 0, 0, 0, 0)
    return empty.node_meminfo(node)


def _close_after(sandbox: GuestSandbox, processes: Sequence[LocalProcess]) -> None:
    """Close the sandbox (killing whatever is left in it, detached daemons included) once
    every process handed to the host has been stopped, gracefully or not."""
    remaining = [len(processes)]
    lock = threading.Lock()

    def one_stopped() -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            sandbox.close()

    if not processes:
        sandbox.close()
        return
    for proc in processes:
        proc.after_stop(one_stopped)


_reaped = False


def _reap_stale_directories() -> None:
    global _reaped
    if not _reaped:
        _reaped = True
        reap_stale()


def reap_stale() -> None:
    """Remove what emulators that died without cleaning up (SIGKILL) left: their guests'
    memory cgroups, and each `dmh-host-*` directory all of whose guests name a dead owner.
    Done once per process when the first guest directory is made."""
    root = support().cgroup
    if root is not None:
        root.reap_stale()
    for host_dir in Path(tempfile.gettempdir()).glob("dmh-host-*"):
        owners = list(host_dir.glob("*/.dmh/owner"))
        if owners and not any(_owner_alive(path) for path in owners):
            shutil.rmtree(host_dir, ignore_errors=True)
            log.info("removed the stale guest directory %s", host_dir)


def _owner_alive(path: Path) -> bool:
    try:
        pid_text, created = path.read_text().split()
        proc = psutil.Process(int(pid_text))
        return abs(proc.create_time() - float(created)) < 0.01
    except (OSError, ValueError, psutil.Error):
        return False


__all__ = ["ENV_DIR", "ENV_OVERLAY", "EmulatedGuest", "reap_stale"]
