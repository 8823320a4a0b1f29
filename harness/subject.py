"""The subject of a certification run (an app or a management tool), checked before anything
is built: a command whose program or script does not exist is a usage error (exit 4), not
a verdict reached after minutes of building VMs (issue 22)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

from harness.errors import ConfigError

PYTHONS = ("python", "python3")
_NO_SCRIPT = ("-m", "-c")  # python -m module / -c code: no script file to look for


def tool_argv(command: str, tools_dir: Path) -> list[str]:
    """The argv a tool command runs as. A first word `python`/`python3` runs with this
    Python (the harness's interpreter, whose packages the reference tools use, whatever
    `python` is on PATH); a first word `name.py` runs with this Python from `tools_dir`
    when it names no directory."""
    argv = shlex.split(command)
    if argv and argv[0] in PYTHONS:
        argv = [sys.executable, *argv[1:]]
    elif argv and argv[0].endswith(".py"):
        script = argv[0] if os.sep in argv[0] else str(tools_dir / argv[0])
        argv = [sys.executable, script, *argv[1:]]
    return argv


def check_tool(command: str, tools_dir: Path, cwd: Path) -> None:
    """The tool's program, and its script when Python runs one, exist here (the tool runs
    on the controller)."""
    try:
        argv = tool_argv(command, tools_dir)
    except ValueError as exc:
        raise ConfigError(f"--tool: {command!r} is not a command line: {exc}") from None
    if not argv:
        raise ConfigError("--tool: the command is empty; name the tool's program")
    _check_program("--tool", argv[0], cwd)
    if argv[0] == sys.executable:
        _check_script("--tool", argv[1:], cwd)


def check_app(command: str, cwd: Path, apps_dir: Path) -> None:
    """What can be known about the app before a guest exists: a relative `name.py` is a file
    in `cwd` or a reference app; a script Python runs, and a program named by a relative
    path, are files in `cwd` (they are copied into the guest from there). Absolute paths and
    programs on PATH name the guest's files, which only the guest can tell."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"--app: {command!r} is not a command line: {exc}") from None
    if not argv:
        raise ConfigError("--app: the command is empty; name the app's program")
    first = argv[0]
    if first.endswith(".py") and not _absolute(first):
        if not (cwd / first).is_file() and ("/" in first or not (apps_dir / first).is_file()):
            raise ConfigError(
                f"--app: {first!r} is neither a file in {cwd} nor a reference app in "
                f"{apps_dir.name}/"
            )
    elif first in PYTHONS:
        _check_script("--app", argv[1:], cwd, local=False)
    elif "/" in first and not _absolute(first) and not (cwd / first).exists():
        raise ConfigError(f"--app: the program {first!r} does not exist (in {cwd})")


def check_subjects(app: str | None, tool: str | None) -> None:
    """One subject per run: an app inside the guest, or a tool on the controller."""
    if app and tool:
        raise ConfigError(
            "--app and --tool: a run certifies one subject, an app inside the guest or a "
            "management tool on the controller; give one of them"
        )


def _check_program(option: str, program: str, cwd: Path) -> None:
    if os.sep in program or "/" in program:
        path = cwd / program
        if not path.is_file():
            raise ConfigError(f"{option}: the program {program!r} does not exist")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"{option}: the program {program!r} is not executable")
    elif shutil.which(program) is None:
        raise ConfigError(f"{option}: the program {program!r} is not on PATH")


def _check_script(option: str, args: list[str], cwd: Path, *, local: bool = True) -> None:
    """The script a Python command line runs (its first word that is not an option)."""
    for word in args:
        if word in _NO_SCRIPT:
            return
        if word.startswith("-"):
            continue
        if (local or not _absolute(word)) and not (cwd / word).is_file():
            raise ConfigError(f"{option}: the script {word!r} does not exist (in {cwd})")
        return


def _absolute(word: str) -> bool:
    return PurePosixPath(word).is_absolute() or bool(PureWindowsPath(word).drive)
