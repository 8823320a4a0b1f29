"""The guest's LD_PRELOAD library: built from the C source shipped in the package with the
system compiler at first use, cached per source, compiler and machine.

Why a preload library: glibc answers `sysinfo()`, `sysconf(_SC_PHYS_PAGES)`,
`get_phys_pages()` and so `getconf` from the sysinfo system call, which no namespace
virtualizes; a preloaded library reaches every dynamically linked program (the JVM, Node,
Python, coreutils) with one small file read per call. A seccomp user-notify supervisor would
also cover statically linked programs, but it needs a thread per guest answering every
intercepted call and writing into the caller's memory; statically linked programs that make
the call themselves (Go binaries) are the documented exception instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("dmh_guest_preload.c")
ENV_CACHE = "DMH_CACHE_DIR"


@dataclass(frozen=True)
class PreloadLibrary:
    """The built library, or why there is none."""

    path: Path | None
    reason: str = ""


_lock = threading.Lock()
_built: PreloadLibrary | None = None


def library() -> PreloadLibrary:
    """The cached library, built on first use (once per process)."""
    global _built
    with _lock:
        if _built is None:
            _built = _build()
            if _built.path is None:
                log.warning("guest sysinfo()/sysconf() not virtualized: %s", _built.reason)
        return _built


def _cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "dmh"


def _build() -> PreloadLibrary:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return PreloadLibrary(None, "no C compiler (install gcc and libc6-dev)")
    try:
        version = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return PreloadLibrary(None, f"the C compiler {compiler} does not run ({exc})")
    key = hashlib.sha256(
        SOURCE.read_bytes() + version.encode() + platform.machine().encode()
    ).hexdigest()[:16]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / "dmh-cache"):
        target = directory / f"libdmhguest-{key}.so"
        if target.is_file():
            return PreloadLibrary(target)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        result = _compile(compiler, target)
        if result.path is not None or "compile" in result.reason:
            return result
    return PreloadLibrary(None, "no writable cache directory for the guest library")


def _compile(compiler: str, target: Path) -> PreloadLibrary:
    # Built beside the target and renamed: concurrent first uses (xdist workers) never see
    # a half-written library.
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    argv = [compiler, "-O2", "-fPIC", "-shared", "-o", str(partial), str(SOURCE), "-ldl"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return PreloadLibrary(None, f"cannot write {partial.parent} ({exc})")
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return PreloadLibrary(None, f"compile failed: {done.stderr.strip()[:500]}")
    os.replace(partial, target)
    return PreloadLibrary(target)
