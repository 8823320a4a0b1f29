"""Test tool (bad, one defect): walks from each VM to its settings as many scripts do —
`ASSOCIATORS OF {the VM} WHERE ResultClass = Msvm_VirtualSystemSettingData`, PowerShell's
`$vm.GetRelated(...)` — and takes the memory settings of every answer, the last one
winning. A VM's checkpoints are among the answers, so a VM with a checkpoint is shown with
the checkpoint's settings (filter on VirtualSystemType = Microsoft:Hyper-V:System:Realized).
Expected: not certified in the checkpoint test ("does not track maximum_mb").
"""

from __future__ import annotations

from typing import Any

from toolkit import run
from wmi_tool import connect, poll
from wmiclient import WmiClient

SETTINGS = ("startup_mb", "minimum_mb", "maximum_mb", "buffer", "priority")


def poll_related(client: WmiClient) -> dict[str, dict[str, Any]]:
    out = poll(client)
    for values in out.values():
        vm = f'{{Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="{values["vm_id"]}"}}'
        for vssd in client.query(
            f"ASSOCIATORS OF {vm} WHERE ResultClass = Msvm_VirtualSystemSettingData"
        ):
            path = f"{{Msvm_VirtualSystemSettingData.InstanceID='{vssd['InstanceID']}'}}"
            for m in client.query(
                f"ASSOCIATORS OF {path} WHERE ResultClass = Msvm_MemorySettingData"
            ):
                values.update(
                    startup_mb=int(m["VirtualQuantity"]), minimum_mb=int(m["Reservation"]),
                    maximum_mb=int(m["Limit"]), buffer=int(m["TargetMemoryBuffer"]),
                    priority=int(m["Weight"]) // 100,
                )  # fmt: skip
    return out


if __name__ == "__main__":
    client = connect()
    run(lambda: poll_related(client))
