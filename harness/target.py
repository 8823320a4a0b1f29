"""Where a run ran (`RunTarget`): a lab Hyper-V host, or the embedded emulator and what it
plays. The plugin makes it once, when pytest is configured, and writes it into every record;
every line that says where a verdict comes from (pytest's header, JUnit, Allure, the verdict
box of the HTML report and summary.json) is built from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

EMBEDDED_EMULATOR = "embedded emulator"  # the host label of a run on the embedded emulator
EMULATOR_CAVEAT = "on the embedded emulator — not a certification on Hyper-V"

TargetKind = Literal["emulator", "lab"]


@dataclass(frozen=True)
class RunTarget:
    """The host a run's tests ran on; no credentials, no URL text (a lab host's label only)."""

    kind: TargetKind
    label: str  # what reports show: "psrp://hyperv01.lab:5986", or "embedded emulator"
    # What the emulator plays; for a lab host what it said it is once connected (a host of
    # --dm-hosts, per test), else "".
    hyperv_version: str = ""
    guest_backend: str = ""  # how the emulator runs Linux guests: process, qemu; "" for a lab

    @classmethod
    def emulator(cls, hyperv_version: str, guest_backend: str = "process") -> RunTarget:
        return cls("emulator", EMBEDDED_EMULATOR, hyperv_version, guest_backend)

    @classmethod
    def lab(cls, label: str) -> RunTarget:
        return cls("lab", label)

    @property
    def embedded(self) -> bool:
        return self.kind == "emulator"

    @property
    def description(self) -> str:
        """One line on the host, for pytest's header and each JUnit testcase: a lab host by
        its label, or the emulator, what it plays and what a verdict there is not."""
        if not self.embedded:
            version = f" (Hyper-V {self.hyperv_version})" if self.hyperv_version else ""
            return f"Hyper-V host {self.label}{version}"
        kernels = ""
        if self.guest_backend == "qemu":
            kernels = "; Linux guests are QEMU VMs with a real kernel"
        return (
            f"{EMBEDDED_EMULATOR} (plays Hyper-V {self.hyperv_version}{kernels}), {EMULATOR_CAVEAT}"
        )

    @property
    def hyperv(self) -> str:
        """The Hyper-V version as reports name it: "2022 (embedded emulator)"; for a lab host
        the version it said it is ("" before it was connected)."""
        if not self.embedded:
            return self.hyperv_version
        return (
            f"{self.hyperv_version} ({EMBEDDED_EMULATOR})"
            if self.hyperv_version
            else EMBEDDED_EMULATOR
        )


def where(targets: Iterable[RunTarget]) -> str:
    """Where a verdict comes from, in words for its verdict box: the lab hosts by their
    labels, or (any test on the emulator, or nothing said) what a verdict there is not."""
    chosen = set(targets)
    if not chosen or any(t.embedded for t in chosen):
        return EMULATOR_CAVEAT
    return "on Hyper-V host " + ", ".join(sorted(t.label for t in chosen))


def target_to_json(target: RunTarget) -> dict[str, str]:
    return {
        "kind": target.kind,
        "label": target.label,
        "hyperv_version": target.hyperv_version,
        "guest_backend": target.guest_backend,
    }


def target_from_json(data: Mapping[str, Any]) -> RunTarget:
    kind = str(data["kind"])
    if kind not in ("emulator", "lab"):
        raise ValueError(f"target kind: {kind!r} is not emulator or lab")
    return RunTarget(
        "emulator" if kind == "emulator" else "lab",
        str(data["label"]),
        str(data.get("hyperv_version", "")),
        str(data.get("guest_backend", "")),
    )
