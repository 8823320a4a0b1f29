"""Get-Counter over the DM counter sets (reference §4.1, §4.2): the host's VM and balancer sets,
and, on a guest's own endpoint, the guest's Memory sets; failures are PDH's, not Hyper-V's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from harness.emulator.cmdlets.params import bind
from harness.emulator.cmdlets.registry import cmdlet
from harness.emulator.countersets import balancer_counters_on
from harness.emulator.errors import CounterError, MissingParameterError
from harness.emulator.host import VMState
from harness.emulator.psobjects import int64, make_object
from harness.emulator.psrp import Command
from harness.wildcards import has_wildcards, like

if TYPE_CHECKING:
    from harness.emulator.cmdlets.handler import HyperVHandler

_COUNTER_PATH = re.compile(
    r"^\\(?:\\[^\\]+\\)?(?P<set>[^\\(]+)(?:\((?P<instance>.*)\))?\\(?P<counter>.+)$"
)
_VM_SET = "hyper-v dynamic memory vm"
_BALANCER_SET = "hyper-v dynamic memory balancer"
_GUEST_SETS = ("memory", "hyper-v dynamic memory integration service")
# A VM's counter instance exists while its partition holds memory, booting or paused too.
_HAS_COUNTERS = (VMState.Starting, VMState.Running, VMState.Paused)
_TYPES = "Microsoft.PowerShell.Commands.GetCounter"
_NO_OBJECT = "The specified object was not found on the computer."


# Characters a perf-counter instance name cannot hold, and what Windows writes instead
# (learn.microsoft.com, PerformanceCounter.InstanceName remarks; real-host facts,
# "Perf-counter instance names are escaped").
_INSTANCE_ESCAPES = str.maketrans({"(": "[", ")": "]", "#": "_", "/": "_", "\\": "_"})


def perf_instance_name(vm_name: str) -> str:
    """A VM's instance name in the "Hyper-V Dynamic Memory VM" set (and its CIM perf class's
    Name): its name with ( ) # / and the backslash replaced."""
    return vm_name.translate(_INSTANCE_ESCAPES)


def _pdh_like(name: str, pattern: str) -> bool:
    """PDH's instance matching: `*` is its only wildcard (an escaped name holds `[` `]`)."""
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(".*".join(parts), name, re.IGNORECASE | re.DOTALL) is not None


@cmdlet("Get-Counter")
def _get_counter(h: HyperVHandler, c: Command, items: list[Any]) -> list[Any]:
    p = bind(c, ["Counter", "SampleInterval", "MaxSamples", "ComputerName", "ErrorAction"])
    paths = p.get("Counter")
    if paths is None:
        raise MissingParameterError("Counter")
    now = datetime.now(timezone.utc)
    samples: list[tuple[str, str, float]] = []
    for path in paths if isinstance(paths, list) else [paths]:
        samples.extend(_counter_samples(h, str(path)))
    if not samples:
        raise CounterError(_NO_OBJECT)
    shaped = [
        make_object(
            (f"{_TYPES}.PerformanceCounterSample",),
            {
                "Path": shown,
                "InstanceName": instance,
                "CookedValue": value,
                "RawValue": int64(int(value)),
                "Timestamp": now,
            },
            to_string=f"{_TYPES}.PerformanceCounterSample",
        )
        for shown, instance, value in samples
    ]
    return [
        make_object(
            (f"{_TYPES}.PerformanceCounterSampleSet",),
            {
                "Timestamp": now,
                "CounterSamples": shaped,
                # PerformanceCounterSampleSet.Readings: "<path> :\n<value>\n\n" per sample
                "Readings": "".join(f"{shown} :\n{value:.15g}\n\n" for shown, _, value in samples),
            },
            to_string=f"{_TYPES}.PerformanceCounterSampleSet",
        )
    ]


def _counter_samples(h: HyperVHandler, path: str) -> list[tuple[str, str, float]]:
    """(path as Get-Counter shows it, instance, value) for each counter `path` names, wildcards
    expanded; PDH's errors for a set, an instance or a counter that does not exist."""
    match = _COUNTER_PATH.match(path)
    if match is None:
        raise CounterError("The specified counter path could not be interpreted.")
    counter_set, instance, counter = (
        match["set"].strip().lower(),
        match["instance"],
        match["counter"],
    )
    sources = _sources(h, counter_set, instance)
    if not sources and instance is not None and "*" not in instance:  # PDH: * only
        raise CounterError("The specified instance is not present.")
    result: list[tuple[str, str, float]] = []
    for inst, values in sources:
        for name, value in values.items():
            if counter != "*" and not like(name, counter):
                continue
            shown = (
                f"\\\\{h.host.name.lower()}\\{counter_set}"
                + (f"({inst.lower()})" if inst else "")
                + f"\\{name.lower()}"
            )
            result.append((shown, inst.lower(), float(value)))
    if sources and not result and not has_wildcards(counter):
        raise CounterError("The specified counter could not be found.")
    return result


def _sources(
    h: HyperVHandler, counter_set: str, instance: str | None
) -> list[tuple[str, Mapping[str, float]]]:
    """(instance, counters by name) of the set's instances that `instance` matches."""
    sources: list[tuple[str, Mapping[str, float]]] = []
    if counter_set == _VM_SET and h.bound_vm is None:
        for vm in h.host.find_vms("*"):
            name = perf_instance_name(vm.name)
            if vm.state in _HAS_COUNTERS and _pdh_like(name, instance or "*"):
                sources.append((name, h.host.vm_counters(vm.id)))
    elif counter_set == _BALANCER_SET and h.bound_vm is None:
        if like("system balancer", instance or "*"):
            # the build's own set (countersets: some builds lack a balancer counter)
            values = balancer_counters_on(h.host.version, h.host.balancer_counters())
            sources.append(("system balancer", values))
    elif h.bound_vm is not None and counter_set in _GUEST_SETS:
        view = h.host.guest_view(h.bound_vm)
        if view is not None:
            prefix = "\\" + counter_set + "\\"
            values = {
                k.split("\\")[-1]: v
                for k, v in view.counters().items()
                if k.lower().startswith(prefix)
            }
            sources.append(("", values))
    else:
        raise CounterError(_NO_OBJECT)
    return sources
