"""Names that carry the emulator process that made them, `<pid>-<start time in 1/100 s>`, so
what an emulator that died without cleaning up (SIGKILL) left behind is told from what a
running one is using (a pid alone may have been reused)."""

from __future__ import annotations

import psutil


def tag() -> str:
    """This process as a name part."""
    me = psutil.Process()
    return f"{me.pid}-{int(me.create_time() * 100)}"


def alive(owner: str) -> bool:
    """Whether the process a `tag()` names is still running."""
    pid_text, _, start_text = owner.partition("-")
    try:
        return int(psutil.Process(int(pid_text)).create_time() * 100) == int(start_text)
    except (ValueError, psutil.Error):
        return False
