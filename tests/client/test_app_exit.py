"""How an app's end reaches the client, as a real guest exposes it: exit code, its stderr
apart from its output, and what the guest OS logged about memory running out for it (here
a Windows guest's commit limit; a Linux guest's OOM kill comes the same way)."""

from __future__ import annotations

from harness.emulator.process.sandbox.containment import support
from harness.hyperv.host import HyperVHost
from tests.requires import needs

from .support import PYTHON, Emulator, direct_guest, finish, running_vm

COMMIT = """
import ctypes, mmap, sys, time
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
print("committing", flush=True)
addr = libc.mmap(None, 6 << 30, mmap.PROT_READ | mmap.PROT_WRITE,
                 mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
assert addr not in (None, ctypes.c_void_p(-1).value), "mmap refused"
while True:
    time.sleep(0.1)
"""


def test_exit_code_and_stderr_apart_from_output(http_emulator: Emulator, vm_name: str) -> None:
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        guest = direct_guest(session, vm_name, http_emulator)
        code = "import sys; print('out', flush=True); sys.exit('bad things happened')"
        process = guest.start_process(PYTHON, ["-c", code])
        assert finish(process) == 1
        assert process.output == "out\nbad things happened\n"
        assert process.stderr == "bad things happened\n"
        assert process.memory_event == ""


@needs("root", missing=None if support().enforced else "guest memory not enforced on this machine")
def test_a_commit_limit_kill_is_named(http_emulator: Emulator, vm_name: str) -> None:
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator),
    ):
        guest = direct_guest(session, vm_name, http_emulator)
        process = guest.start_process(PYTHON, ["-c", COMMIT])
        assert finish(process, timeout=30) != 0
        assert process.memory_event.startswith("commit limit reached: the guest refused python")
