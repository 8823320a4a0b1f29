"""Reference management tool (good): reads Dynamic Memory over WMI as a well-written
monitoring agent does — Msvm_MemorySettingData for the settings, GetSummaryInformation for
assigned memory, demand and status (reference §6, wmi-over-wsman.md), every poll.
"""

from __future__ import annotations

from typing import Any

from pypsrp.exceptions import WSManFaultError
from toolkit import INVALID, memory_status, run
from wmiclient import WmiClient, connect_from_env

# Name, ElementName, EnabledState, MemoryUsage, MemoryAvailable, AvailableMemoryBuffer,
# SwapFilesInUse (not on 2008 R2 SP1: then nil)
CODES = (0, 1, 100, 103, 112, 113, 120)


def pick_namespace(client: WmiClient) -> None:
    """v2 where the host has it, else v1 (2008 R2 SP1)."""
    try:
        client.instances("Msvm_VirtualSystemManagementService")
    except WSManFaultError:
        client.namespace = "root/virtualization"


def number(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def realized_settings(client: WmiClient) -> dict[str, Any]:
    """Each VM's own memory settings by the VM's GUID: InstanceID `Microsoft:<VM GUID>\\…`.
    A checkpoint's settings carry the checkpoint's GUID, so they match no VM."""
    return {
        str(s["InstanceID"]).split(":", 1)[1].split("\\", 1)[0].upper(): s
        for s in client.query("SELECT * FROM Msvm_MemorySettingData")
    }


def poll(client: WmiClient) -> dict[str, dict[str, Any]]:
    settings = realized_settings(client)
    code, summaries = client.summaries(CODES)
    if code != 0:
        raise RuntimeError(f"GetSummaryInformation returned {code}")
    out: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        s = settings.get(str(summary["Name"]).upper())
        if s is None:
            continue  # created between the two reads: next poll
        dynamic = str(s["DynamicMemoryEnabled"]).lower() == "true"
        usage = number(summary["MemoryUsage"]) or 0
        available = number(summary["MemoryAvailable"])
        demand = 0 if available in (None, INVALID) else usage * (100 - available) // 100
        paging = str(summary.get("SwapFilesInUse") or "false").lower() == "true"
        out[str(summary["ElementName"])] = {
            "assigned_mb": usage,
            "demand_mb": demand,
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


def connect() -> WmiClient:
    """A client on the host of the contract's environment, in the namespace it has."""
    client = WmiClient(connect_from_env())
    pick_namespace(client)
    return client


def main() -> None:
    client = connect()
    run(lambda: poll(client))


if __name__ == "__main__":
    main()
