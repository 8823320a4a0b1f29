"""A run's own evidence and its own directory, so a verdict never comes from another run's files.

The pytest plugin writes the evidence into the run's records directory, next to the records:

    run.json               the controller, at session start: run id, start, requested profiles
    collected-<proc>.json  each collecting process (the controller, or every xdist worker):
                           the tests selected and how many `-k`/`-m` deselected
    finished.json          the controller, at session finish: pytest's exit status, interrupted
    record-*.json          one per test that finished (`harness.report.model`)

`load_facts` reads them back; `harness.verdict.decide` weighs them with the records.
Every file is written atomically (a temporary file renamed into place), so a reader never
sees half of one.

Layout of a report directory (`dmh certify --out`, `--dm-report-dir`): every run writes into
`runs/<run id>/`; when it is over, `latest` is switched to it in one atomic rename, and the
top-level names (`summary.json`, `index.html`, …) are fixed symlinks through `latest`. So a
reader sees either the previous finished run or this one, whole, never a mixture, and two
runs in one checkout never touch each other's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.verdict import RunFacts

RUN_FILE = "run.json"
FINISHED_FILE = "finished.json"
COLLECTED_PREFIX = "collected-"
EVIDENCE_VERSION = 1

RUNS_DIR = "runs"
LATEST = "latest"
# What a report directory shows at its top level, each a symlink through `latest`.
PUBLISHED = (
    "summary.json",
    "index.html",
    "junit.xml",
    "report.png",
    "trend.json",
    "plots",
    "timelines",
    "records",
    "allure-results",
)
KEEP_RUNS = 10  # finished runs kept under runs/ besides the latest
STALE_UNFINISHED_S = 24 * 3600  # a run dir with no summary this old is a dead run's

_RUN_ID = re.compile(r"^[0-9a-f]{8,32}$")


class EvidenceError(HarnessError, ValueError):
    """A run evidence file is unreadable or not in the shape this version writes."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: not DM Harness run evidence: {problem}")


@dataclass(frozen=True)
class RunStart:
    run_id: str
    started: float  # epoch seconds
    guest_profiles: tuple[str, ...]  # the profiles the run was asked for


@dataclass(frozen=True)
class Collection:
    """What one process collected: the tests it may run, and how many a selection dropped."""

    process: str  # "main", or the xdist worker id
    selected: tuple[str, ...]  # nodeids
    deselected: int


@dataclass(frozen=True)
class RunEnd:
    exit_status: int
    interrupted: bool
    finished: float  # epoch seconds
    reason: str = ""  # e.g. "KeyboardInterrupt", "stopped by SIGTERM"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run id {run_id!r} must be 8 to 32 lower-case hex digits")
    return run_id


# -- writing ----------------------------------------------------------------------------


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically: readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, 0o644)  # a report, readable like any other (mkstemp makes it 0600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _evidence(path: Path, fact: RunStart | Collection | RunEnd) -> Path:
    """One piece of run evidence: the dataclass's fields, with the evidence version."""
    return write_json(path, {"evidence_version": EVIDENCE_VERSION, **asdict(fact)})


def write_start(records_dir: Path, start: RunStart) -> Path:
    return _evidence(records_dir / RUN_FILE, start)


def write_collection(records_dir: Path, collection: Collection) -> Path:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", collection.process) or "main"
    return _evidence(records_dir / f"{COLLECTED_PREFIX}{name}.json", collection)


def write_end(records_dir: Path, end: RunEnd) -> Path:
    return _evidence(records_dir / FINISHED_FILE, end)


# -- reading ----------------------------------------------------------------------------


def load_facts(
    records_dir: Path,
    *,
    pytest_exit: int | None = None,
    interrupted: bool = False,
    problem: str = "",
) -> RunFacts:
    """The run's facts from its evidence files. What the caller saw itself (`dmh` watched
    pytest's exit code and forwarded the interrupt) overrides what the files say."""
    try:
        return _facts(records_dir, pytest_exit, interrupted, problem)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, EvidenceError):
            raise
        raise EvidenceError(records_dir, f"a field is missing or malformed: {exc!r}") from exc


def _facts(records_dir: Path, pytest_exit: int | None, interrupted: bool, problem: str) -> RunFacts:
    start = _read(records_dir / RUN_FILE)
    end = _read(records_dir / FINISHED_FILE)
    found = [
        c
        for c in (_read(p) for p in sorted(records_dir.glob(f"{COLLECTED_PREFIX}*.json")))
        if c is not None
    ]
    selected: tuple[str, ...] | None = None
    deselected = 0
    if found:
        # Every xdist worker collects the same tests (xdist refuses to run otherwise).
        selected = tuple(_unique(str(n) for c in found for n in c["selected"]))
        deselected = max(int(c["deselected"]) for c in found)
    exit_status = pytest_exit
    if exit_status is None and end is not None:
        exit_status = int(end["exit_status"])
    return RunFacts(
        run_id=None if start is None else str(start["run_id"]),
        started=None if start is None else float(start["started"]),
        guest_profiles=() if start is None else tuple(map(str, start["guest_profiles"])),
        selected=selected,
        deselected=deselected,
        pytest_exit=exit_status,
        interrupted=interrupted or bool(end and end["interrupted"]),
        finished=None if end is None else float(end["finished"]),
        problem=problem,
        interruption="" if end is None else str(end.get("reason", "")),
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(path, str(exc)) from exc
    if not isinstance(data, dict) or data.get("evidence_version") != EVIDENCE_VERSION:
        raise EvidenceError(path, f"evidence_version is not {EVIDENCE_VERSION}")
    return data


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- the report directory ---------------------------------------------------------------


def run_dir(report_dir: Path, run_id: str) -> Path:
    return report_dir / RUNS_DIR / check_run_id(run_id)


def publish(report_dir: Path, run: Path) -> None:
    """Make `run` the report directory's latest run: one atomic switch of `latest`; the
    top-level names point through it (made once; an older layout's real files are replaced)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    _symlink(report_dir / LATEST, os.path.relpath(run, report_dir))
    for name in PUBLISHED:
        link = report_dir / name
        target = f"{LATEST}/{name}"
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)  # the pre-run-directory layout's output
        _symlink(link, target)


def prune(report_dir: Path, keep: int = KEEP_RUNS, now: float | None = None) -> list[Path]:
    """Remove finished runs beyond the newest `keep` (never the latest, never one in progress:
    a run without a summary is left alone unless it is a day old, i.e. its process died)."""
    runs = report_dir / RUNS_DIR
    if not runs.is_dir():
        return []
    now = time.time() if now is None else now
    latest = (report_dir / LATEST).resolve() if (report_dir / LATEST).exists() else None
    finished: list[tuple[float, Path]] = []
    removed: list[Path] = []
    for path in runs.iterdir():
        if not path.is_dir() or path.resolve() == latest:
            continue
        mtime = path.stat().st_mtime
        if (path / "summary.json").is_file():
            finished.append((mtime, path))
        elif now - mtime > STALE_UNFINISHED_S:
            removed.append(path)
    finished.sort(reverse=True)
    removed += [path for _, path in finished[keep:]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}-{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)  # atomic, even over an existing symlink or file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
