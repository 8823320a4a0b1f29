"""Capacity leases kept on the hosts, so runs from different controllers share a lab without
a server of ours: before a VM is created its maximum memory is leased on a host (the
capacity-lease script checks and records it atomically there, under a host-wide mutex); a
heartbeat renews the leases a process holds, so a killed run's leases expire and its capacity
returns. A host whose leases plus the request exceed its budget, or whose free memory minus
its reserve is short, is not used: a VM on an overcommitted host changes the very behaviour
under test (Hyper-V drops buffers and arbitrates by weight, reference §3.5).

When every host of the lab is full, `lease_in_lab` waits with progress lines and, at its
deadline, raises CapacityError: an infrastructure failure, so the run is INCONCLUSIVE with the
reason, never a verdict on the app.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.deadline import Deadline, Heartbeat, wait_until
from harness.errors import DeadlineError, HostError, SettingError
from harness.hyperv.host import prop, text
from harness.hyperv.session import HostSession
from harness.inventory import DEFAULT_RESERVE_MB, HostEntry
from harness.lease import machine_name

log = logging.getLogger(__name__)

SCRIPT = "capacity-lease"
DEFAULT_TTL_S = 60
DEFAULT_WAIT_S = 300.0  # how long a run waits for a full lab (LISA's wait_resource_timeout)
PROGRESS_EVERY_S = 10.0


class CapacityError(DeadlineError):
    """No host of the lab had the capacity asked for within the deadline: the run is broken
    (inconclusive), not failed; says what was asked and each host's reason."""

    def __init__(self, message: str, *, mb: int, reasons: Sequence[str]) -> None:
        self.mb = mb
        self.reasons = tuple(reasons)
        super().__init__(message)


@dataclass(frozen=True)
class HostLease:
    """One lease as the host keeps it."""

    id: str
    owner: str  # machine/pid of the process that holds it
    run_id: str
    mb: int
    created: int  # epoch seconds
    expires: int


@dataclass(frozen=True)
class LeaseAnswer:
    """What the capacity-lease script answered: granted or not (and why), the host's free
    memory, what its live leases add up to; for List and Sweep the live leases themselves and
    those that had expired (dropped by Sweep)."""

    granted: bool
    lease_id: str
    reason: str
    free_mb: int
    leased_mb: int
    lease_count: int
    leases: tuple[HostLease, ...]
    expired: tuple[HostLease, ...]


def owner_of_this_process() -> str:
    return f"{machine_name()}/{os.getpid()}"


class HostLeases:
    """The leases of one host, through a session to it; limits from its inventory entry."""

    def __init__(
        self,
        session: HostSession,
        *,
        name: str = "",
        budget_mb: int = 0,
        vm_limit: int = 0,
        reserve_mb: int = DEFAULT_RESERVE_MB,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1:
            raise SettingError("lease ttl", ttl_s, "must be a whole number of seconds ≥ 1")
        self.session = session
        self.name = name or session.target.label
        self.budget_mb = budget_mb
        self.vm_limit = vm_limit
        self.reserve_mb = reserve_mb
        self.ttl_s = ttl_s

    @classmethod
    def of(cls, session: HostSession, entry: HostEntry, ttl_s: int = DEFAULT_TTL_S) -> HostLeases:
        return cls(session, name=entry.name, budget_mb=entry.budget_mb, vm_limit=entry.vm_limit,
                   reserve_mb=entry.reserve_mb, ttl_s=ttl_s)  # fmt: skip

    def _run(self, action: str, **parameters: Any) -> LeaseAnswer:
        results = self.session.script(SCRIPT, Action=action, **parameters)
        if len(results) != 1:
            raise HostError(f"answered {len(results)} objects, not one", host=self.name,
                            command=f"script {SCRIPT}")  # fmt: skip
        return _answer(results[0])

    def acquire(self, mb: int, run_id: str, *, lease_id: str = "", owner: str = "") -> LeaseAnswer:
        """Lease `mb` MB for `run_id` (idempotent by lease id: a retried request is one lease)."""
        return self._run(
            "Acquire",
            LeaseId=lease_id or uuid.uuid4().hex,
            Owner=owner or owner_of_this_process(),
            RunId=run_id,
            MB=int(mb),
            BudgetMB=self.budget_mb,
            ReserveMB=self.reserve_mb,
            VmLimit=self.vm_limit,
            TtlSeconds=self.ttl_s,
        )

    def renew(self, lease_id: str) -> LeaseAnswer:
        return self._run("Renew", LeaseId=lease_id, TtlSeconds=self.ttl_s)

    def release(self, lease_id: str) -> bool:
        return self._run("Release", LeaseId=lease_id).granted

    def list(self) -> LeaseAnswer:
        """Live and expired leases, changing nothing."""
        return self._run("List")

    def sweep(self) -> LeaseAnswer:
        """Drop the expired leases (every Acquire does too); `expired` lists them."""
        return self._run("Sweep")


def _answer(raw: Any) -> LeaseAnswer:
    return LeaseAnswer(
        granted=bool(prop(raw, "Granted")),
        lease_id=text(prop(raw, "LeaseId")),
        reason=text(prop(raw, "Reason")),
        free_mb=int(prop(raw, "FreeMB") or 0),
        leased_mb=int(prop(raw, "LeasedMB") or 0),
        lease_count=int(prop(raw, "LeaseCount") or 0),
        leases=_leases(prop(raw, "Leases")),
        expired=_leases(prop(raw, "Expired")),
    )


def _leases(raw: Any) -> tuple[HostLease, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list | tuple) else [raw]
    return tuple(
        HostLease(
            id=text(prop(item, "Id")),
            owner=text(prop(item, "Owner")),
            run_id=text(prop(item, "RunId")),
            mb=int(prop(item, "MB") or 0),
            created=int(prop(item, "Created") or 0),
            expires=int(prop(item, "Expires") or 0),
        )
        for item in items
    )


class Renewer:
    """The heartbeat: renews every lease this process holds, every third of its TTL, from a
    daemon thread (a killed process stops renewing, and its leases expire)."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise SettingError("lease renewal interval", interval_s, "must be positive")
        self.interval_s = interval_s
        self._held: dict[str, HostLeases] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: dict[str, str] = {}  # lease id → why it was found gone at renewal

    def hold(self, host: HostLeases, lease_id: str) -> None:
        with self._lock:
            self._held[lease_id] = host
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dmh-lease-renewer",
                                                daemon=True)  # fmt: skip
                self._thread.start()

    def drop(self, lease_id: str) -> None:
        with self._lock:
            self._held.pop(lease_id, None)

    def lost_reason(self, lease_id: str) -> str | None:
        with self._lock:
            return self.lost.get(lease_id)

    def held(self) -> dict[str, HostLeases]:
        with self._lock:
            return dict(self._held)

    def renew_all(self) -> None:
        for lease_id, host in self.held().items():
            try:
                answer = host.renew(lease_id)
            except HostError as exc:  # the next beat tries again; the TTL covers two misses
                log.warning("%s: renewing lease %s failed: %s", host.name, lease_id, exc)
                continue
            if not answer.granted:
                log.error("%s: %s", host.name, answer.reason)
                with self._lock:
                    self.lost[lease_id] = f"{host.name}: {answer.reason}"
                self.drop(lease_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.renew_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 5.0)


@dataclass(frozen=True)
class Placement:
    """Where a lease was granted."""

    host: HostLeases
    lease_id: str
    mb: int


def lease_in_lab(
    hosts: Sequence[HostLeases],
    mb: int,
    run_id: str,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = 1.0,
    progress: Callable[[str, float], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
    deadline: Deadline | None = None,
) -> Placement:
    """Lease `mb` MB on the first of `hosts` with room, in their order; while none has, wait
    (a progress line every `progress_every_s`), and at the deadline raise CapacityError
    naming each host's reason."""
    if not hosts:
        raise SettingError("hosts", "none", "a lease needs at least one host with the labels asked")
    reasons: dict[str, str] = {}

    def try_each() -> Placement | None:
        for host in hosts:
            lease_id = uuid.uuid4().hex
            try:
                answer = host.acquire(mb, run_id, lease_id=lease_id)
            except HostError as exc:  # one unreachable host must not stop the others
                reasons[host.name] = f"unreachable: {exc.host_message}"
                continue
            if answer.granted:
                return Placement(host, lease_id, mb)
            reasons[host.name] = answer.reason
        return None

    def detail() -> str:
        return "; ".join(f"{name}: {why}" for name, why in reasons.items())

    what = f"a host with {mb} MB of capacity for a VM"

    def report(awaited: str, waited: float) -> None:
        line = f"{awaited} (lab full: {detail()})"
        log.warning("waited %.0f s for %s", waited, line)
        if progress is not None:
            progress(line, waited)

    try:
        return wait_until(
            try_each,
            deadline or Deadline(wait_s),
            what=what,
            interval=poll_s,
            max_interval=max(poll_s, 5.0),
            detail=detail,
            progress=Heartbeat(report, progress_every_s),
        )
    except CapacityError:
        raise
    except DeadlineError as exc:
        raise CapacityError(
            f"no host of the lab had capacity: {exc} (a verdict on an overcommitted host would "
            "be noise, so none is given)",
            mb=mb,
            reasons=[f"{n}: {w}" for n, w in reasons.items()],
        ) from None
