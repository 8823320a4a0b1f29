"""Hyper-V's cmdlets and the harness's named scripts, served over the emulated host.

Objects carry the real shapes (type names, adapted properties, enums, Int64 byte counts) and
failures come back as Hyper-V's error records (reference §1). Every command joins through one
decorator (`registry`); importing this package registers them all:

- `handler`: the pipeline handler (dispatch, VM lookup, guest credentials, error records)
- `params`: parameter binding;  `shapes`: the objects written
- `vms`, `checkpoints`, `storage`: Hyper-V cmdlets;  `counters`: Get-Counter
- `scripts`: the named scripts;  `guest_ops`: the guest-ops script's operations
- `firmware`: Get-/Set-VMFirmware (Secure Boot, for Linux guests)
- `leases`: the capacity-lease script (one lease store per emulated host)
"""

from __future__ import annotations

from harness.emulator.cmdlets import (
    checkpoints,
    counters,
    firmware,
    guest_ops,
    leases,
    scripts,
    storage,
    vms,
)
from harness.emulator.cmdlets.handler import GuestEndpoint, HyperVHandler
from harness.emulator.cmdlets.registry import script
from harness.emulator.cmdlets.shapes import TEMPLATE_DIR

__all__ = ["TEMPLATE_DIR", "GuestEndpoint", "HyperVHandler", "script_handlers"]
_REGISTERING = (
    checkpoints,
    counters,
    firmware,
    guest_ops,
    leases,
    scripts,
    storage,
    vms,
)  # imported for their decorators


def script_handlers() -> frozenset[str]:
    """Names of the harness scripts the emulator implements (a test checks each has one)."""
    return script.names()
