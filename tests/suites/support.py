"""What the subprocess-driven suite tests share: notes the suites under test write, and the
processes a run left behind, found by the tag its environment carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil


def read_notes(path: Path, kind: str) -> list[dict[str, Any]]:
    """The JSON-lines notes of one kind a suite under test wrote to `path`."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [n for n in map(json.loads, lines) if n["kind"] == kind]


def tagged(tag: str) -> list[psutil.Process]:
    """Every live process whose environment has DMH_TEST_TAG=`tag`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("DMH_TEST_TAG") == tag:
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or not ours to read
            continue
    return found
