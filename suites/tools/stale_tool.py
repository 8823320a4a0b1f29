"""Reference management tool (bad, "the old tool"): written before Dynamic Memory, it takes
Msvm_MemorySettingData.VirtualQuantity — the startup memory — as the VM's memory and its
use, so it never sees hot-add or ballooning (reference: MemoryTools #12). It does read the
other settings, every poll.
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmiclient import WmiClient, connect_from_env


def poll(client: WmiClient) -> dict[str, dict[str, Any]]:
    names = {
        str(vm["Name"]).upper(): str(vm["ElementName"])
        for vm in client.query(
            "SELECT Name, ElementName FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'"
        )
    }
    out: dict[str, dict[str, Any]] = {}
    for s in client.query("SELECT * FROM Msvm_MemorySettingData"):
        guid = str(s["InstanceID"]).split(":", 1)[1].split("\\", 1)[0].upper()
        if guid not in names:
            continue
        memory = int(s["VirtualQuantity"])
        dynamic = str(s["DynamicMemoryEnabled"]).lower() == "true"
        out[names[guid]] = {
            "assigned_mb": memory,
            "demand_mb": memory,
            "startup_mb": memory,
            "minimum_mb": int(s["Reservation"]),
            "maximum_mb": int(s["Limit"]),
            "buffer": int(s["TargetMemoryBuffer"]),
            "priority": int(s["Weight"]) // 100,
            "dynamic_memory": dynamic,
            "status": "OK" if dynamic else "",
        }
    return out


def main() -> None:
    client = WmiClient(connect_from_env())
    run(lambda: poll(client))


if __name__ == "__main__":
    main()
