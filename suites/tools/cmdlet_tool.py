"""Reference management tool (good): reads Dynamic Memory with the Hyper-V cmdlets over
PSRP (pypsrp's PowerShell), as Checkmk's and Zabbix's Hyper-V agents do: Get-VM for
assigned, demand and status; Get-VMMemory for the settings (bytes → MB), every poll.
"""

from __future__ import annotations

from typing import Any

from pypsrp.powershell import PowerShell, RunspacePool
from toolkit import run
from wmiclient import connect_from_env

MB = 1024 * 1024


def prop(obj: Any, name: str) -> Any:
    for bag in (obj.adapted_properties, obj.extended_properties):
        if name in bag:
            return bag[name]
    return None


def cmdlet(pool: RunspacePool, name: str) -> list[Any]:
    ps = PowerShell(pool)
    ps.add_cmdlet(name)
    output = ps.invoke()
    if ps.had_errors:
        raise RuntimeError(f"{name}: {'; '.join(str(e) for e in ps.streams.error)}")
    return list(output)


def poll(pool: RunspacePool) -> dict[str, dict[str, Any]]:
    vms = cmdlet(pool, "Get-VM")
    if not vms:
        return {}
    memory = {str(prop(m, "VMId")).lower(): m for m in cmdlet(pool, "Get-VMMemory")}
    out: dict[str, dict[str, Any]] = {}
    for vm in vms:
        mem = memory.get(str(prop(vm, "Id")).lower())
        if mem is None:
            continue
        out[str(prop(vm, "Name"))] = {
            "assigned_mb": int(prop(vm, "MemoryAssigned")) // MB,
            "demand_mb": int(prop(vm, "MemoryDemand")) // MB,
            "startup_mb": int(prop(mem, "Startup")) // MB,
            "minimum_mb": int(prop(mem, "Minimum")) // MB,
            "maximum_mb": int(prop(mem, "Maximum")) // MB,
            "buffer": int(prop(mem, "Buffer")),
            "priority": int(prop(mem, "Priority")),
            "dynamic_memory": bool(prop(mem, "DynamicMemoryEnabled")),
            "status": str(prop(vm, "MemoryStatus") or ""),
        }
    return out


def main() -> None:
    with RunspacePool(connect_from_env()) as pool:
        run(lambda: poll(pool))


if __name__ == "__main__":
    main()
