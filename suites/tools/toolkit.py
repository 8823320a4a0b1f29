"""What every reference tool shares: the poll loop and the contract's output lines.

Contract (README "Certify a management tool"): one JSON object per line on stdout,
`{"vm": name, "metric": metric, "value": value}`, for every VM the tool found, every poll;
poll at least every DMH_TOOL_INTERVAL seconds; run until terminated.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

METRICS = (
    "assigned_mb",
    "demand_mb",
    "startup_mb",
    "minimum_mb",
    "maximum_mb",
    "buffer",
    "priority",
    "dynamic_memory",
    "status",
)
INVALID = 2147483647  # int.MaxValue: "no data" in MemoryAvailable / AvailableMemoryBuffer


def emit(vm: str, values: Mapping[str, Any]) -> None:
    """One line per metric; a "vm_id" among the values (the VM's GUID, optional in the
    contract) goes on every line of that VM instead."""
    vm_id = values.get("vm_id")
    for metric, value in values.items():
        if metric == "vm_id":
            continue
        line: dict[str, Any] = {"vm": vm, "metric": metric, "value": value}
        if vm_id:
            line["vm_id"] = vm_id
        sys.stdout.write(json.dumps(line) + "\n")


def memory_status(dynamic: bool, paging: bool, buffer_pct: int | None) -> str:
    """Get-VM's MemoryStatus from the summary (reference §1.3)."""
    if not dynamic:
        return ""
    if paging:
        return "Paging"
    if buffer_pct is None or buffer_pct == INVALID:
        return ""
    if buffer_pct < 0:
        return "Warning"
    return "OK" if buffer_pct > 80 else "Low"


def run(poll: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
    """Poll forever; a failed poll is logged to stderr and retried (VMs come and go, hosts
    hiccup: a monitoring tool keeps going)."""
    interval = float(os.environ.get("DMH_TOOL_INTERVAL", "1"))
    while True:
        started = time.monotonic()
        try:
            for vm, values in poll().items():
                emit(vm, values)
            sys.stdout.flush()
        except Exception as exc:  # a reference tool survives any failed poll
            print(f"poll failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(max(0.05, interval - (time.monotonic() - started)))
