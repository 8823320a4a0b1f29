"""Test tool (bad, one defect): the good WMI tool, but when GetSummaryInformation says
"no data" (MemoryAvailable = 2147483647: a VM that is off, or static) it prints that value as
the demand instead of 0 (reference: wmi-over-wsman.md, the "invalid" sentinel).
Expected: not certified, "reports WMI's no-data value 2147483647 as demand_mb".
"""

from __future__ import annotations

from typing import Any

from toolkit import INVALID, run
from wmi_tool import CODES, connect, poll
from wmiclient import WmiClient


def poll_passing_no_data(client: WmiClient) -> dict[str, dict[str, Any]]:
    out = poll(client)
    _, summaries = client.summaries(CODES)
    for summary in summaries:
        values = out.get(str(summary["ElementName"]))
        available = summary["MemoryAvailable"]
        if values is not None and available not in (None, "") and int(available) == INVALID:
            values["demand_mb"] = INVALID
    return out


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_passing_no_data(client))
