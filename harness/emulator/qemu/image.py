"""The boot image of QEMU guests, built on first use and cached: the distribution's kernel
(an uncompressed vmlinux taken out of the packaged bzImage, booted directly through its PVH
note) and a small initramfs (static busybox, the virtio modules, an init and the agent).

Recipe and measurements: reference/qemu-guest-recipe.md §1. The kernel comes from a Debian
kernel package (.deb) that is only unpacked, never installed into /boot: DMH_QEMU_KERNEL_DEB
names one, else one in the cache directory is used, else `apt-get download` fetches the
package DMH_QEMU_KERNEL_PACKAGE names (default: what linux-image-amd64 depends on).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.emulator.qemu.errors import QemuError

log = logging.getLogger(__name__)

ENV_CACHE = "DMH_QEMU_CACHE"
ENV_KERNEL_DEB = "DMH_QEMU_KERNEL_DEB"
ENV_KERNEL_PACKAGE = "DMH_QEMU_KERNEL_PACKAGE"
BUSYBOX = "/bin/busybox"
# Debian builds virtio as modules (=m); their dependencies come from modprobe (§1).
MODULES = ("virtio_pci", "virtio_mem", "virtio_balloon", "virtio_console", "9pnet_virtio", "9p")
AGENT_PORT = "dmh.agent.0"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_HERE = Path(__file__).parent
_BUILD = "2"  # bump when the build steps change: a new cache entry is made


@dataclass(frozen=True)
class BootImage:
    kernel: Path  # uncompressed vmlinux (ELF with a PVH note)
    initramfs: Path  # uncompressed newc cpio
    kernel_version: str


def cache_dir() -> Path:
    base = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dmh", "qemu"
    )
    return Path(base)


def boot_image() -> BootImage:
    """The cached image, built if missing (under a file lock: xdist workers share it)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        deb = _kernel_deb(cache)
        digest = hashlib.sha256()
        recipe = (_BUILD, deb.name, " ".join(MODULES), INIT_SCRIPT)
        for part in (*recipe, (_HERE / "agent_guest.py").read_text()):
            digest.update(part.encode())
        out = cache / f"image-{digest.hexdigest()[:16]}"
        done = out / "kernel-version"
        if not done.is_file():
            _build(deb, out)
        return BootImage(out / "vmlinux", out / "initramfs.cpio", done.read_text().strip())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _kernel_deb(cache: Path) -> Path:
    named = os.environ.get(ENV_KERNEL_DEB)
    if named:
        if not Path(named).is_file():
            raise QemuError(f"{ENV_KERNEL_DEB}={named!r}: no such file", stage="image")
        return Path(named)
    found = sorted(cache.glob("linux-image-*.deb"))
    if found:
        return found[-1]
    package = os.environ.get(ENV_KERNEL_PACKAGE) or _default_package()
    log.info("downloading the guest kernel package %s into %s", package, cache)
    result = subprocess.run(
        ["apt-get", "download", package], cwd=cache, capture_output=True, text=True, check=False
    )
    found = sorted(cache.glob("linux-image-*.deb"))
    if result.returncode != 0 or not found:
        raise QemuError(
            f"no guest kernel: `apt-get download {package}` failed ({result.stderr.strip()});"
            f" set {ENV_KERNEL_DEB} to a linux-image .deb",
            stage="image",
        )
    return found[-1]


def _default_package() -> str:
    try:
        text = subprocess.run(
            ["apt-cache", "depends", "linux-image-amd64"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise QemuError(
            f"cannot find the distribution's kernel package ({exc}); set {ENV_KERNEL_DEB}",
            stage="image",
        ) from exc
    found = re.search(r"Depends: (linux-image-\d\S*)", text)
    if found is None:
        raise QemuError("linux-image-amd64 names no kernel package", stage="image")
    return found.group(1)


def _build(deb: Path, out: Path) -> None:
    if not Path(BUSYBOX).is_file():
        raise QemuError(f"{BUSYBOX} is missing: install busybox-static", stage="image")
    with tempfile.TemporaryDirectory(prefix="dmh-qemu-build-") as tmp:
        root = Path(tmp) / "kroot"
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise QemuError(f"{deb.name} holds no boot/vmlinuz-*", stage="image")
        version = vmlinuz[0].name.removeprefix("vmlinuz-")
        _run(["depmod", "-b", str(root), version])  # dpkg-deb -x ships no modules.dep
        shown = _run(["modprobe", "-a", "-d", str(root), "-S", version, "--show-depends", *MODULES])
        modules: list[Path] = []
        for line in shown.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod" and Path(parts[1]) not in modules:
                modules.append(Path(parts[1]))
        staging = Path(tmp) / "out"
        staging.mkdir()
        (staging / "vmlinux").write_bytes(extract_vmlinux(vmlinuz[0].read_bytes()))
        (staging / "initramfs.cpio").write_bytes(_initramfs(modules))
        (staging / "kernel-version").write_text(version + "\n")
        shutil.rmtree(out, ignore_errors=True)
        shutil.move(str(staging), str(out))
    log.info("built the QEMU guest image for kernel %s in %s", version, out)


def _run(argv: list[str]) -> str:
    exe = shutil.which(argv[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        raise QemuError(f"{argv[0]} is missing (install kmod / dpkg)", stage="image")
    result = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise QemuError(f"{' '.join(argv)} failed: {result.stderr.strip()}", stage="image")
    return result.stdout


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside an xz-compressed bzImage (§1: vmlinux boots 2–4 s faster)."""
    offset = bzimage.find(_XZ_MAGIC)
    while offset >= 0:
        try:
            data = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(bzimage[offset:])
        except lzma.LZMAError:
            data = b""
        if data.startswith(b"\x7fELF"):
            return data
        offset = bzimage.find(_XZ_MAGIC, offset + 1)
    raise QemuError("the kernel image holds no xz-compressed ELF vmlinux", stage="image")


# -- the initramfs ------------------------------------------------------------------------
# The init mounts what the kernel command line names (dmh.ro=tag:path,... read-only 9p shares,
# dmh.rw=tag:path the scratch share, dmh.links=name:target,... symlinks for a merged /usr) in
# a new root, and runs the agent there with the shared python3.
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# loopback, as every distribution brings it up: services the guest runs are reached on it
ip link set lo up || echo "dmh-init: no loopback"
echo "dmh-init: loading modules"
for m in $(cat /modules.order); do insmod /m/$m || echo "dmh-init: insmod $m failed"; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
R=/newroot
mkdir -p $R
mount -t tmpfs -o mode=755 root $R
mkdir -p $R/proc $R/sys $R/dev $R/tmp $R/run $R/root
# tmpfs first: shares below /root or /run (a pyenv, a venv) are mounted on top of them
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=755 run $R/run
mount -t tmpfs -o mode=700 roothome $R/root
for pair in $(arg dmh.links | tr ',' ' '); do ln -s "${pair#*:}" "$R/${pair%%:*}"; done
for pair in $(arg dmh.ro | tr ',' ' '); do
  mkdir -p "$R${pair#*:}"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro "${pair%%:*}" "$R${pair#*:}" \
    || echo "dmh-init: mount ${pair} failed"
done
for pair in $(arg dmh.rw | tr ',' ' '); do
  mkdir -p "$R${pair#*:}"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 "${pair%%:*}" "$R${pair#*:}" \
    || echo "dmh-init: mount ${pair} failed"
done
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
cp /agent.py $R/run/dmh-agent.py
PORT=""
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name 2>/dev/null)" = "__PORT__" ] && PORT=/dev/${p##*/}
done
[ -n "$PORT" ] || echo "dmh-init: no virtio port named __PORT__"
hostname "$(arg dmh.hostname)"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
echo "dmh-init: starting the agent on $PORT"
cd $R
chroot $R /usr/bin/python3 -u /run/dmh-agent.py $PORT
echo "dmh-init: the agent exited ($?)"
poweroff -f
""".replace("__PORT__", AGENT_PORT)


def _initramfs(modules: list[Path]) -> bytes:
    archive = _Cpio()
    for directory in ("bin", "dev", "m", "proc", "sys", "newroot"):
        archive.add(directory, 0o040755)
    archive.add("dev/console", 0o020600, rdev=(5, 1))
    archive.add("bin/busybox", 0o100755, Path(BUSYBOX).read_bytes())
    archive.add("init", 0o100755, INIT_SCRIPT.encode())
    archive.add("agent.py", 0o100644, (_HERE / "agent_guest.py").read_bytes())
    names = []
    for module in modules:
        archive.add(f"m/{module.name}", 0o100644, module.read_bytes())
        names.append(module.name)
    archive.add("modules.order", 0o100644, ("\n".join(names) + "\n").encode())
    return archive.finish()


class _Cpio:
    """A newc ("070701") archive, uncompressed (the kernel unpacks it fastest)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def add(
        self, name: str, mode: int, data: bytes = b"", *, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0
        )  # fmt: skip
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self._ino += 1
        self._parts.append(_pad(header + encoded))
        self._parts.append(_pad(data))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self._parts)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)
