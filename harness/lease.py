"""Who owns a harness VM, written into its Notes, so `dmh sweep` can tell a dead run's VMs
from those of a run still in progress (on this machine or another one sharing the host).

Notes of a harness VM: `dm-harness run=<run id> started=<epoch s> owner=<machine>/<pid>/<pid start>`.
The owner is the process that created the VM (an xdist worker, or pytest itself). On the
machine that created it the owner's liveness is checked directly (a recycled pid is told
apart by its start time); from another machine only the age is known, so a VM counts as
abandoned once it is older than a threshold (a day by default).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import psutil

RUN_TAG = "dm-harness run="  # the prefix harness.hyperv.host writes and looks for
DEFAULT_MAX_AGE_S = 24 * 3600.0


@dataclass(frozen=True)
class Lease:
    run_id: str
    started: float | None = None  # epoch seconds
    machine: str = ""
    pid: int | None = None
    pid_started: float | None = None  # the owner's process start time (epoch seconds)

    @classmethod
    def mine(cls, run_id: str) -> Lease:
        """A lease for a VM this process creates now."""
        me = psutil.Process()
        return cls(run_id, time.time(), machine_name(), me.pid, me.create_time())

    def tags(self) -> str:
        """What follows the run id in the Notes (`harness.hyperv.host.create_vm(lease=…)`)."""
        parts = []
        if self.started is not None:
            parts.append(f"started={int(self.started)}")
        if self.machine and self.pid is not None:
            owner = f"{self.machine}/{self.pid}"
            if self.pid_started is not None:
                owner += f"/{self.pid_started:.2f}"
            parts.append(f"owner={owner}")
        return " ".join(parts)

    def notes(self) -> str:
        tags = self.tags()
        return f"{RUN_TAG}{self.run_id}" + (f" {tags}" if tags else "")


@dataclass(frozen=True)
class Liveness:
    alive: bool | None  # None: cannot tell (a VM of an older harness with no lease)
    why: str


def parse_notes(notes: str) -> Lease | None:
    """The lease in a VM's Notes; None when the VM is not the harness's."""
    if not notes.startswith(RUN_TAG):
        return None
    words = notes[len(RUN_TAG) :].split()
    if not words:
        return None
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    started = _number(fields.get("started"))
    machine, pid, pid_started = "", None, None
    owner = fields.get("owner", "").split("/")
    if len(owner) >= 2 and owner[1].isdigit():
        machine, pid = owner[0], int(owner[1])
        pid_started = _number(owner[2]) if len(owner) > 2 else None
    return Lease(words[0], started, machine, pid, pid_started)


def liveness(
    lease: Lease, *, max_age_s: float = DEFAULT_MAX_AGE_S, now: float | None = None
) -> Liveness:
    """Is the run that owns a VM alive? Checked directly on the machine that created the
    VM; elsewhere, a VM older than `max_age_s` counts as abandoned."""
    now = time.time() if now is None else now
    if lease.machine and lease.pid is not None and lease.machine == machine_name():
        if _running(lease.pid, lease.pid_started):
            return Liveness(True, f"its process {lease.pid} is running on this machine")
        return Liveness(False, f"its process {lease.pid} on this machine has ended")
    if lease.started is None:
        return Liveness(None, "no lease in its Notes (an older harness): give --run-id")
    age = now - lease.started
    where = f" on {lease.machine}" if lease.machine else ""
    if age > max_age_s:
        return Liveness(
            False, f"created {age / 3600:.1f} h ago{where}, over {max_age_s / 3600:g} h"
        )
    return Liveness(True, f"created {age / 3600:.1f} h ago{where}: its run may be in progress")


def machine_name() -> str:
    # No '/' or spaces: the Notes format splits on them.
    return socket.gethostname().replace("/", "_").replace(" ", "_") or "localhost"


def _running(pid: int, started: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process holds the pid: it exists


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
