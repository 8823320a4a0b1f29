"""The capacity-lease script (harness/hyperv/scripts/capacity-lease.ps1) on an emulated host:
one lease store per emulated host, its lock standing in for the host-wide named mutex
(`Global\\DmHarnessLeases`) and its dict for the JSON file under ProgramData, so concurrent
connections (several controllers) check and take capacity atomically, as on a real host.
Expiry is wall-clock epoch seconds, as the script's `[DateTimeOffset]::UtcNow` is.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import bind
from harness.emulator.cmdlets.registry import script
from harness.emulator.cmdlets.shapes import custom
from harness.emulator.errors import InvalidParameterError
from harness.emulator.host import EmulatedHost
from harness.emulator.psobjects import int64
from harness.emulator.psrp import Command
from harness.units import MB

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

ACTIONS = ("Acquire", "Renew", "Release", "List", "Sweep")


@dataclass(frozen=True)
class _Lease:
    id: str
    owner: str
    run_id: str
    mb: int
    created: int
    expires: int

    def shown(self) -> Any:
        return custom(Id=self.id, Owner=self.owner, RunId=self.run_id, MB=int64(self.mb),
                      Created=int64(self.created), Expires=int64(self.expires))  # fmt: skip


class LeaseStore:
    """One host's leases (the script's leases.json) under its mutex."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.leases: dict[str, _Lease] = {}


_STORES: weakref.WeakKeyDictionary[EmulatedHost, LeaseStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def store_of(host: EmulatedHost) -> LeaseStore:
    """The lease store of an emulated host (made the first time a lease is asked for)."""
    with _STORES_LOCK:
        found = _STORES.get(host)
        if found is None:
            found = _STORES[host] = LeaseStore()
        return found


def free_physical_mb(host: EmulatedHost) -> int:
    """Win32_OperatingSystem.FreePhysicalMemory in MB: what the host's VMs leave of its RAM."""
    return (host.available_memory() + host.reserve) // MB


@script("capacity-lease")
def _capacity_lease(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Action", "LeaseId", "Owner", "RunId", "MB", "BudgetMB", "ReserveMB",
                 "VmLimit", "TtlSeconds"])  # fmt: skip
    action = next((a for a in ACTIONS if a.casefold() == p.required("Action").casefold()), None)
    if action is None:
        # [ValidateSet(...)] refuses it before the script runs
        raise InvalidParameterError(
            f"Cannot validate argument on parameter 'Action'. The argument "
            f'"{p.required("Action")}" does not belong to the set "{",".join(ACTIONS)}".',
            target="Action",
        )
    lease_id = p.text("LeaseId") or ""
    mb = p.int64("MB") or 0
    budget = p.int64("BudgetMB") or 0
    reserve = p.int64("ReserveMB")
    reserve = 2048 if reserve is None else reserve
    vm_limit = p.int64("VmLimit") or 0
    ttl = p.int64("TtlSeconds")
    ttl = 60 if ttl is None else ttl
    store = store_of(h.host)
    with store.mutex:
        now = int(time.time())
        every = list(store.leases.values())
        live = [lease for lease in every if lease.expires > now]
        expired = [lease for lease in every if lease.expires <= now]
        keep = every
        granted = False
        reason = ""
        free_mb = free_physical_mb(h.host)
        if action in ("Acquire", "Sweep"):
            keep = live
        if action == "Acquire":
            leased = sum(lease.mb for lease in live)
            if any(lease.id == lease_id for lease in live):
                granted = True
            elif vm_limit > 0 and len(live) + 1 > vm_limit:
                reason = f"its VM limit is reached ({len(live)} of {vm_limit} leased)"
            elif budget > 0 and leased + mb > budget:
                reason = f"its budget is short: {leased} MB of {budget} MB leased, {mb} MB asked"
            elif free_mb - reserve < mb:
                reason = (
                    f"its free memory is short: {free_mb} MB free, {reserve} MB reserve, "
                    f"{mb} MB asked"
                )
            else:
                owner, run_id = p.text("Owner") or "", p.text("RunId") or ""
                keep = [*live, _Lease(lease_id, owner, run_id, mb, now, now + ttl)]
                granted = True
        elif action == "Renew":
            for index, lease in enumerate(keep):
                if lease.id == lease_id and lease.expires > now:
                    keep[index] = replace(lease, expires=now + ttl)
                    granted = True
            if not granted:
                reason = f"lease {lease_id} is gone: it expired before it was renewed"
        elif action == "Release":
            keep = [lease for lease in every if lease.id != lease_id]
            granted = len(keep) < len(every)
        if action != "List":
            store.leases = {lease.id: lease for lease in keep}
        shown = [lease for lease in keep if lease.expires > now]
        listed = action in ("List", "Sweep")  # the leases themselves: only when asked
        return [
            custom(
                Granted=granted,
                LeaseId=lease_id,
                Reason=reason,
                FreeMB=int64(free_mb),
                LeasedMB=int64(sum(lease.mb for lease in shown)),
                LeaseCount=int64(len(shown)),
                Leases=[lease.shown() for lease in shown] if listed else [],
                Expired=[lease.shown() for lease in expired] if listed else [],
            )
        ]
