"""The `dmh` commands for a lab of many hosts: `emulator serve --fleet` (several emulated hosts
and the inventory that reaches them), `doctor --dm-hosts` (every host in one table) and the
lease part of `sweep` (expired capacity leases, listed or removed).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.capacity import HostLeases, LeaseAnswer
from harness.errors import ConfigError, HarnessError, SettingError
from harness.hyperv.host import HyperVHost, UnsupportedHostError
from harness.hyperv.session import HostSession
from harness.inventory import HostEntry, Inventory, load_inventory

Print = Callable[[str], None]


def serve_fleet(
    spec: str,
    *,
    memory: str,
    port: int,
    write_inventory: Path | None,
    timings: str = "fast",
    tls: bool = False,
    username: str = "dmh",
    guest_os: str = "windows",
    out: Print = print,
    stop: threading.Event | None = None,
) -> int:
    """Serve a fleet until SIGINT/SIGTERM (or `stop`); print each host and the inventory (or
    write it to `write_inventory`). The password is DMH_EMULATOR_PASSWORD's, else generated
    and shown once."""
    from harness.emulator.fleet import PASSWORD_VARIABLE, EmulatorFleet, parse_fleet

    password = os.environ.get(PASSWORD_VARIABLE) or None
    try:
        members = parse_fleet(spec, memory)
    except SettingError as exc:  # a bad option: the usage error, before anything starts
        raise ConfigError(f"--fleet: {exc}") from None
    fleet = EmulatorFleet(
        members,
        password=password,
        username=username,
        timings=timings,
        tls=tls,
        port=port,
        guest_username=os.environ.get("DMH_GUEST_USERNAME") or "guest",
        guest_password=os.environ.get("DMH_GUEST_PASSWORD") or None,
        guest_os=guest_os,
    )
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with fleet:
        for member, emulator in zip(fleet.members, fleet.emulators, strict=True):
            out(f"{member.name}: {emulator.url} (Hyper-V {member.version.value}, "
                f"{member.memory >> 20} MB)")  # fmt: skip
        out(f"username: {username}")
        if password is None:
            out(f"password: {fleet.password}  (set {PASSWORD_VARIABLE} to choose one; the "
                f"inventory reads it from {PASSWORD_VARIABLE})")  # fmt: skip
        if not os.environ.get("DMH_GUEST_PASSWORD"):
            out(f"guest password: {fleet.guest_password}  (set DMH_GUEST_PASSWORD to choose one)")
        text = fleet.inventory_toml()
        if write_inventory is not None:
            # Written whole, then renamed: a script waiting for the file never reads half.
            partial = write_inventory.with_name(write_inventory.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(write_inventory)
            out(f"inventory: {write_inventory}")
        else:
            out(text.rstrip())
        out("serving; Ctrl-C stops")
        try:
            stop.wait()
        finally:
            if write_inventory is not None:
                write_inventory.unlink(missing_ok=True)  # its ports die with the fleet
    out("fleet stopped")
    return 0


@dataclass(frozen=True)
class HostRow:
    """One row of `dmh doctor --dm-hosts`: what was read from the host, or why not."""

    name: str
    address: str
    reachable: str  # "yes", or "no: why"
    hyperv: str = ""  # version and build, read from the host
    free_mb: str = ""
    budget_mb: str = ""
    leases: str = ""

    supported: bool = True

    @property
    def ok(self) -> bool:
        return self.reachable == "yes" and self.supported


_HEADERS = ("host", "address", "reachable", "Hyper-V (from host)", "free MB", "budget MB",
            "leases in use")  # fmt: skip


def check_host(entry: HostEntry) -> HostRow:
    """Reach one host: its facts (version and build) and its capacity leases."""
    address = entry.label.removeprefix(f"{entry.name} (").removesuffix(")")
    budget = f"{entry.budget_mb}" + (f" ({entry.vm_limit} VMs)" if entry.vm_limit else "")
    try:
        session = HostSession(entry.target(), retries=0)
    except ConfigError as exc:
        why = str(exc).removeprefix(f"host {entry.name!r}: ")
        return HostRow(entry.name, address, f"no: {why}", budget_mb=budget)
    try:
        facts = HyperVHost(session).facts()
        answer = HostLeases.of(session, entry).list()
    except (
        UnsupportedHostError
    ) as exc:  # reached, and it said what it is: one the harness cannot drive
        seen = exc.facts
        return HostRow(entry.name, address, "yes", budget_mb=budget, supported=False,
                       hyperv=f"{seen.hyperv_version.value} (build {seen.os_version}): not "
                       "supported (2016 on)")  # fmt: skip
    except HarnessError as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return HostRow(entry.name, address, f"no: {why}", budget_mb=budget)
    finally:
        session.close()
    return HostRow(
        entry.name,
        address,
        "yes",
        hyperv=f"{facts.hyperv_version.value} (build {facts.os_version})",
        free_mb=str(answer.free_mb),
        budget_mb=budget,
        leases=_in_use(answer),
    )


def _in_use(answer: LeaseAnswer) -> str:
    shown = f"{len(answer.leases)} ({answer.leased_mb} MB)"
    return shown + (f", {len(answer.expired)} expired" if answer.expired else "")


def table(rows: Sequence[HostRow]) -> str:
    cells = [_HEADERS] + [
        (r.name, r.address, r.reachable, r.hyperv, r.free_mb, r.budget_mb, r.leases) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def doctor_hosts(path: Path, out: Print = print) -> int:
    """Every host of the inventory in one table; 0 when all are reachable, else 3."""
    inventory = load_inventory(path)
    rows = [check_host(entry) for entry in inventory]
    out(f"inventory: {inventory.source} ({len(inventory)} hosts)")
    out(table(rows))
    unreachable = [r.name for r in rows if r.reachable != "yes"]
    unsupported = [r.name for r in rows if not r.supported]
    if unreachable:
        out(f"unreachable: {', '.join(unreachable)}")
    if unsupported:
        out(f"not supported: {', '.join(unsupported)}")
    if unreachable or unsupported:
        return 3
    return 0


def sweep_leases(host: HostLeases, remove: bool, out: Print = print) -> int:
    """List (or with `remove` drop) one host's expired capacity leases; their number."""
    answer = host.sweep() if remove else host.list()
    verb = "removed" if remove else "expired"
    for lease in answer.expired:
        out(f"{verb} lease {lease.id} on {host.name} ({lease.mb} MB, run {lease.run_id}, "
            f"owner {lease.owner})")  # fmt: skip
    for lease in answer.leases:
        out(f"kept lease {lease.id} on {host.name} ({lease.mb} MB, run {lease.run_id}, "
            f"owner {lease.owner}: renewed by a live run)")  # fmt: skip
    return len(answer.expired)


def sweep_inventory(path: Path, out: Print = print) -> list[tuple[HostEntry, HostSession]]:
    """Sessions to every host of an inventory, for `dmh sweep --dm-hosts` (the caller closes
    them); unreachable hosts are said and skipped."""
    inventory: Inventory = load_inventory(path)
    sessions = []
    for entry in inventory:
        try:
            sessions.append((entry, HostSession(entry.target(), retries=0)))
        except ConfigError as exc:
            out(f"{entry.name}: skipped: {exc}")
    return sessions
