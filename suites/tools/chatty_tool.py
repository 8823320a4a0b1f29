"""Test tool (bad, one defect): the good WMI tool, but every fifth poll it prints a progress
line to stdout (where only the contract's JSON lines belong; stderr is for talk), so its
first polls are clean and the breach shows later in a test.
Expected: not certified, "prints a line outside the contract (not JSON): 'poll 5: ...'".
"""

from __future__ import annotations

import itertools
from typing import Any

from toolkit import run
from wmi_tool import connect, poll
from wmiclient import WmiClient

POLLS = itertools.count(1)


def poll_and_chat(client: WmiClient) -> dict[str, dict[str, Any]]:
    out = poll(client)
    n = next(POLLS)
    if n % 5 == 0:
        print(f"poll {n}: {len(out)} VMs")
    return out


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_and_chat(client))
