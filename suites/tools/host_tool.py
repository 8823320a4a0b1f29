"""Test tool (bad, one defect): the good WMI tool, but it lists systems with
`SELECT * FROM Msvm_ComputerSystem` without the `Caption = 'Virtual Machine'` filter, so the
host's own instance ("Hosting Computer System") is reported as a VM too.
Expected: not certified, "reports the host itself (<host>) as a VM".
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmi_tool import connect, poll
from wmiclient import WmiClient


def poll_every_system(client: WmiClient) -> dict[str, dict[str, Any]]:
    out = poll(client)
    for system in client.query("SELECT * FROM Msvm_ComputerSystem"):
        name = str(system["ElementName"])
        out.setdefault(name, {"assigned_mb": 0, "dynamic_memory": False, "status": ""})
    return out


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_every_system(client))
