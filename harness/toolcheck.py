"""Certify a host-side management tool: run it on the controller, read what it believes
(JSON lines `{"vm", "metric", "value"}`), sample the host's truth (Get-VM / Get-VMMemory)
on the same clock, and check that each metric tracks the truth within a stated time.

The tool contract is in the README ("Certify a management tool"). A failed check raises
ToolCheckFailed (an AssertionError: the tool misbehaved) whose first line is the diagnosis,
e.g. "reports the startup memory as the VM's memory".
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from harness.config import HostTarget
from harness.errors import HarnessError
from harness.hyperv.host import VMInfo
from harness.units import MB

log = logging.getLogger(__name__)

METRICS = (
    "assigned_mb",
    "demand_mb",
    "startup_mb",
    "minimum_mb",
    "maximum_mb",
    "buffer",
    "priority",
    "dynamic_memory",
    "status",
)
SIZE_METRICS = ("assigned_mb", "demand_mb", "startup_mb", "minimum_mb", "maximum_mb")
TRACK_WITHIN = 15.0  # seconds a tool may take to show what the host shows (the stated time)
LAG = 3.0  # a report may show truth up to this old (the tool read it, then printed it)
SLACK = 1.0  # ...or this much newer (the harness samples the truth on its own cadence)
SENTINEL = 2147483647  # int.MaxValue: WMI's "no data"
Value = int | float | bool | str


class ToolCheckFailed(AssertionError):
    """The tool under test reported something the host did not show (a product failure)."""


@dataclass(frozen=True)
class Report:
    t: float
    vm: str
    metric: str
    value: Value
    vm_id: str = ""  # the VM's GUID when the tool gives one (optional), upper case


def truth_of(vm: VMInfo) -> dict[str, Value]:
    """The host's truth for one VM, in the contract's metrics and units."""
    m = vm.memory
    return {
        "assigned_mb": vm.memory_assigned // MB,
        "demand_mb": vm.memory_demand // MB,
        "startup_mb": m.startup // MB,
        "minimum_mb": m.minimum // MB,
        "maximum_mb": m.maximum // MB,
        "buffer": m.buffer,
        "priority": m.priority,
        "dynamic_memory": m.dynamic,
        "status": vm.memory_status,
    }


def same(metric: str, reported: Value, truth: Value, assigned_mb: int = 0) -> bool:
    """Sizes agree within 1 MB, demand within 1 % of assigned memory more (the step of
    both of its derivations, from MemoryAvailable or from Current Pressure, §1.3, §4.1);
    flags must be booleans; status compares case-blind (§8.15)."""
    if metric == "dynamic_memory":
        return isinstance(reported, bool) and reported == truth
    if metric == "status":
        return isinstance(reported, str) and reported.casefold() == str(truth).casefold()
    if isinstance(reported, bool) or not isinstance(reported, int | float):
        return False
    if isinstance(truth, bool) or not isinstance(truth, int):
        return False
    tolerance = 1 if metric in SIZE_METRICS else 0
    if metric == "demand_mb":
        tolerance += max(0, assigned_mb) // 100 + 1
    return abs(reported - truth) <= tolerance


DUPLICATE_RULE = "the same VM and metric twice in a row, with two values"
KEYS = {"vm", "metric", "value"}
OPTIONAL_KEYS = {"vm_id"}


@dataclass(frozen=True)
class Breach:
    """A stdout line outside the contract, and the rule it broke."""

    t: float
    line: str  # as printed, at most 200 characters
    rule: str


def parse_line(line: str, t: float) -> Report | Breach:
    """One stdout line of the tool: a Report, or the Breach that names the rule it broke."""
    quoted = line[:200]
    try:
        data = json.loads(line)
    except ValueError:
        return Breach(t, quoted, "not JSON")
    if not isinstance(data, dict):
        return Breach(t, quoted, "not a JSON object")
    keys = set(data)
    if not keys >= KEYS or keys - KEYS - OPTIONAL_KEYS:
        return Breach(t, quoted, 'keys must be "vm", "metric", "value" and optionally "vm_id"')
    vm, metric, value = data["vm"], data["metric"], data["value"]
    vm_id = data.get("vm_id", "")
    if not isinstance(vm, str) or not vm.strip() or not isinstance(vm_id, str):
        return Breach(t, quoted, '"vm" must be a non-empty string (and "vm_id" a string)')
    if metric not in METRICS:
        return Breach(t, quoted, f"metric must be one of {', '.join(METRICS)}")
    rule = _value_rule(metric, value)
    if rule:
        return Breach(t, quoted, rule)
    return Report(t, vm, metric, value, normal_id(vm_id))


def normal_id(vm_id: str) -> str:
    """A VM GUID as the harness compares it: upper case, no braces."""
    return vm_id.strip().strip("{}").upper()


def _value_rule(metric: str, value: object) -> str:
    """Why `value` cannot be a value of `metric` ('' when it can)."""
    if metric == "dynamic_memory":
        return "" if isinstance(value, bool) else "dynamic_memory must be true or false"
    if metric == "status":
        return "" if isinstance(value, str) else "status must be a string"
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not finite:
        return f"{metric} must be a finite number"
    return ""


def _same_key(a: Report, b: Report) -> bool:
    return (a.vm, a.vm_id, a.metric) == (b.vm, b.vm_id, b.metric)


class ToolProcess:
    """The tool under test as a subprocess; its stdout lines become Reports, or Breaches."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.clock = clock
        self.started = clock()
        self.reports: list[Report] = []
        self.breaches: list[Breach] = []
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._read_out, name="dmh-tool-out", daemon=True),
            threading.Thread(target=self._read_err, name="dmh-tool-err", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read_out(self) -> None:
        assert self._proc.stdout is not None
        last: Report | None = None
        keys: set[tuple[str, str, str]] = set()
        for raw in self._proc.stdout:
            line = raw.strip()
            if not line:
                continue
            parsed = parse_line(line, self.clock())
            with self._lock:
                if isinstance(parsed, Breach):
                    self.breaches.append(parsed)
                    continue
                # A poll prints every metric of every VM once, so a tool that prints several
                # pairs never prints one twice in a row across polls: twice in a row with two
                # values is two records of one thing (two VMs under one name, most often).
                repeated = last is not None and _same_key(last, parsed)
                if repeated and len(keys) > 1 and last is not None and last.value != parsed.value:
                    self.breaches.append(Breach(parsed.t, line[:200], DUPLICATE_RULE))
                keys.add((parsed.vm, parsed.vm_id, parsed.metric))
                self.reports.append(parsed)
                last = parsed

    def _read_err(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.stderr_tail.append(line.rstrip()[:300])

    def breaches_so_far(self) -> list[Breach]:
        with self._lock:
            return list(self.breaches)

    def snapshot(self) -> list[Report]:
        with self._lock:
            return list(self.reports)

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def check_alive(self) -> None:
        code = self._proc.poll()
        if code is not None:
            tail = " | ".join(list(self.stderr_tail)[-5:]) or "(no stderr)"
            raise ToolCheckFailed(f"the tool exited (code {code}) while VMs ran: {tail}")

    def stop(self, timeout: float = 5.0) -> int | None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return self._proc.returncode


class HostTruth:
    """Samples the host's truth for every VM in the background (one list per sample)."""

    def __init__(
        self,
        read: Callable[[], Iterable[VMInfo]],
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.interval = interval
        self.clock = clock
        self.samples: list[tuple[float, dict[str, dict[str, Value]]]] = []
        self.error: HarnessError | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dmh-host-truth", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = {
                    vm.name: {**truth_of(vm), "state": vm.state, "id": normal_id(vm.id)}
                    for vm in self._read()
                }
            except HarnessError as exc:  # a VM removed mid-read: the next sample sees it gone
                self.error = exc
                log.debug("truth sample failed: %s", exc)
            else:
                with self._lock:
                    self.samples.append((self.clock(), now))
            self._stop.wait(self.interval)

    def between(self, start: float, end: float) -> list[tuple[float, dict[str, dict[str, Value]]]]:
        with self._lock:
            return [s for s in self.samples if start <= s[0] <= end]

    def latest(self) -> dict[str, dict[str, Value]]:
        with self._lock:
            return self.samples[-1][1] if self.samples else {}

    def wait_steady(
        self, names: Sequence[str], seconds: float = 3.0, within: float = 60.0
    ) -> float:
        """Wait until each VM's assigned memory and state held for `seconds`; returns then."""
        end = self.clock() + within
        while True:
            now = self.clock()
            window = self.between(now - seconds, now)
            if window and window[0][0] <= now - seconds + self.interval * 1.5:
                values = {
                    (name, s.get(name, {}).get("assigned_mb"), s.get(name, {}).get("state"))
                    for _, s in window
                    for name in names
                }
                if len(values) == len(names) and all(v[1] is not None for v in values):
                    return now
            if now >= end:
                raise HarnessError(
                    f"host memory of {', '.join(names)} not steady within {within:g}s"
                )
            time.sleep(self.interval / 2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class ToolChecks:
    """Deadline-based checks of a running tool against the host's truth. Every check also
    holds the tool to the contract (README "Certify a management tool"): alive, no line
    outside it, the host never reported as a VM — in every test, where the breach appears."""

    def __init__(
        self,
        tool: ToolProcess,
        truth: HostTruth,
        within: float = TRACK_WITHIN,
        host_name: str = "",
    ) -> None:
        self.tool = tool
        self.truth = truth
        self.within = within
        self.host_name = host_name

    def check_contract(self) -> None:
        """The tool runs, printed only contract lines, and never reported the host as a VM."""
        self.tool.check_alive()
        breaches = self.tool.breaches_so_far()
        if breaches:
            first = breaches[0]
            more = f" ({len(breaches) - 1} more such lines)" if len(breaches) > 1 else ""
            raise ToolCheckFailed(
                f"prints a line outside the contract ({first.rule}): {first.line!r}{more}"
            )
        if self.host_name:
            host = self.host_name.casefold()
            for r in self.tool.snapshot():
                if r.vm.casefold() == host:
                    raise ToolCheckFailed(
                        f"reports the host itself ({self.host_name}) as a VM: "
                        f"{json.dumps({'vm': r.vm, 'metric': r.metric, 'value': r.value})!r}"
                    )

    def _matches(self, report: Report, since: float) -> bool:
        for _, sample in self.truth.between(max(since, report.t - LAG), report.t + SLACK):
            vm = sample.get(report.vm, {})
            if report.vm_id and report.vm_id != vm.get("id"):
                continue  # vm_id given: it names the VM (duplicate names are allowed)
            value = vm.get(report.metric)
            assigned = vm.get("assigned_mb")
            size = assigned if isinstance(assigned, int) else 0
            if value is not None and same(report.metric, report.value, value, size):
                return True
        return False

    def agrees(
        self, vms: Sequence[str], metrics: Sequence[str] = METRICS, since: float | None = None
    ) -> None:
        """Within the stated time after `since`, the tool reports each metric of each VM as
        the host shows it then."""
        start = self.truth.clock() if since is None else since
        pending = {(vm, metric) for vm in vms for metric in metrics}
        end = start + self.within
        while pending:
            self.check_contract()
            reports = [r for r in self.tool.snapshot() if r.t >= start]
            for r in reports:
                if (r.vm, r.metric) in pending and self._matches(r, start):
                    pending.discard((r.vm, r.metric))
            if not pending:
                return
            if self.truth.clock() >= end + SLACK:
                vm, metric = sorted(pending, key=lambda p: (METRICS.index(p[1]), p[0]))[0]
                raise ToolCheckFailed(self.diagnose(vm, metric, start, len(pending)))
            time.sleep(0.2)

    def diagnose(self, vm: str, metric: str, since: float, pending: int) -> str:
        """The first line names the defect; the rest shows what was seen. The defects that
        show in one value (a no-data sentinel, a unit) come before the ones that need a
        history ("read once": the host's value changed while the tool's did not)."""
        reports = [r for r in self.tool.snapshot() if r.vm == vm and r.metric == metric]
        after = [r for r in reports if r.t >= since]
        seen = self._truth_values(vm, metric, since, since + self.within)
        more = f" ({pending - 1} more metric(s) also wrong)" if pending > 1 else ""
        if not reports:
            reason = f"never reported {metric} of VM {vm!r}"
        elif not after:
            reason = f"stopped reporting {metric} of VM {vm!r}"
        else:
            reason = self._defect(vm, metric, reports, after[-1].value, seen)
        shown = ", ".join(repr(r.value) for r in after[-5:]) or "nothing"
        host = ", ".join(sorted({str(v) for v in seen})) or "nothing"
        return (
            f"{reason}{more}\n"
            f"VM {vm!r} {metric}: within {self.within:g}s the tool reported {shown}; the host "
            f"showed {host}"
        )

    def _truth_values(self, vm: str, metric: str, start: float, end: float) -> list[Value]:
        values = (s.get(vm, {}).get(metric) for _, s in self.truth.between(start, end))
        return [v for v in values if v is not None]

    def _defect(
        self, vm: str, metric: str, reports: Sequence[Report], value: Value, seen: Sequence[Value]
    ) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value in (SENTINEL, -1):
                return f"reports WMI's no-data value {value} as {metric}"
            if value < 0:
                return f"reports a negative {metric} ({value})"
        if _unit_slip(value, seen):
            return f"reports {metric} in the wrong unit"
        startup = self.truth.latest().get(vm, {}).get("startup_mb")
        moved = any(v != startup for v in seen)
        as_startup = metric in ("assigned_mb", "demand_mb") and value == startup and moved
        # "Read once" needs evidence: over the tool's life the host's value changed (beyond
        # the comparison's tolerance) while every value the tool printed stayed the same.
        history = self._truth_values(vm, metric, self.tool.started, self.truth.clock())
        once = len({r.value for r in reports}) == 1 and _changed(metric, history)
        if (
            as_startup
            and once
            # The host's samples of the 2 s before the tool's first report: what it read.
            and value in self._truth_values(vm, metric, reports[0].t - 2.0, reports[0].t)
        ):
            # The host showed the startup memory when the tool first read: a tool that reads
            # once and one that reports the startup setting print the same from then on.
            return (
                f"reports the startup memory as the VM's memory, or reads {metric} once and "
                f"never again (keeps {value!r}): it started while the host showed the startup "
                "memory, where the two look alike"
            )
        if as_startup:
            return "reports the startup memory as the VM's memory"
        if once:
            return f"reads {metric} once and never again (keeps {reports[0].value!r})"
        return f"does not track {metric}"

    def forgets(self, vm: str, since: float, quiet: float = 3.0) -> None:
        """After `vm` is removed, the tool stops reporting it (while it keeps reporting the
        others) within the stated time."""
        end = since + self.within
        while True:
            self.check_contract()
            reports = self.tool.snapshot()
            last_vm = max((r.t for r in reports if r.vm == vm), default=0.0)
            last_other = max((r.t for r in reports if r.vm != vm), default=0.0)
            if last_other - max(last_vm, since) >= quiet:
                return
            if self.truth.clock() >= end:
                if last_vm >= last_other - quiet:
                    raise ToolCheckFailed(
                        f"keeps reporting a removed VM: {vm!r} was removed {self.within:g}s ago "
                        "and the tool still reports it"
                    )
                raise ToolCheckFailed(
                    f"stopped reporting after a VM was removed: nothing for {quiet:g}s"
                )
            time.sleep(0.2)

    def reported_vms(self) -> set[str]:
        return {r.vm for r in self.tool.snapshot()}


def _changed(metric: str, history: Sequence[Value]) -> bool:
    """Whether the host's value of `metric` moved by more than the comparison tolerates."""
    numbers = [v for v in history if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(history):
        return len(set(history)) > 1
    if not numbers:
        return False
    tolerance = 1 if metric in SIZE_METRICS else 0
    return max(numbers) - min(numbers) > tolerance


def _unit_slip(value: Value, truth: Iterable[Value | None]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        return False
    for t in truth:
        if isinstance(t, int) and not isinstance(t, bool) and t:
            for factor in (1024, 1024 * 1024):
                if abs(value - t * factor) <= factor or abs(value * factor - t) <= factor:
                    return True
    return False


def contract_env(target: HostTarget, interval: float = 1.0) -> dict[str, str]:
    """The environment a tool under test gets (README "Certify a management tool")."""
    scheme = "https" if target.ssl else "http"
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    query = f"auth={target.auth}&ssl={'true' if target.ssl else 'false'}"
    env = {
        "DMH_WSMAN_URL": f"{scheme}://{host}:{target.port}/{target.path}",
        "DMH_PSRP_URL": f"psrp://{quote(target.username)}@{host}:{target.port}?{query}",
        "DMH_HOST_USERNAME": target.username,
        "DMH_HOST_PASSWORD": target.password.reveal(),
        "DMH_HOST_AUTH": target.auth,
        "DMH_TOOL_INTERVAL": f"{interval:g}",
    }
    if isinstance(target.cert_validation, str):
        env["DMH_HOST_CA"] = target.cert_validation
        env["DMH_PSRP_URL"] += f"&cert_validation={quote(target.cert_validation)}"
    return env
