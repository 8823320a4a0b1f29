"""Allocate memory in steps until stopped: `touch` writes every page (resident), `commit`
maps private writable memory without touching it (committed, not resident)."""

import ctypes
import mmap
import sys

mode, step_mb = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
held = []
total = 0
for _line in sys.stdin:  # one step per input line, so the test paces it
    size = step_mb << 20
    if mode == "touch":
        block = bytearray(size)
        for i in range(0, size, mmap.PAGESIZE):
            block[i] = 1
        held.append(block)
    else:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            print("refused", flush=True)
            continue
        held.append(addr)
    total += step_mb
    print(f"held {total}", flush=True)
