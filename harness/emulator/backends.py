"""The guest backends by name (`--dm-guest-backend`, DMH_GUEST_BACKEND): each is imported only
when it is checked or makes its first guest, so a run that never asks for QEMU never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.emulator.guestface import GuestBackend
from harness.emulator.guestview import GuestProfile
from harness.errors import SettingError


@dataclass(frozen=True)
class Backend:
    """How one backend makes a guest (its name, profile and directory on the host), which
    guest OSes it runs (a VM of another OS is a process guest), and whether this machine can
    run it (`check` raises, saying what is missing)."""

    make: Callable[[str, GuestProfile, Path], GuestBackend]
    os_names: frozenset[str]
    check: Callable[[], None]


def _process_guest(name: str, profile: GuestProfile, directory: Path) -> GuestBackend:
    from harness.emulator.process.guest import EmulatedGuest

    return EmulatedGuest(name, profile, directory)


def _qemu_guest(name: str, profile: GuestProfile, directory: Path) -> GuestBackend:
    """A Linux guest that is a real QEMU VM; its files are in the VM's scratch directory."""
    from harness.emulator.qemu.guest import QemuGuest

    return QemuGuest(name, profile)


def _process_check() -> None:
    """Every machine runs process guests; what it does not enforce, each guest says."""


def _qemu_check() -> None:
    from harness.emulator.qemu.errors import QemuError
    from harness.emulator.qemu.launcher import available

    missing = available()
    if missing is not None:
        raise QemuError(f"--dm-guest-backend qemu: {missing}", stage="setup")


BACKENDS: Mapping[str, Backend] = {
    "process": Backend(_process_guest, frozenset({"windows", "linux"}), _process_check),
    "qemu": Backend(_qemu_guest, frozenset({"linux"}), _qemu_check),
}
DEFAULT = "process"


def backend(name: str) -> Backend:
    """The backend called `name`; a clear error for any other name."""
    found = BACKENDS.get(name)
    if found is None:
        rule = "must be one of " + ", ".join(repr(n) for n in BACKENDS)
        raise SettingError("guest_backend", name, rule)
    return found


def make_guest(
    backend_name: str, name: str, profile: GuestProfile, directory: Path
) -> GuestBackend:
    """A new guest of the named backend, or a process guest for an OS that backend does not
    run (the QEMU backend runs Linux guests only)."""
    chosen = backend(backend_name)
    if profile.os_name not in chosen.os_names:
        chosen = BACKENDS[DEFAULT]
    return chosen.make(name, profile, directory)
