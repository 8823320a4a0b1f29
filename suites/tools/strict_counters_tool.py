"""Test tool (bad on some builds): the counters tool written like windows_exporter's DM VM
collector before its fix — it needs every counter of the "Hyper-V Dynamic Memory VM" set,
"Guest Available Memory" included, and drops the whole poll when one is missing. Certified
on a 2022 host; on 2019 and older, where that counter does not exist, it reports nothing
(prometheus-community/windows_exporter#2433).
Expected: certified on 2022; not certified before ("never reported assigned_mb of VM ...").
"""

from __future__ import annotations

from typing import Any

from counters_tool import VM_COUNTERS, poll
from toolkit import run
from wmi_tool import connect
from wmiclient import WmiClient

ALL_COUNTERS = (
    "PhysicalMemory", "GuestVisiblePhysicalMemory", "CurrentPressure", "AveragePressure",
    "MinimumPressure", "MaximumPressure", "AddedMemory", "RemovedMemory",
    "MemoryAddOperations", "MemoryRemoveOperations", "GuestAvailableMemory",
)  # fmt: skip


def poll_all_or_nothing(client: WmiClient, perf: WmiClient) -> dict[str, dict[str, Any]]:
    for instance in perf.instances(VM_COUNTERS):
        missing = [c for c in ALL_COUNTERS if c not in instance]
        if missing:
            raise RuntimeError(f"counter(s) not found: {', '.join(missing)}")
    return poll(client, perf)


if __name__ == "__main__":
    wmi = connect()
    counters = WmiClient(wmi.wsman, "root/cimv2")
    run(lambda: poll_all_or_nothing(wmi, counters))
