"""Launch and stop one QEMU VM (recipe §2): the cached boot image, virtio-mem and
virtio-balloon, read-only 9p shares of what programs need plus one writable per-VM scratch
directory, QMP and the agent's virtio-serial port on unix sockets in that directory.

Life cycle: every QEMU dies with the process that launched it, even on SIGKILL
(PR_SET_PDEATHSIG, set from one long-lived spawner thread, because the signal follows the
*thread* that forked); if KVM does not bring the agent up in time (it hangs on this kind of
machine, recipe §0) the VM is relaunched with TCG and that is said once; a boot failure
carries the tail of the serial console; stopping removes the scratch directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.emulator import owner
from harness.emulator.qemu.agent import AgentClient
from harness.emulator.qemu.errors import QemuBootError, QemuError
from harness.emulator.qemu.image import AGENT_PORT, BootImage, boot_image, cache_dir
from harness.emulator.qemu.qmp import QmpDriver

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
ENV_ACCEL = "DMH_QEMU_ACCEL"  # auto (KVM, then TCG) | kvm | tcg
ENV_SHARES = "DMH_QEMU_SHARES"  # extra read-only host paths, ':'-separated
GUEST_SCRATCH = "/dmh"  # where the scratch directory appears in the guest
BLOCK_MB = 2  # virtio-mem block size (Hyper-V moves memory in 2 MB units too, §2.1)
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_kvm_failed = False  # KVM hung once in this process: go straight to TCG from then on


def available() -> str | None:
    """Why the QEMU backend cannot run here, or None if it can."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian: apt-get install qemu-system-x86)"
    if not Path("/bin/busybox").is_file():
        return "/bin/busybox is missing (Debian: apt-get install busybox-static)"
    try:
        import qemu.qmp  # noqa: F401
    except ImportError:
        return "qemu.qmp is not installed (pip install 'dm-harness[qemu]')"
    return None


@dataclass(frozen=True)
class VmSpec:
    """What one VM is launched with (sizes in MB)."""

    name: str
    base_mb: int  # boot memory (-m): the VM's Startup memory
    hotplug_mb: int  # the virtio-mem region: how far hot-add can go
    cpus: int = 2
    shares: tuple[str, ...] = field(default_factory=tuple)  # extra read-only host paths
    boot_timeout: float = 90.0  # TCG on a loaded 2-core machine
    kvm_timeout: float = 15.0  # KVM answers in ~2 s where it works (recipe §0)

    def __post_init__(self) -> None:
        if self.base_mb < 128 or self.base_mb % BLOCK_MB:
            raise QemuError(
                f"base memory {self.base_mb} MB: must be ≥ 128 MB and a multiple of 2 MB",
                vm=self.name,
            )
        if self.hotplug_mb < 0 or self.hotplug_mb % BLOCK_MB:
            raise QemuError(
                f"hot-plug region {self.hotplug_mb} MB: must be ≥ 0 and a multiple of 2 MB",
                vm=self.name,
            )


# -- the spawner thread -------------------------------------------------------------------
_spawn_queue: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], queue.Queue[object]]]
_spawn_queue = queue.Queue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawn_forever() -> None:
    while True:
        start, reply = _spawn_queue.get()
        try:
            reply.put(start())
        except BaseException as exc:  # handed to the caller, who raises it
            reply.put(exc)


def _spawn(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `start` on the process-long spawner thread (PR_SET_PDEATHSIG follows the thread
    that forked: a short-lived thread's exit would kill the VM)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawn_forever, name="dmh-qemu-spawner", daemon=True)
            _spawner.start()
    reply: queue.Queue[object] = queue.Queue()
    _spawn_queue.put((start, reply))
    result = reply.get()
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, subprocess.Popen)
    return result


def _die_with_parent(parent: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: die now
            os._exit(1)

    return preexec


# -- shares -------------------------------------------------------------------------------
def _shares(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """(read-only paths to share, 'name:target' symlinks of a merged /usr)."""
    paths = ["/usr", "/etc"]
    links = []
    for name in _TOP_LEVEL:
        top = Path("/") / name
        if top.is_symlink():
            links.append(f"{name}:{os.readlink(top)}")
        elif top.is_dir():
            paths.append(str(top))
    env_extra = [p for p in os.environ.get(ENV_SHARES, "").split(":") if p]
    wanted = [sys.prefix, sys.base_prefix, os.getcwd(), *extra, *env_extra]
    for raw in wanted:
        path = os.path.realpath(raw)
        if not os.path.isdir(path):
            continue
        if re.search(r"[\s,:\"'\\]", path):
            raise QemuError(
                f"cannot share {path!r} into a QEMU guest: no spaces, commas, colons or quotes"
                " in shared paths (they travel on the kernel command line)",
                stage="launch",
            )
        paths.append(path)
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept, links


# -- leftovers ----------------------------------------------------------------------------
_PREFIX = "dmh-qemu-"
_SCRATCH = re.compile(rf"^{_PREFIX}(\d+-\d+)-")  # its owner's tag
_reaped = False


def _reap_stale() -> None:
    """Remove scratch directories of emulators that died without cleaning up (SIGKILL: their
    QEMUs died with them through PR_SET_PDEATHSIG, their files did not). Once per process.
    The owner is in the directory's name, so a directory another process is just making is
    never taken for a stale one (nor is an image being built, dmh-qemu-build-*)."""
    global _reaped
    if _reaped:
        return
    _reaped = True
    reap_stale_scratch(Path(tempfile.gettempdir()))


def reap_stale_scratch(root: Path) -> None:
    """Remove the scratch directories under `root` whose owner is dead (every time)."""
    for scratch in root.glob(_PREFIX + "*"):
        named = _SCRATCH.match(scratch.name)
        if named and not owner.alive(named[1]):
            shutil.rmtree(scratch, ignore_errors=True)
            log.info("removed the stale QEMU scratch directory %s", scratch)


# -- the VM -------------------------------------------------------------------------------
class QemuVm:
    """One running QEMU VM, its QMP connection and its agent. Boots in the constructor."""

    def __init__(self, spec: VmSpec) -> None:
        self.spec = spec
        self.image: BootImage = boot_image()
        _reap_stale()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{owner.tag()}-"))
        self.share_dir = self.scratch / "guest"  # the only writable host path the guest has
        self.share_dir.mkdir()
        self.serial_log = self.scratch / "serial.log"
        self.accel = ""
        self.boot_seconds = 0.0
        self._popen: subprocess.Popen[bytes] | None = None
        self.agent: AgentClient
        self.qmp: QmpDriver
        try:
            self._boot()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def _argv(self, accel: str) -> list[str]:
        spec = self.spec
        ro, links = _shares(spec.shares)
        hostname = re.sub(r"[^A-Za-z0-9-]", "-", spec.name)[:63] or "guest"
        append = [
            "console=ttyS0",
            "quiet",
            "panic=-1",
            "memhp_default_state=online_movable",
            "dmh.ro=" + ",".join(f"r{i}:{p}" for i, p in enumerate(ro)),
            f"dmh.rw=scratch:{GUEST_SCRATCH}",
            f"dmh.hostname={hostname}",
        ]
        if links:
            append.append("dmh.links=" + ",".join(links))
        maxmem = spec.base_mb + spec.hotplug_mb
        argv = [
            QEMU, "-name", f"dmh-{hostname}",
            "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(spec.cpus), "-M", "q35",
            "-m", f"{spec.base_mb}M" + (f",maxmem={maxmem}M" if spec.hotplug_mb else ""),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initramfs),
            "-append", " ".join(append),
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.scratch / 'qmp.sock'},server=on,wait=off",
            # No deflate-on-oom: MemTotal drops like hv_balloon's and the guest OOM-kills
            # rather than taking memory back (recipe §3).
            "-device", "virtio-balloon-pci,id=balloon0",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=agent,path={self.scratch / 'agent.sock'},server=on,wait=off",
            "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}",
            "-virtfs", f"local,path={self.share_dir},mount_tag=scratch,security_model=none",
        ]  # fmt: skip
        if spec.hotplug_mb:
            argv += [
                "-object", f"memory-backend-ram,id=vmem0,size={spec.hotplug_mb}M",
                "-device", f"virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0,block-size={BLOCK_MB}M",
            ]  # fmt: skip
        for i, path in enumerate(ro):
            argv += [
                "-virtfs",
                f"local,path={path},mount_tag=r{i},security_model=none,readonly=on,multidevs=remap",
            ]
        return argv

    def _boot(self) -> None:
        global _kvm_failed
        choice = os.environ.get(ENV_ACCEL, "auto")
        if choice not in ("auto", "kvm", "tcg"):
            raise QemuError(f"{ENV_ACCEL}={choice!r}: use auto, kvm or tcg", vm=self.spec.name)
        kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
        marker = cache_dir() / f"kvm-hangs-{os.uname().release}"
        _kvm_failed = _kvm_failed or marker.exists()
        if choice == "kvm" or (choice == "auto" and kvm_usable and not _kvm_failed):
            try:
                self._launch("kvm", self.spec.kvm_timeout)
                return
            except QemuBootError as exc:
                if choice == "kvm":
                    raise
                _kvm_failed = True
                # Remembered for this host kernel, so later runs do not wait again.
                with contextlib.suppress(OSError):
                    marker.write_text(exc.message)
                log.warning(
                    "QEMU with KVM did not boot within %.0f s (%s); using TCG from now on"
                    " (remembered in %s; delete it to try KVM again)",
                    self.spec.kvm_timeout,
                    exc.message.splitlines()[0],
                    marker,
                )
                self._kill()
                self.serial_log.unlink(missing_ok=True)
        self._launch("tcg", self.spec.boot_timeout)

    def _launch(self, accel: str, timeout: float) -> None:
        argv = self._argv(accel)
        started = time.monotonic()
        deadline = started + timeout
        log.debug("launching %s", " ".join(argv))
        parent = os.getpid()

        def start() -> subprocess.Popen[bytes]:
            with open(self.scratch / "qemu.err", "wb") as err:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    preexec_fn=_die_with_parent(parent),
                    close_fds=True,
                )

        self._popen = _spawn(start)
        try:
            self.qmp = QmpDriver(self.scratch / "qmp.sock", self.spec.name, deadline)
            self.agent = AgentClient.connect(self.scratch / "agent.sock", self.spec.name, deadline)
            self._wait_for_agent(deadline)
        except QemuError as exc:
            raise QemuBootError(
                f"the VM {self.spec.name!r} did not boot with {accel}: {exc.message}",
                vm=self.spec.name,
                serial_tail=self.serial_tail(),
            ) from exc
        self.accel = accel
        self.boot_seconds = time.monotonic() - started
        log.info("VM %s booted with %s in %.1f s", self.spec.name, accel, self.boot_seconds)

    def _wait_for_agent(self, deadline: float) -> None:
        # A ping written before the agent opens its port waits in QEMU; ping again now and
        # then in case one was lost while the guest set the port up.
        while True:
            if self._popen is not None and self._popen.poll() is not None:
                raise QemuError(f"QEMU exited with code {self._popen.returncode}{self._stderr()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuError("the guest agent did not answer in time")
            try:
                self.agent.request("ping", min(1.0, left))
                return
            except QemuError as exc:
                if "did not answer" not in exc.message:
                    raise

    def _stderr(self) -> str:
        with contextlib.suppress(OSError):
            text = (self.scratch / "qemu.err").read_text(errors="replace").strip()
            if text:
                return f": {text[-600:]}"
        return ""

    def serial_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.serial_log.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def host_path(self, relative: str) -> Path:
        """The host side of a path in the guest's scratch directory."""
        return self.share_dir / relative

    def resident_bytes(self) -> int:
        """QEMU's resident memory on the host."""
        if self._popen is None:
            return 0
        try:
            return int(psutil.Process(self._popen.pid).memory_info().rss)
        except psutil.Error:
            return 0

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def _kill(self) -> None:
        for closer in ("agent", "qmp"):
            conn = self.__dict__.pop(closer, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        if self._popen is not None:
            with contextlib.suppress(OSError):
                self._popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(10)
            self._popen = None

    def stop(self) -> None:
        """Power off at once (like Stop-VM -TurnOff) and remove every file the VM had."""
        qmp = self.__dict__.get("qmp")
        if qmp is not None and self.running:
            qmp.quit()
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self._popen is not None:
                    self._popen.wait(3)
        self._kill()
        shutil.rmtree(self.scratch, ignore_errors=True)
