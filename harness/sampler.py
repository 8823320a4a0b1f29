"""Background sampling: the VM's memory state, the guest's counters and the app's stats and
reported view, recorded on the timeline at a fixed cadence, in one host round trip per tick.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from harness.appload import LoadReader
from harness.appview import ViewReader
from harness.errors import ConfigError, HarnessError
from harness.hyperv.guest import (
    DirectChannel,
    Guest,
    GuestProcess,
    ProcessResult,
    guest_sample,
    process_result,
    process_stats,
)
from harness.hyperv.host import HyperVHost, prop, text
from harness.hyperv.linux_ops import LinuxSample
from harness.hyperv.ssh import ShellResult, SSHChannel
from harness.probe import Probe
from harness.timeline import (
    MEMORY_EVENT_KINDS,
    AppSample,
    GuestSample,
    HostSample,
    Sample,
    Timeline,
)
from harness.units import MB

log = logging.getLogger(__name__)

# Seconds after a memory event in which a move of assigned memory is that event's doing.
BALANCER_QUIET = 3.0

# DM VM counters (§4.1), by their CIM property names (Win32_PerfRawData_BalancerStats_
# HyperVDynamicMemoryVM, real-host facts "CIM performance classes") → HostSample fields.
_COUNTERS = {
    "addedmemory": "added_mb",
    "removedmemory": "removed_mb",
    "memoryaddoperations": "add_operations",
    "memoryremoveoperations": "remove_operations",
    "guestvisiblephysicalmemory": "guest_visible_mb",
    "currentpressure": "pressure",
}


class Sampler:
    """Samples one VM (and optionally its guest and the app) onto a timeline."""

    def __init__(
        self,
        host: HyperVHost,
        vm_name: str,
        timeline: Timeline,
        *,
        guest: Guest | None = None,
        process: GuestProcess | None = None,
        probe: Probe | None = None,
        interval: float = 1.0,
    ) -> None:
        channel = guest.channel if guest is not None else None
        if isinstance(channel, DirectChannel) and channel.vm_name != vm_name:
            raise ConfigError(
                f"the sampler's VM {vm_name!r} is not its guest channel's VM {channel.vm_name!r}"
            )
        self.host = host
        self.vm_name = vm_name
        self.timeline = timeline
        self.guest = guest
        self.process = process
        self.probe = probe
        self.view: ViewReader | None = None  # the app's view through its own interface
        self.load: LoadReader | None = None  # the load that exercises the app
        self.interval = interval
        self.errors = 0
        self._reported: dict[str, float] = {}
        self._partial = ""  # the app's last output line, until its newline arrives
        self._assigned: int | None = None  # assigned memory at the last tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> Sample:
        """Take one sample now: one host round trip with PowerShell Direct, and no wait on
        the host (the counters come from CIM performance classes, not Get-Counter)."""
        asked = self.timeline.now()
        channel = self.guest.channel if self.guest is not None else None
        direct = isinstance(channel, DirectChannel)
        params: dict[str, Any] = {"VMName": self.vm_name}
        offset = 0
        if isinstance(channel, DirectChannel):
            params = channel.session_parameters()
            if self.process is not None:
                offset = self.process.offset
                params.update(Key=self.process.key, OutputOffset=offset)
        pending = None
        if isinstance(channel, SSHChannel):
            # SSH: the guest is its own endpoint, asked at the same time as the host, so the
            # tick still takes one round trip's time (its one command reads everything).
            if self.process is not None:
                offset = self.process.offset
            key = self.process.key if self.process is not None else ""
            command = channel.sample_command(key, offset)
            pending = channel.execute_async(command, label="script sample", resend=True)
        raw = self.host.session.script("sample-vm", **params)[0]
        host = _host_sample(raw)
        if prop(raw, "GuestError"):
            # The host part stands; the guest part failed this tick (booting, session lost).
            self.errors += 1
            log.warning("sampling %s: the guest did not answer: %s", self.vm_name,
                        text(prop(raw, "GuestError")))  # fmt: skip
        guest: GuestSample | None = None
        app: AppSample | None = None
        if isinstance(channel, SSHChannel) and pending is not None:
            guest, app = self._ssh_sample(channel, pending, host, offset)
        elif direct and self.guest is not None:
            guest = guest_sample(prop(raw, "Guest")) if prop(raw, "Guest") is not None else None
            if self.process is not None and prop(raw, "App") is not None:
                stats = process_stats(prop(raw, "App"))
                result = process_result(prop(raw, "Output"), offset)
                app = self._app_sample(
                    stats.running, stats.working_set, stats.private_bytes, result
                )
        elif self.guest is not None and host.state == "Running":
            # WinRM channel: the guest is a second endpoint, so a second round trip.
            guest = self.guest.counters()
            if self.process is not None:
                stats = self.process.stats()
                result = self.process.fetch()
                app = self._app_sample(
                    stats.running, stats.working_set, stats.private_bytes, result
                )
        # Stamped when the values were read: halfway through the round trip, not at its end
        # (under load a round trip takes a good part of a second).
        sample = self.timeline.add_sample(host, guest, app, t=(asked + self.timeline.now()) / 2)
        self._note_balancer_move(sample)
        return sample

    def _note_balancer_move(self, sample: Sample) -> None:
        """Record a move of assigned memory that no lever explains as a "balancer" event, so
        the balancer's own moves (the hot-adds after boot, reference §3.1) are memory changes
        that checks wait on, like the levers' moves. A lever's move, or one right after it
        (within BALANCER_QUIET s of the last memory event), is already explained."""
        host = sample.host
        if host is None or host.state != "Running" or not host.assigned_mb:
            self._assigned = None
            return
        before, self._assigned = self._assigned, host.assigned_mb
        if before is None or before == host.assigned_mb:
            return
        last = next(
            (e for e in reversed(self.timeline.events) if e.kind in MEMORY_EVENT_KINDS), None
        )
        if last is not None and sample.t - last.t < BALANCER_QUIET:
            return
        kind = "hot-add" if host.assigned_mb > before else "removal"
        self.timeline.add_event(
            "balancer",
            f"DM {kind} {before}→{host.assigned_mb} MB",
            {"before_mb": before, "after_mb": host.assigned_mb},
            t=sample.t,
        )

    def _ssh_sample(
        self,
        channel: SSHChannel,
        pending: concurrent.futures.Future[ShellResult],
        host: HostSample,
        offset: int,
    ) -> tuple[GuestSample | None, AppSample | None]:
        try:
            done = pending.result(channel.target.command_timeout + channel.target.connect_timeout)
        except HarnessError:
            if host.state != "Running":
                return None, None  # an off or saved VM's guest does not answer: no guest sample
            raise
        sample = LinuxSample.parse(channel.checked("sample", done), offset)
        guest = guest_sample(sample.counters())
        if self.process is None:
            return guest, None
        stats = process_stats(sample.stats())
        result = process_result(sample.result(), offset)
        return guest, self._app_sample(
            stats.running, stats.working_set, stats.private_bytes, result
        )

    def _app_sample(self, running: bool, ws: int, private: int, result: ProcessResult) -> AppSample:
        assert self.process is not None
        new = self.process.feed(result)
        fresh = False
        if self.probe is not None:
            # Only whole lines: a tick may land mid-line; the rest comes with a later tick.
            lines = (self._partial + new).split("\n")
            self._partial = lines.pop()
            if result.exit_code is not None and not new and self._partial:
                # Exited and nothing more came: its last line had no newline.
                lines.append(self._partial)
                self._partial = ""
            parsed = self.probe.parse(lines)
            self._reported.update(parsed)
            fresh = bool(parsed)
        if self.view is not None:
            # The app's own interface (--dm-app-view): one more round trip, at most once per
            # the view's interval; its values are reports like the app's own lines.
            try:
                viewed = self.view.read()
            except HarnessError as exc:
                log.warning("reading the app view of %s failed: %s", self.vm_name, exc)
                viewed = {}
            self._reported.update(viewed)
            fresh = fresh or bool(viewed)
        if self.load is not None:
            self._read_load(self.load)
        return AppSample(
            pid=self.process.pid,
            running=running and result.exit_code is None,
            working_set_mb=round(ws / MB, 1),
            private_mb=round(private / MB, 1),
            exit_code=result.exit_code,
            reported=dict(self._reported),
            memory_event=self.process.memory_event,
            reported_fresh=fresh,
        )

    def _read_load(self, load: LoadReader) -> None:
        """The load's runs since the last tick, on the timeline when they mean something: the
        first that succeeded, the first that failed after it, and any the guest killed."""
        served, failed = load.served, load.failed
        try:
            runs = load.read()
        except HarnessError as exc:
            log.warning("reading the app load of %s failed: %s", self.vm_name, exc)
            return
        for run in runs:
            if run.killed:
                self.timeline.add_event("app", f"app load run {run.describe()}", {"load": run.code})
        if not served and load.served:
            self.timeline.add_event("app", "app load served: a run succeeded", {"load": "0"})
        if failed is None and load.failed is not None:
            self.timeline.add_event(
                "app", f"app load run {load.failed.describe()}", {"load": load.failed.code}
            )

    # -- background ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sampler-{self.vm_name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.timeline.now()
            try:
                self.tick()
            except HarnessError as exc:
                self.errors += 1
                log.warning("sampling %s failed: %s", self.vm_name, exc)
            spent = self.timeline.now() - started
            self._stop.wait(max(0.0, self.interval - spent))


def _host_sample(raw: Any) -> HostSample:
    counters = {str(k).lower(): v for k, v in (prop(raw, "Counters") or {}).items()}
    extra = {field: int(counters[name]) for name, field in _COUNTERS.items() if name in counters}
    assigned = int(prop(raw, "MemoryAssigned", 0)) // MB
    demand = int(prop(raw, "MemoryDemand", 0)) // MB
    extra.setdefault("pressure", round(100 * demand / assigned) if assigned else 0)
    return HostSample(
        state=text(prop(raw, "State")),
        assigned_mb=assigned,
        demand_mb=demand,
        status=text(prop(raw, "MemoryStatus")),
        minimum_mb=int(prop(raw, "Minimum", 0)) // MB,
        maximum_mb=int(prop(raw, "Maximum", 0)) // MB,
        buffer=int(prop(raw, "Buffer", 0)),
        **extra,
    )


host_sample = _host_sample  # one VM's host part, also of sample-vms (harness.fleetsampler)
