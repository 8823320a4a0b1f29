"""Reference management tool (good), counters first: assigned memory and demand from the DM VM
performance counters (Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM in root/cimv2:
Physical Memory, and demand = Physical Memory × Current Pressure / 100, reference
wmi-over-wsman.md "Deriving what WMI lacks"), the settings from Msvm_MemorySettingData, and
the status from GetSummaryInformation (MemoryStatus has no counter and no WMI property).

A VM's counter instance exists only while its partition holds memory: a VM that is off has
none (and with every VM off the class has no instance at all, which is no error —
influxdata/telegraf#16086), so it is reported with 0 and "".
"""

from __future__ import annotations

from typing import Any

from toolkit import memory_status, run
from wmi_tool import connect, number, realized_settings
from wmiclient import WmiClient

VM_COUNTERS = "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM"
CODES = (0, 1, 113, 120)  # Name, ElementName, AvailableMemoryBuffer, SwapFilesInUse


def poll(client: WmiClient, perf: WmiClient) -> dict[str, dict[str, Any]]:
    counters = {str(c["Name"]): c for c in perf.instances(VM_COUNTERS)}
    settings = realized_settings(client)
    code, summaries = client.summaries(CODES)
    if code != 0:
        raise RuntimeError(f"GetSummaryInformation returned {code}")
    out: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        s = settings.get(str(summary["Name"]).upper())
        if s is None:
            continue  # created between the two reads: next poll
        name = str(summary["ElementName"])
        dynamic = str(s["DynamicMemoryEnabled"]).lower() == "true"
        c = counters.get(name, {})
        physical = int(c.get("PhysicalMemory") or 0)
        pressure = int(c.get("CurrentPressure") or 0)
        paging = str(summary.get("SwapFilesInUse") or "false").lower() == "true"
        out[name] = {
            "assigned_mb": physical,
            "demand_mb": physical * pressure // 100 if dynamic else 0,
            "startup_mb": int(s["VirtualQuantity"]),
            "minimum_mb": int(s["Reservation"]),
            "maximum_mb": int(s["Limit"]),
            "buffer": int(s["TargetMemoryBuffer"]),
            "priority": int(s["Weight"]) // 100,
            "dynamic_memory": dynamic,
            "status": memory_status(dynamic, paging, number(summary["AvailableMemoryBuffer"])),
            "vm_id": str(summary["Name"]).upper(),
        }
    return out


if __name__ == "__main__":
    wmi = connect()
    counters = WmiClient(wmi.wsman, "root/cimv2")
    run(lambda: poll(wmi, counters))
