"""An emulated guest's init: pid 1 of the guest's own PID, network and mount namespaces.

Run as `python -m harness.emulator.process.sandbox.init WATCH_FD READY_FD [SOURCE TARGET]...` by the
emulator. It dies with the emulator whatever kills it: `PR_SET_PDEATHSIG` (the emulator
starts it from one long-lived thread, since the signal fires when the *thread* that forked it
exits) and end-of-file on WATCH_FD, a pipe whose write end only the emulator holds. When pid 1
of a PID namespace dies, the kernel kills every process in it, so nothing a guest started, not
even a daemon that double-forked and called setsid, outlives its emulator.

Inside: a fresh /proc for the new PID namespace, each SOURCE file bind-mounted over TARGET
(the guest's /proc/meminfo and node meminfo), loopback up. Standard library only: it must
start without the harness's dependencies.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _die_with_parent(parent: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    rc = _libc.mount(
        None if source is None else source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None,
    )
    _check(rc, f"mount {target}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def _reap(*_: object) -> None:
    """pid 1 adopts every orphan in the guest: collect them so none lingers as a zombie."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _guest_init(watch_fd: int, ready_fd: int, overlays: list[tuple[str, str]]) -> None:
    _die_with_parent(os.getppid())
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for source, target in overlays:
        _mount(source, target, None, MS_BIND)
    _loopback_up()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    while True:
        readable, _, _ = select.select([watch_fd], [], [], 5.0)
        _reap()
        if readable and not os.read(watch_fd, 64):
            os._exit(0)  # the emulator is gone: the kernel now kills the whole guest


def main(argv: list[str]) -> int:
    watch_fd, ready_fd = int(argv[0]), int(argv[1])
    pairs = argv[2:]
    overlays = list(zip(pairs[::2], pairs[1::2], strict=True))
    _die_with_parent(int(os.environ.get("DMH_INIT_PARENT", os.getppid())))
    _check(_libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS), "unshare")
    child = os.fork()
    if child == 0:
        try:
            _guest_init(watch_fd, ready_fd, overlays)
        except BaseException as exc:
            os.write(ready_fd, f"error {exc}\n".encode())
            os._exit(1)
    os.close(ready_fd)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)  # SIGCHLD wakes the select below at once
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable, _, _ = select.select([watch_fd, wake_r], [], [], 5.0)
        if wake_r in readable:
            os.read(wake_r, 64)
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:
            return os.waitstatus_to_exitcode(status) & 0xFF
        if watch_fd in readable and not os.read(watch_fd, 64):
            os.kill(child, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
