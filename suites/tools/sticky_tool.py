"""Test tool (bad, one defect): the good WMI tool, but it remembers every VM it has seen and
keeps printing a VM's last values after the VM is gone (an inventory that never forgets).
Expected: not certified, "keeps reporting a removed VM".
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmi_tool import connect, poll
from wmiclient import WmiClient

SEEN: dict[str, dict[str, Any]] = {}


def poll_remembering(client: WmiClient) -> dict[str, dict[str, Any]]:
    SEEN.update(poll(client))
    return dict(SEEN)


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_remembering(client))
