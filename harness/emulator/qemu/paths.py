"""Guest paths of a QEMU guest and where they are on the host: the writable part of the
guest's file system is its scratch directory, /dmh in the guest."""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

from harness.emulator.errors import GuestError
from harness.emulator.qemu.launcher import GUEST_SCRATCH


def scratch_parts(guest_path: str) -> list[str]:
    """The parts of a guest path below the scratch directory: laid out as the process
    backend lays out its guest directory (relative paths at its root, 'C:\\x' under C/);
    absolute Linux paths outside /dmh are the guest's read-only shares."""
    text = str(guest_path)
    if "\\" in text or re.match(r"^[A-Za-z]:", text):
        win = PureWindowsPath(text)
        parts = list(win.parts[1:] if win.anchor else win.parts)
        if win.drive:
            parts.insert(0, win.drive.rstrip(":"))
    else:
        pure = PurePosixPath(text)
        if pure.is_absolute():
            try:
                pure = pure.relative_to(GUEST_SCRATCH)
            except ValueError:
                raise GuestError(
                    f"The path '{guest_path}' is read-only in this guest: only"
                    f" {GUEST_SCRATCH} and relative paths are writable.",
                    target=text, category="PermissionDenied", error_id="ReadOnlyPath",
                ) from None  # fmt: skip
        parts = list(pure.parts)
    if ".." in parts:
        raise GuestError(
            f"The path '{guest_path}' leaves the guest's file system.",
            target=text, category="InvalidArgument", error_id="InvalidParameter",
        )  # fmt: skip
    return parts
