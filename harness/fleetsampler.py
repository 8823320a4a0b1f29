"""Sampling at fleet scale: every VM of every host a controller uses, one round trip per host
per tick (the `sample-vms` script), each host ticked by a thread of its own.

`Sampler` (harness.sampler) follows one VM closely (its guest and app too, several times a
second); a controller watching a lab's worth of VMs at 1 Hz needs only the host's side of
each, and one `sample-vm` call per VM per tick costs the controller a PSRP round trip each.
`FleetSampler` asks each host once per tick for all of its VMs (names passed as a
parameter) and appends a host sample to each VM's timeline. A host that fails a tick costs
that host's tick, never another host's; a VM the host does not know is counted and logged,
and the other VMs of the host are still sampled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.hyperv.host import HyperVHost, prop, text
from harness.sampler import host_sample
from harness.timeline import HostSample, Timeline

log = logging.getLogger(__name__)


def sample_vms(host: HyperVHost, names: Sequence[str]) -> dict[str, HostSample | str]:
    """One round trip: each named VM's host sample, or why the host could not give it."""
    if not names:
        return {}
    found: dict[str, HostSample | str] = {}
    for raw in host.session.script("sample-vms", VMNames=list(names)):
        name = text(prop(raw, "Name"))
        error = prop(raw, "Error")
        found[name] = text(error) if error else host_sample(raw)
    for name in names:
        found.setdefault(name, "the host's answer did not name this VM")
    return found


@dataclass
class HostStats:
    """How one host's sampling went."""

    ticks: int = 0
    failed_ticks: int = 0  # the round trip itself failed
    vm_errors: int = 0  # VM samples the host could not give
    round_trip_s: list[float] = field(default_factory=list)  # per tick


class FleetSampler:
    """Ticks every host at `interval` seconds, one `sample-vms` call per host per tick, in a
    thread per host; each VM's samples go to its own timeline (`timelines[host][vm]`)."""

    def __init__(
        self,
        hosts: Mapping[str, HyperVHost],
        vms: Mapping[str, Sequence[str]],
        *,
        interval: float = 1.0,
    ) -> None:
        unknown = set(vms) - set(hosts)
        if unknown:
            raise ConfigError(f"fleet sampler: VMs for hosts it was not given: {sorted(unknown)}")
        if not interval > 0:
            raise ConfigError(f"fleet sampler: interval {interval!r} must be > 0 seconds")
        self.hosts = dict(hosts)
        self.vms = {label: list(names) for label, names in vms.items()}
        self.interval = interval
        self.timelines: dict[str, dict[str, Timeline]] = {
            label: {name: Timeline(name=name) for name in names}
            for label, names in self.vms.items()
        }
        self.stats = {label: HostStats() for label in self.vms}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def tick(self, label: str) -> None:
        """One tick of one host: one round trip, a sample on each of its VMs' timelines."""
        names = self.vms[label]
        stats = self.stats[label]
        started = time.monotonic()
        try:
            found = sample_vms(self.hosts[label], names)
        except HarnessError as exc:
            stats.failed_ticks += 1
            log.warning("sampling host %s failed: %s", label, exc)
            return
        finally:
            stats.ticks += 1
            stats.round_trip_s.append(time.monotonic() - started)
        halfway = (started + time.monotonic()) / 2  # when the values were read, about
        for name in names:
            result = found[name]
            if isinstance(result, str):
                stats.vm_errors += 1
                log.warning("sampling %s on %s: %s", name, label, result)
                continue
            timeline = self.timelines[label][name]
            timeline.add_sample(result, t=halfway - timeline.start)

    # -- background ---------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(label,), name=f"fleet-{label}", daemon=True)
            for label in self.vms
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def __enter__(self) -> FleetSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, label: str) -> None:
        """Ticks on a fixed schedule (not drifting by each round trip's time); a tick that
        overran its slot is not made up for."""
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.tick(label)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:
                next_at = now
            self._stop.wait(next_at - now)


def fleet_summary(stats: Mapping[str, HostStats]) -> dict[str, Any]:
    """Per host: ticks, failures and the median round trip (ms), for logs and benchmarks."""
    out: dict[str, Any] = {}
    for label, s in stats.items():
        trips = sorted(s.round_trip_s)
        out[label] = {
            "ticks": s.ticks,
            "failed_ticks": s.failed_ticks,
            "vm_errors": s.vm_errors,
            "median_round_trip_ms": round(1000 * trips[len(trips) // 2], 2) if trips else None,
        }
    return out
