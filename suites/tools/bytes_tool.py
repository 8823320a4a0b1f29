"""Test tool (bad, one defect): the good WMI tool, but demand_mb in bytes — the "MB" field
holding bytes that Zabbix templates shipped (a-schild/Zabbix-HyperV-Templates #45).
Expected: not certified, "reports demand_mb in the wrong unit".
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmi_tool import connect, poll
from wmiclient import WmiClient


def poll_in_bytes(client: WmiClient) -> dict[str, dict[str, Any]]:
    out = poll(client)
    for values in out.values():
        values["demand_mb"] *= 1024 * 1024
    return out


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_in_bytes(client))
