"""Msvm_VirtualSystemManagementService methods: GetSummaryInformation (§6.3) and
ModifyResourceSettings (v2) / ModifyVirtualSystemResources (v1) for memory (§6.2).

A memory change goes through EmulatedHost.set_memory, the call Set-VMMemory makes, so WMI
refuses exactly what the cmdlet refuses (harness.settings rules, §2). Return codes (§6.2;
v1 used the 327xx range): 0 done (VM off), 4096 job started (VM on; poll Msvm_ConcreteJob),
4 / 32773 invalid parameter, 5 / 32775 invalid state (a change §2.3 forbids while running).
A change to a running VM is a job on v2: a change the VM's state forbids (§2.3) is
reported through that job, which fails (JobState 10 Exception, ErrorCode 32775 invalid
state), as VMMS validates a running VM's change asynchronously (inferred from §6.2: every
running-VM change is a job; issue 22). v1 (2008 R2 SP1) refuses synchronously (32775).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

from harness.emulator.errors import (
    EmulatorError,
    NotEnoughMemoryError,
    RuntimeMemoryChangeError,
    VmStateError,
)
from harness.emulator.host import EmulatedHost, VMState
from harness.emulator.wmi import classes
from harness.emulator.wmi.cim import (
    CimDatetime,
    EmbeddedInstance,
    EmbeddedInstanceError,
    Instance,
    parse_embedded,
)
from harness.emulator.wmi.wql import Value
from harness.settings import MemoryChange
from harness.units import MB

_NS_W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
_ON = (VMState.Starting, VMState.Running, VMState.Paused)

OK, INVALID_PARAMETER, INVALID_STATE, JOB_STARTED = 0, 4, 5, 4096
V1_CODES = {OK: 0, INVALID_PARAMETER: 32773, INVALID_STATE: 32775, JOB_STARTED: 4096}
JOB_COMPLETED, JOB_EXCEPTION = 7, 10


@dataclass(frozen=True)
class Outcome:
    """What a modify call returns: its code, the job (if one was started), the settings."""

    code: int
    job: Instance | None
    resulting: tuple[Instance, ...]
    detail: str = ""


class Jobs:
    """Msvm_ConcreteJob instances of the calls made, newest kept (bounded)."""

    def __init__(self, keep: int = 256) -> None:
        self._jobs: OrderedDict[str, dict[str, Value]] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def add(self, ok: bool, description: str, error: str = "", error_code: int = 32768) -> str:
        job_id = str(uuid.uuid4()).upper()
        now = CimDatetime.of(datetime.now(timezone.utc))
        props: dict[str, Value] = {
            "Caption": "Modifying resource settings",
            "Description": description,
            "ElementName": "Modify Resource Settings",
            "ErrorCode": 0 if ok else error_code,
            "ErrorDescription": "" if ok else error,
            "InstanceID": job_id,
            "JobState": JOB_COMPLETED if ok else JOB_EXCEPTION,
            "JobStatus": "Job completed successfully." if ok else "Job failed.",
            "JobType": 3,  # modify resource settings
            "PercentComplete": 100,
            "StartTime": now,
            "TimeOfLastStateChange": now,
            "TimeSubmitted": now,
        }
        with self._lock:
            self._jobs[job_id] = props
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        return job_id

    def instances(self, namespace: str) -> list[Instance]:
        with self._lock:
            return [
                Instance(namespace, "Msvm_ConcreteJob", ("InstanceID",), dict(props))
                for props in self._jobs.values()
            ]


# -- GetSummaryInformation -----------------------------------------------------------------


def requested_codes(body: ET.Element, p: str) -> list[int]:
    """RequestedInformation values; a value that is not a number is an invalid parameter."""
    out = []
    for node in body.iterfind(f"{{{p}}}RequestedInformation"):
        text = (node.text or "").strip()
        if not text.isdigit():
            raise ValueError(f"RequestedInformation {text!r} is not an unsigned integer")
        out.append(int(text))
    return out


def setting_data_ids(body: ET.Element, p: str) -> list[str]:
    """The InstanceIDs of the Msvm_VirtualSystemSettingData references in SettingData."""
    ids = []
    for ref in body.iterfind(f"{{{p}}}SettingData"):
        selector = ref.find(f".//{{{_NS_W}}}Selector[@Name='InstanceID']")
        if selector is None:
            raise ValueError("a SettingData reference has no InstanceID selector")
        ids.append((selector.text or "").strip())
    return ids


def summary_information(
    host: EmulatedHost, namespace: str, setting_ids: Sequence[str], codes: Sequence[int]
) -> tuple[int, list[tuple[Instance, tuple[str, ...]]]]:
    """(ReturnValue, [(summary, requested properties)]); all VMs when no SettingData."""
    snap = classes.Snapshot.take(host)
    by_id = {f"Microsoft:{str(vm.id).upper()}".casefold(): vm for vm in snap.vms}
    chosen = [by_id.get(i.casefold()) for i in setting_ids] if setting_ids else list(snap.vms)
    wanted = tuple(classes.SUMMARY_CODES[c] for c in codes if c in classes.SUMMARY_CODES)
    # A SettingData that names no VM (gone, or never was) still gets its entry, empty (every
    # property nil), and the call succeeds: the output array is one entry per SettingData,
    # in order (MicrosoftDocs/win32 HyperV_v2
    # getsummaryinformation-msvm-virtualsystemmanagementservice.md; issue 22).
    return OK, [
        (classes.summary(snap, namespace, vm) if vm else classes.empty_summary(namespace), wanted)
        for vm in chosen
    ]


# -- ModifyResourceSettings ----------------------------------------------------------------


def _int(inst: EmbeddedInstance, name: str) -> int | None:
    if not inst.has(name):
        return None
    raw = inst.get(name)
    if raw is None or isinstance(raw, tuple):
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise _Invalid(f"{name} {raw!r} is not an integer") from None


def _bool(inst: EmbeddedInstance, name: str) -> bool | None:
    raw = inst.get(name) if inst.has(name) else None
    if raw is None or isinstance(raw, tuple):
        return None
    text = raw.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _Invalid(f"{name} {raw!r} is not a boolean")


class _Invalid(Exception):
    """A property value that cannot be read as its CIM type."""


def modify_memory(host: EmulatedHost, jobs: Jobs, namespace: str, texts: Sequence[str]) -> Outcome:
    """Apply each embedded Msvm_MemorySettingData; stop at the first refusal."""
    if not texts:
        return Outcome(INVALID_PARAMETER, None, (), "ResourceSettings is empty")
    resulting: list[Instance] = []
    job: Instance | None = None
    code = OK
    for text in texts:
        try:
            inst = parse_embedded(text)
        except EmbeddedInstanceError as exc:
            return Outcome(INVALID_PARAMETER, None, (), str(exc))
        if inst.class_name.casefold() != "msvm_memorysettingdata":
            return Outcome(
                INVALID_PARAMETER,
                None,
                (),
                f"class {inst.class_name!r}: the emulator modifies only Msvm_MemorySettingData",
            )
        outcome = _modify_one(host, jobs, namespace, inst)
        if outcome.code not in (OK, JOB_STARTED):
            return outcome
        resulting.extend(outcome.resulting)
        if outcome.job is not None:
            job, code = outcome.job, JOB_STARTED
    return Outcome(code, job, tuple(resulting))


def _modify_one(host: EmulatedHost, jobs: Jobs, namespace: str, inst: EmbeddedInstance) -> Outcome:
    instance_id = inst.get("InstanceID")
    if not isinstance(instance_id, str):
        return Outcome(INVALID_PARAMETER, None, (), "the instance has no InstanceID")
    vm = next(
        (
            v
            for v in host.find_vms("*")
            if classes.memory_instance_id(v.id).casefold() == instance_id.casefold()
        ),
        None,
    )
    if vm is None:
        return Outcome(INVALID_PARAMETER, None, (), f"no memory settings {instance_id!r}")
    try:
        weight = _int(inst, "Weight")
        if weight is not None and not 0 <= weight <= 10000:
            raise _Invalid(f"Weight {weight} is outside 0..10000 (§2.2)")
        wanted = MemoryChange(
            dynamic=_bool(inst, "DynamicMemoryEnabled"),
            startup=_mb(_int(inst, "VirtualQuantity")),
            minimum=_mb(_int(inst, "Reservation")),
            maximum=_mb(_int(inst, "Limit")),
            buffer=_int(inst, "TargetMemoryBuffer"),
            priority=None if weight is None else weight // 100,
        )
    except _Invalid as exc:
        return Outcome(INVALID_PARAMETER, None, (), str(exc))
    # A client sends the whole instance back: only what differs is a change, and the
    # final combination is validated as one write, as Set-VMMemory's single Put is (§1.1).
    current = vm.memory
    changes = {k: v for k, v in wanted.fields().items() if getattr(current, k) != v}
    if not current.dynamic and changes.get("dynamic") is not True:
        # minimum/maximum/buffer of a static VM are stored but unused: not a DM change
        for unused in ("minimum", "maximum", "buffer"):
            changes.pop(unused, None)
    try:
        record = host.set_memory(vm.id, MemoryChange(**changes))  # type: ignore[arg-type]
    except (RuntimeMemoryChangeError, VmStateError) as exc:
        if namespace != classes.V1 and vm.state in _ON:
            job_id = jobs.add(False, f"Modifying memory of '{vm.name}'", exc.message, 32775)
            return Outcome(JOB_STARTED, _job(jobs, namespace, job_id), ())
        return Outcome(INVALID_STATE, None, (), exc.message)
    except NotEnoughMemoryError as exc:
        job_id = jobs.add(False, f"Modifying memory of '{vm.name}'", exc.message)
        return Outcome(JOB_STARTED, _job(jobs, namespace, job_id), ())
    except EmulatorError as exc:
        return Outcome(INVALID_PARAMETER, None, (), exc.message)
    snap = classes.Snapshot.take(host)
    settings = [
        i
        for i in classes.memory_settings(snap, namespace)
        if i.properties["InstanceID"] == classes.memory_instance_id(record.id)
    ]
    if record.state in _ON and changes:
        job_id = jobs.add(True, f"Modifying memory of '{vm.name}'")
        return Outcome(JOB_STARTED, _job(jobs, namespace, job_id), tuple(settings))
    return Outcome(OK, None, tuple(settings))


def _mb(value: int | None) -> int | None:
    return None if value is None else value * MB


def _job(jobs: Jobs, namespace: str, job_id: str) -> Instance:
    return next(j for j in jobs.instances(namespace) if j.properties["InstanceID"] == job_id)
