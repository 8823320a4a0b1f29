"""The emulated guest: OS memory profiles, real local processes whose memory is the guest's
commit, and the guest's memory view published where the programs it runs look for it.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import enum
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Protocol

import psutil

from harness.emulator.balancer import GuestModel, linux_balloon_floor_mb
from harness.emulator.errors import GuestError
from harness.errors import DeadlineError, SettingError
from harness.units import MB

log = logging.getLogger(__name__)

ENV_MEMINFO = "DMH_GUEST_MEMINFO"
ENV_COUNTERS = "DMH_GUEST_COUNTERS"
ENV_OS = "DMH_GUEST_OS"
ENV_DIR = "DMH_GUEST_DIR"
ENV_NAME = "DMH_GUEST_NAME"
ENV_OVERLAY = "DMH_GUEST_OVERLAY"  # "1" when /proc/meminfo is the guest's own view

# Counter names in the guest's counters file (Windows spelling, §4.3/§4.4).
AVAILABLE_MBYTES = r"\Memory\Available MBytes"
AVAILABLE_BYTES = r"\Memory\Available Bytes"
COMMITTED_BYTES = r"\Memory\Committed Bytes"
COMMIT_LIMIT = r"\Memory\Commit Limit"
COMMITTED_IN_USE = r"\Memory\% Committed Bytes In Use"
TOTAL_PHYSICAL = "Win32_ComputerSystem.TotalPhysicalMemory"  # bytes
TOTAL_VISIBLE_KB = "Win32_OperatingSystem.TotalVisibleMemorySize"  # KB
FREE_PHYSICAL_KB = "Win32_OperatingSystem.FreePhysicalMemory"  # KB
MAXIMUM_MEMORY = r"\Hyper-V Dynamic Memory Integration Service\Maximum Memory, Mbytes"


# -- what the guest OS shows --------------------------------------------------------------
@dataclass(frozen=True)
class GuestView:
    """The guest's own memory figures (MB), as software inside the VM reads them."""

    os_name: str
    total_mb: int  # what the OS says it has: Windows high-water mark, Linux MemTotal
    available_mb: int
    free_mb: int
    committed_mb: int
    commit_limit_mb: int
    max_memory_mb: int  # DM Maximum as the integration service reports it (§4.3)
    assigned_mb: int
    ballooned_mb: int  # held by the balloon driver: counted as in use (§4.4, §5.4)

    def counters(self) -> Mapping[str, float]:
        """Windows counter names → values (the counters file)."""
        committed = self.committed_mb * MB
        limit = self.commit_limit_mb * MB
        return {
            AVAILABLE_MBYTES: self.available_mb,
            AVAILABLE_BYTES: self.available_mb * MB,
            COMMITTED_BYTES: committed,
            COMMIT_LIMIT: limit,
            COMMITTED_IN_USE: round(100 * committed / limit, 2) if limit else 0.0,
            TOTAL_PHYSICAL: self.total_mb * MB,
            TOTAL_VISIBLE_KB: self.total_mb * 1024,
            FREE_PHYSICAL_KB: self.free_mb * 1024,
            MAXIMUM_MEMORY: self.max_memory_mb,
        }

    def meminfo(self) -> str:
        """/proc/meminfo text (kB). Every line has a fixed width, so successive versions have
        the same length and an in-place rewrite never leaves a stale tail."""
        total, free, avail = self.total_mb * 1024, self.free_mb * 1024, self.available_mb * 1024
        used = max(0, total - free)
        rows: list[tuple[str, int, bool]] = [
            ("MemTotal", total, True),
            ("MemFree", free, True),
            ("MemAvailable", avail, True),
            ("Buffers", 0, True),
            ("Cached", 0, True),
            ("SwapCached", 0, True),
            ("Active", used, True),
            ("Inactive", 0, True),
            ("Active(anon)", used, True),
            ("Inactive(anon)", 0, True),
            ("Active(file)", 0, True),
            ("Inactive(file)", 0, True),
            ("Unevictable", self.ballooned_mb * 1024, True),
            ("Mlocked", 0, True),
            ("SwapTotal", 0, True),
            ("SwapFree", 0, True),
            ("Dirty", 0, True),
            ("Writeback", 0, True),
            ("AnonPages", used, True),
            ("Mapped", 0, True),
            ("Shmem", 0, True),
            ("KReclaimable", 0, True),
            ("Slab", 0, True),
            ("SReclaimable", 0, True),
            ("SUnreclaim", 0, True),
            ("KernelStack", 0, True),
            ("PageTables", 0, True),
            ("CommitLimit", self.commit_limit_mb * 1024, True),
            ("Committed_AS", self.committed_mb * 1024, True),
            ("VmallocTotal", 34359738367, True),
            ("VmallocUsed", 0, True),
            ("VmallocChunk", 0, True),
            ("HugePages_Total", 0, False),
            ("HugePages_Free", 0, False),
            ("HugePages_Rsvd", 0, False),
            ("HugePages_Surp", 0, False),
            ("Hugepagesize", 2048, True),
        ]
        return "".join(
            f"{name + ':':<16}{value:>14}{' kB' if kb else '   '}\n" for name, value, kb in rows
        )


class GuestProfile(GuestModel, Protocol):
    """A guest OS: how it reports demand to the host and what it shows its programs."""

    @property
    def os_name(self) -> str: ...

    @property
    def baseline_commit_mb(self) -> int:
        """Commit of the idle OS, before any process the harness starts."""
        ...

    def view(
        self, committed_mb: int, assigned_mb: int, high_water_mb: int, maximum_mb: int
    ) -> GuestView: ...


def _check_profile(baseline: int, other: int, other_name: str) -> None:
    if baseline < 0:
        raise SettingError("baseline_commit_mb", baseline, "must be ≥ 0")
    if other < 0:
        raise SettingError(other_name, other, "must be ≥ 0")


def _available_mb(committed_mb: int, assigned_mb: int) -> int:
    # Ballooned pages are never available, on either OS (§4.4, §5.4).
    return max(0, assigned_mb - committed_mb)


def _view(
    profile: GuestProfile,
    committed_mb: int,
    assigned_mb: int,
    total_mb: int,
    commit_limit_mb: int,
    maximum_mb: int,
) -> GuestView:
    available = _available_mb(committed_mb, assigned_mb)
    return GuestView(
        os_name=profile.os_name,
        total_mb=total_mb,
        available_mb=available,
        free_mb=available,
        committed_mb=committed_mb,
        commit_limit_mb=commit_limit_mb,
        max_memory_mb=maximum_mb,
        assigned_mb=assigned_mb,
        ballooned_mb=total_mb - assigned_mb,
    )


@dataclass(frozen=True)
class WindowsProfile:
    """A Windows guest under DM (§4.4): the visible total is a high-water mark that never drops
    until restart; ballooned memory counts as in use; demand is Committed Bytes (§3.2).

    Whether ballooned pages count in the Commit Limit is unknown (§8.6); here the limit is the
    high-water total plus the page file.
    """

    baseline_commit_mb: int = 750
    pagefile_mb: int = 1024

    def __post_init__(self) -> None:
        _check_profile(self.baseline_commit_mb, self.pagefile_mb, "pagefile_mb")

    @property
    def os_name(self) -> str:
        return "windows"

    def demand_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return committed_mb

    def lowest_assigned_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return 0  # Windows gives what is asked and pages out if it must (§3.4)

    def visible_mb(self, assigned_mb: int, high_water_mb: int) -> int:
        return max(assigned_mb, high_water_mb)

    def available_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return _available_mb(committed_mb, assigned_mb)

    def view(
        self, committed_mb: int, assigned_mb: int, high_water_mb: int, maximum_mb: int
    ) -> GuestView:
        total = self.visible_mb(assigned_mb, high_water_mb)
        return _view(self, committed_mb, assigned_mb, total, total + self.pagefile_mb, maximum_mb)


@dataclass(frozen=True)
class LinuxProfile:
    """A Linux guest with hv_balloon (§5). On a kernel with the Dec-2020 patch (the default)
    MemTotal follows assigned memory; on older ones it keeps the high-water mark and
    ballooned pages look used (§5.4).

    Demand is Committed_AS plus the balloon floor of totalram (§5.3). The ballooned pages
    that the guest's report also carries are left out: the host already counts them as
    removed, and adding them back would undo every balloon (inferred).
    """

    baseline_commit_mb: int = 250
    memtotal_follows_balloon: bool = True

    def __post_init__(self) -> None:
        _check_profile(self.baseline_commit_mb, 0, "")

    @property
    def os_name(self) -> str:
        return "linux"

    def visible_mb(self, assigned_mb: int, high_water_mb: int) -> int:
        if self.memtotal_follows_balloon:
            return assigned_mb
        return max(assigned_mb, high_water_mb)

    def demand_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        totalram = self.visible_mb(assigned_mb, high_water_mb)
        return committed_mb + linux_balloon_floor_mb(totalram)

    def lowest_assigned_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        # hv_balloon keeps MemAvailable above the floor: "Balloon floor reached" (§3.4, §5.3)
        return self.demand_mb(committed_mb, assigned_mb, high_water_mb)

    def available_mb(self, committed_mb: int, assigned_mb: int, high_water_mb: int) -> int:
        return _available_mb(committed_mb, assigned_mb)

    def view(
        self, committed_mb: int, assigned_mb: int, high_water_mb: int, maximum_mb: int
    ) -> GuestView:
        total = self.visible_mb(assigned_mb, high_water_mb)
        # Commit limit: vm.overcommit_ratio 50, no swap.
        return _view(self, committed_mb, assigned_mb, total, total // 2, maximum_mb)


def profile_for(os_name: str) -> GuestProfile:
    """The default profile for "windows" or "linux"."""
    name = os_name.lower()
    if name == "windows":
        return WindowsProfile()
    if name == "linux":
        return LinuxProfile()
    raise SettingError("guest_os", os_name, "must be 'windows' or 'linux'")


# -- /proc/meminfo overlay ----------------------------------------------------------------
class Overlay(enum.Enum):
    """How processes in a guest get their own /proc/meminfo."""

    NONE = "none"  # files and environment variables only
    ROOT = "root"  # unshare --mount as root
    USER_NAMESPACE = "userns"  # unshare --user --map-root-user --mount (unprivileged)


_OVERLAY_SCRIPT = (
    'm=$1; shift; mount --bind "$m" /proc/meminfo'
    ' || echo "dmh-guest: cannot overlay /proc/meminfo" >&2; exec "$@"'
)
_OVERLAY_PREFIX: dict[Overlay, tuple[str, ...]] = {
    Overlay.ROOT: ("unshare", "--mount", "--propagation", "private", "--"),
    Overlay.USER_NAMESPACE: (
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
    ),
}
_overlay_lock = threading.Lock()
_overlay_mode: Overlay | None = None


def meminfo_overlay() -> Overlay:
    """Whether this OS lets a guest's processes see its meminfo as /proc/meminfo: found out
    once per process by trying it; logged once when it cannot be done."""
    global _overlay_mode
    with _overlay_lock:
        if _overlay_mode is None:
            _overlay_mode = _probe_overlay()
            if _overlay_mode is Overlay.NONE:
                log.warning(
                    "cannot overlay /proc/meminfo in emulated guests (needs Linux with"
                    " unshare and root or unprivileged user namespaces); guest programs read"
                    " the guest's memory from $%s and $%s instead",
                    ENV_MEMINFO,
                    ENV_COUNTERS,
                )
            else:
                log.info("emulated guests get their own /proc/meminfo (%s)", _overlay_mode.value)
        return _overlay_mode


def _probe_overlay() -> Overlay:
    if not sys.platform.startswith("linux") or not (shutil.which("unshare") and shutil.which("sh")):
        return Overlay.NONE
    modes = [Overlay.ROOT] if os.geteuid() == 0 else []
    modes.append(Overlay.USER_NAMESPACE)
    marker = "DmhOverlayProbe:   1 kB"
    with tempfile.TemporaryDirectory(prefix="dmh-probe-") as tmp:
        probe = Path(tmp, "meminfo")
        probe.write_text(f"MemTotal: 1 kB\n{marker}\n")
        for mode in modes:
            argv = [*_overlay_command(mode, probe), "cat", "/proc/meminfo"]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError) as exc:
                log.debug("overlay probe %s failed: %s", mode.value, exc)
                continue
            if done.returncode == 0 and marker in done.stdout and not done.stderr:
                return mode
            log.debug("overlay probe %s: rc=%s %s", mode.value, done.returncode, done.stderr)
    return Overlay.NONE


def _overlay_command(mode: Overlay, meminfo: Path) -> list[str]:
    return [*_OVERLAY_PREFIX[mode], "sh", "-c", _OVERLAY_SCRIPT, "dmh-guest", str(meminfo)]


# -- processes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalProcessStats:
    """A guest process and its descendants, measured together."""

    pid: int
    running: bool
    exit_code: int | None
    working_set_bytes: int  # resident set
    private_bytes: int  # resident and not shared
    processes: int  # how many processes were measured


_live: weakref.WeakSet[LocalProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """No orphans even if nobody closed the host: kill what guests still run at exit."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=1.0)


class LocalProcess:
    """A real local process started in an emulated guest (its own session/process group)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        argv: Sequence[str],
        stdout_path: Path,
        stderr_path: Path,
    ) -> None:
        self._popen = popen
        self.argv = tuple(argv)
        self.pid = popen.pid
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self._lock = threading.Lock()
        self._known: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):  # already gone: poll() will say so
            self._known[self.pid] = psutil.Process(self.pid)
        _live.add(self)

    def __repr__(self) -> str:
        return f"LocalProcess(pid={self.pid}, argv={self.argv!r}, exit_code={self.poll()})"

    def poll(self) -> int | None:
        return self._popen.poll()

    @property
    def exit_code(self) -> int | None:
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeadlineError(f"guest process {self.pid} still running after {timeout}s") from exc

    def output(self) -> str:
        """Everything the process wrote to stdout so far (kept in the guest's directory)."""
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send(self, text: str) -> None:
        """Write to the process's stdin (started with stdin=True)."""
        stream = self._popen.stdin
        if stream is None:
            raise GuestError(f"process {self.pid} was started without stdin", target=str(self.pid))
        try:
            stream.write(text.encode())
            stream.flush()
        except OSError as exc:
            raise GuestError(
                f"process {self.pid} no longer reads its input ({exc})", target=str(self.pid)
            ) from exc

    def close_stdin(self) -> None:
        if self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    def _tree(self) -> list[psutil.Process]:
        """The process and every descendant seen so far that still lives (pid reuse is
        ruled out by psutil's creation-time check). The root is checked through Popen, so
        that Popen, not psutil, reaps it and keeps its exit code."""
        with self._lock:
            running = self._popen.poll() is None
            root = self._known.get(self.pid)
            if running and root is not None:
                with contextlib.suppress(psutil.Error):
                    for child in root.children(recursive=True):
                        self._known.setdefault(child.pid, child)
            self._known = {
                pid: proc
                for pid, proc in self._known.items()
                if (running if pid == self.pid else _alive(proc))
            }
            return list(self._known.values())

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._tree():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)  # poll interval while processes exit
        return True

    def stats(self) -> LocalProcessStats:
        rss = private = count = 0
        for proc in self._tree():
            try:
                info = proc.memory_info()
            except psutil.Error:
                continue
            count += 1
            rss += info.rss
            private += _private_bytes(info)
        return LocalProcessStats(
            pid=self.pid,
            running=self.running,
            exit_code=self.poll(),
            working_set_bytes=rss,
            private_bytes=private,
            processes=count,
        )

    def resident_bytes(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group and to every known descendant."""
        tree = self._tree()
        if self.running or tree:  # else the group is gone and its id may be reused
            with contextlib.suppress(OSError):
                os.killpg(self.pid, sig)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def stop(self, timeout: float = 5.0, *, graceful: bool = True) -> int | None:
        """Stop the process and all its descendants: SIGTERM, then SIGKILL after `timeout`
        (at once when not graceful). Returns the exit code."""
        self.close_stdin()
        if graceful and self._tree():
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a frozen (saved/paused) process must wake to die
            self._wait_gone(timeout)
        if self._tree():
            self.signal(signal.SIGKILL)
            self._wait_gone(5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(5)
        _live.discard(self)
        return self.poll()


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _private_bytes(info: object) -> int:
    private = getattr(info, "private", None)  # Windows
    if isinstance(private, int):
        return private
    rss = int(getattr(info, "rss", 0))
    return max(0, rss - int(getattr(info, "shared", 0)))  # Linux: anonymous resident


# -- the guest ----------------------------------------------------------------------------
class GuestState(enum.Enum):
    OFF = "off"
    BOOTING = "booting"
    RUNNING = "running"
    FROZEN = "frozen"  # the VM is paused or saved: its processes are stopped with SIGSTOP


class EmulatedGuest:
    """One VM's guest OS. Thread-safe. Its directory is created on first use, so guests that
    never run a process (benchmarks, balancer tests) cost no files."""

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

    # -- what the host drives ---------------------------------------------------------
    @property
    def state(self) -> GuestState:
        return self._state

    @property
    def os_name(self) -> str:
        return self.profile.os_name

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
        (the host stops them outside its lock)."""
        with self._lock:
            self._state = GuestState.OFF
            processes, self._processes = tuple(self._processes), []
            self._synthetic_mb = 0
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

    def committed_mb(self) -> int:
        """The guest's commit: idle OS + synthetic load + the resident memory of its processes.

        A process's resident set stands in for its private commit, which it equals for
        programs that touch what they allocate.
        """
        with self._lock:
            processes = list(self._processes)
        resident = sum(p.resident_bytes() for p in processes)
        return self.profile.baseline_commit_mb + self._synthetic_mb + -(-resident // MB)

    @property
    def view(self) -> GuestView | None:
        return self._view

    def publish(self, view: GuestView) -> None:
        """Record the guest's current view; rewrite its files if any program may read them."""
        with self._lock:
            if view == self._view:
                return
            self._view = view
            if self._created:
                try:
                    self._write_view(view)
                except OSError as exc:  # e.g. the host was closed and its files removed
                    log.debug("guest %s: cannot publish its view: %s", self.name, exc)

    # -- files ------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The guest's file system root on the host (created on first use)."""
        with self._lock:
            if not self._created:
                (self._dir / ".dmh").mkdir(parents=True, exist_ok=True)
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

    def _write_view(self, view: GuestView) -> None:
        meta = self._dir / ".dmh"
        _rewrite(meta / "meminfo", view.meminfo().encode(), pad=False)
        counters = json.dumps(view.counters(), indent=1, sort_keys=True).encode() + b"\n"
        _rewrite(meta / "counters.json", counters, pad=True)

    def host_path(self, guest_path: str) -> Path:
        """Where a guest path ('C:\\app\\x.py', '/opt/x', 'rel/x') lives on the host."""
        text = str(guest_path)
        pure: PurePosixPath | PureWindowsPath
        if "\\" in text or re.match(r"^[A-Za-z]:", text):
            pure = PureWindowsPath(text)
            parts = list(pure.parts[1:] if pure.anchor else pure.parts)
            if pure.drive:
                parts.insert(0, pure.drive.rstrip(":"))
        else:
            pure = PurePosixPath(text)
            parts = list(pure.parts[1:] if pure.anchor else pure.parts)
        if ".." in parts:
            raise GuestError(
                f"The path '{guest_path}' leaves the guest's file system.",
                target=text,
                category="InvalidArgument",
                error_id="InvalidParameter",
            )
        return self.directory.joinpath(*parts)

    def read_from(self, path: Path, offset: int) -> tuple[str, int]:
        """The text of one of this guest's files from byte `offset` on, and the offset to read
        from next; a file not there yet reads as nothing."""
        with contextlib.suppress(OSError), open(path, "rb") as stream:
            stream.seek(offset)
            data = stream.read()
            # A character cut by the end of what is written so far waits for the next read.
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            text = decoder.decode(data)
            return text, offset + len(data) - len(decoder.getstate()[0])
        return "", offset

    def copy_in(self, source: str | os.PathLike[str], destination: str) -> Path:
        """Copy a host file into the guest (like Copy-VMFile -CreateFullPath, §1.7)."""
        src = Path(source)
        if not src.is_file():
            raise GuestError(
                f"The source file '{src}' does not exist.",
                target=str(src),
                category="ObjectNotFound",
                error_id="ObjectNotFound",
            )
        dest = self.host_path(destination)
        if destination.endswith(("/", "\\")) or dest.is_dir():
            dest = dest / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        return dest

    # -- processes --------------------------------------------------------------------
    def processes(self) -> tuple[LocalProcess, ...]:
        with self._lock:
            return tuple(self._processes)

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
            raise GuestError(
                "No program given.", category="InvalidArgument", error_id="InvalidParameter"
            )
        with self._lock:
            if self._state is not GuestState.RUNNING:
                raise GuestError(
                    f"The virtual machine '{self.name}' is not running"
                    f" (guest is {self._state.value}); it cannot run programs.",
                    target=self.name,
                    category="InvalidOperation",
                    error_id="InvalidState",
                )
            workdir = self.host_path(cwd) if cwd else self.directory
            workdir.mkdir(parents=True, exist_ok=True)
            full_env = dict(os.environ)
            full_env.update(env or {})
            overlay = meminfo_overlay()
            if not self.meminfo_path.exists():  # nothing published yet: nothing to mount
                overlay = Overlay.NONE
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
            program = _resolve(argv[0], full_env, workdir)
            self._seq += 1
            stem = self.directory / ".dmh" / f"proc-{self._seq:04d}"
            out_path, err_path = stem.with_suffix(".stdout"), stem.with_suffix(".stderr")
            command = [program, *argv[1:]]
            if overlay is not Overlay.NONE:
                command = [*_overlay_command(overlay, self.meminfo_path), *command]
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
            proc = LocalProcess(popen, argv, out_path, err_path)
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
    raise GuestError(
        f"The term '{program}' is not recognized as the name of a cmdlet, function, script"
        " file, or operable program.",
        target=program,
        category="ObjectNotFound",
        error_id="CommandNotFoundException",
    )


def _rewrite(path: Path, data: bytes, *, pad: bool) -> None:
    """Rewrite a published file in place with one write: a bind mount pins its inode, and a
    reader must never see it empty. Padding with spaces (valid trailing JSON whitespace)
    keeps a shorter version from leaving a stale tail; meminfo lines have a fixed width."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if pad and len(data) < size:
            data = data[:-1] + b" " * (size - len(data)) + b"\n"
        os.pwrite(fd, data, 0)
        if len(data) < size:
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
