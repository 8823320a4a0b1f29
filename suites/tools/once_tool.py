"""Reference management tool (bad): reads the DM performance counters
(Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM: Physical Memory, Current Pressure)
and the settings ONCE at start, then keeps printing what it read — a cached inventory.
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmiclient import WmiClient, connect_from_env

VM_COUNTERS = "Win32_PerfRawData_BalancerStats_HyperVDynamicMemoryVM"


def read(client: WmiClient) -> dict[str, dict[str, Any]]:
    perf = WmiClient(client.wsman, "root/cimv2")
    counters = {str(c["Name"]): c for c in perf.instances(VM_COUNTERS)}
    names = {
        str(vm["Name"]).upper(): str(vm["ElementName"])
        for vm in client.query(
            "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'"
        )
    }
    out: dict[str, dict[str, Any]] = {}
    for s in client.query("SELECT * FROM Msvm_MemorySettingData"):
        guid = str(s["InstanceID"]).split(":", 1)[1].split("\\", 1)[0].upper()
        name = names.get(guid)
        if name is None:
            continue
        c = counters.get(name, {})
        physical = int(c.get("PhysicalMemory") or 0)
        pressure = int(c.get("CurrentPressure") or 0)
        dynamic = str(s["DynamicMemoryEnabled"]).lower() == "true"
        out[name] = {
            "assigned_mb": physical,
            "demand_mb": physical * pressure // 100 if dynamic else 0,
            "startup_mb": int(s["VirtualQuantity"]),
            "minimum_mb": int(s["Reservation"]),
            "maximum_mb": int(s["Limit"]),
            "buffer": int(s["TargetMemoryBuffer"]),
            "priority": int(s["Weight"]) // 100,
            "dynamic_memory": dynamic,
            "status": ("OK" if pressure < 100 else "Warning") if dynamic and physical else "",
        }
    return out


def main() -> None:
    snapshot = read(WmiClient(connect_from_env()))
    run(lambda: snapshot)


if __name__ == "__main__":
    main()
