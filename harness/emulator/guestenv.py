"""The environment a guest process starts with: an allow-list of the emulator's variables plus
what the user passes explicitly; never the harness's secrets.

A real VM's processes do not inherit the controller's environment, and the harness keeps host
and guest passwords in `DMH_*PASSWORD*` variables (issue 10 §6).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping

from harness.emulator.errors import GuestError

# What every guest program is told about its guest (the guest's OS, the VM's name).
ENV_OS = "DMH_GUEST_OS"
ENV_NAME = "DMH_GUEST_NAME"

# Names a program needs to run at all (locale, paths, terminal, time zone).
ALLOWED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR")
ALLOWED_PATTERNS = ("LC_*",)
# Further names to pass through, comma-separated, set by the user who starts the emulator.
ENV_PASS = "DMH_GUEST_PASS_ENV"

_SECRET = re.compile(r"^DMH_.*PASSWORD", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return bool(_SECRET.match(name))


def guest_environment(
    explicit: Mapping[str, str] | None, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Allow-listed and pass-through variables of `source` (the emulator's environment),
    then `explicit` on top. A secret named in `explicit` is refused; one named in the
    pass-through list is left out."""
    env_in = os.environ if source is None else source
    passed = {n.strip() for n in env_in.get(ENV_PASS, "").split(",") if n.strip()}
    env: dict[str, str] = {}
    for name, value in env_in.items():
        if is_secret(name):
            continue
        if (
            name in ALLOWED
            or name in passed
            or any(fnmatch.fnmatchcase(name, p) for p in ALLOWED_PATTERNS)
        ):
            env[name] = value
    for name, value in (explicit or {}).items():
        if is_secret(name):
            raise GuestError(
                f"The environment variable '{name}' is not passed to guest programs: names"
                " matching DMH_*PASSWORD* hold the harness's secrets.",
                target=name,
                category="InvalidArgument",
                error_id="InvalidParameter",
            )
        env[name] = value
    env.setdefault("PATH", os.defpath)
    return env
