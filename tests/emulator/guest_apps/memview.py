"""What Python sees of the machine's memory (os.sysconf, psutil, libc sysinfo()): one JSON
line now and after every input line."""

import ctypes
import json
import os
import sys

import psutil


class SysInfo(ctypes.Structure):
    _fields_ = [
        ("uptime", ctypes.c_long),
        ("loads", ctypes.c_ulong * 3),
        ("totalram", ctypes.c_ulong),
        ("freeram", ctypes.c_ulong),
        ("sharedram", ctypes.c_ulong),
        ("bufferram", ctypes.c_ulong),
        ("totalswap", ctypes.c_ulong),
        ("freeswap", ctypes.c_ulong),
        ("procs", ctypes.c_ushort),
        ("pad", ctypes.c_ushort),
        ("totalhigh", ctypes.c_ulong),
        ("freehigh", ctypes.c_ulong),
        ("mem_unit", ctypes.c_uint),
        ("reserved", ctypes.c_char * 8),
    ]


def say() -> None:
    info = SysInfo()
    ctypes.CDLL(None).sysinfo(ctypes.byref(info))
    page = os.sysconf("SC_PAGE_SIZE")
    vm = psutil.virtual_memory()
    print(
        json.dumps(
            {
                "sysconf_total": os.sysconf("SC_PHYS_PAGES") * page,
                "sysconf_free": os.sysconf("SC_AVPHYS_PAGES") * page,
                "psutil_total": vm.total,
                "psutil_available": vm.available,
                "sysinfo_total": info.totalram * info.mem_unit,
                "sysinfo_free": info.freeram * info.mem_unit,
            }
        ),
        flush=True,
    )


say()
for _ in sys.stdin:
    say()
