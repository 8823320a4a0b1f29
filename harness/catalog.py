"""The catalogue: programs as they ship, certified through their own interfaces.

One TOML file per program under `suites/catalog/` says which Debian package it comes from
(its version is read at run time), how to start it in the guest, its view
(`--dm-app-view`), a load that exercises it (`--dm-app-load`, often the program's own
benchmark client), the behaviours it is certified on and why. `dmh catalog run [NAME...]`
certifies each with `dmh certify` on the Linux profile and writes a table, one row per
program and version with the verdict per behaviour and the first line of each failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.appload import parse_load
from harness.appview import parse_view
from harness.errors import ConfigError, SettingError
from harness.expect import BEHAVIOURS, parse_behaviours
from harness.report.model import TestRecord, load_records

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

# process: the emulated guest (fast, runs in CI); qemu: a real Linux kernel under QEMU, which
# shares the host's /usr and /etc read-only, so the program runs as its package installed it
# (slow under TCG: the catalogue's QEMU entries run in benchmarks/catalog_qemu.py, not in CI).
BACKENDS = ("process", "qemu")
_KEYS = {"title", "package", "command", "view", "view_patterns", "load", "expect", "why", "backend"}
_REQUIRED = {"package", "command", "load", "expect", "why"}


@dataclass(frozen=True)
class Entry:
    """One program of the catalogue (`suites/catalog/NAME.toml`)."""

    name: str
    title: str
    package: str  # the Debian package it comes from
    command: str  # started in the guest, from the catalogue's folder
    view: str  # --dm-app-view
    view_patterns: tuple[str, ...]  # --dm-app-view-pattern, for a view of its own
    load: str  # --dm-app-load, run from the catalogue's folder
    expect: tuple[str, ...]
    why: str  # why these behaviours, and what its view's metrics mean
    backend: str
    folder: Path


def load_catalog(folder: Path) -> list[Entry]:
    """Every entry in `folder`, checked: ConfigError names the file, the key and the rule."""
    entries = []
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not TOML ({exc})") from None
        unknown = set(data) - _KEYS
        missing = _REQUIRED - set(data)
        if unknown or missing:
            raise ConfigError(
                f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)} "
                f"(an entry has {', '.join(sorted(_KEYS))})"
            )
        expect = data["expect"]
        backend = data.get("backend", "process")
        patterns = data.get("view_patterns", [])
        try:
            if not isinstance(expect, list) or not all(isinstance(b, str) for b in expect):
                raise SettingError("expect", repr(expect), f"must list some of {BEHAVIOURS}")
            behaviours = parse_behaviours(",".join(expect))
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise SettingError("view_patterns", repr(patterns), "must be a list of regexes")
            parse_view(data.get("view", ""), patterns)
            if not isinstance(data["load"], str) or parse_load(data["load"]) is None:
                raise SettingError("load", repr(data["load"]), "must be a command line")
            if backend not in BACKENDS:
                raise SettingError("backend", repr(backend), f"must be one of {BACKENDS}")
        except SettingError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        entries.append(
            Entry(
                name=path.stem,
                title=data.get("title", path.stem),
                package=data["package"],
                command=data["command"],
                view=data.get("view", ""),
                view_patterns=tuple(patterns),
                load=data["load"],
                expect=behaviours,
                why=" ".join(data["why"].split()),
                backend=backend,
                folder=folder,
            )
        )
    return entries


def installed_version(package: str) -> str | None:
    """The installed version of a Debian package, or None (not installed, or no dpkg)."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, version = done.stdout.partition(" ")
    return version.strip() if done.returncode == 0 and status.startswith("ii") else None


@dataclass
class Row:
    """One program's line in the table."""

    entry: Entry
    version: str | None
    verdict: str  # CERTIFIED, NOT CERTIFIED, INCONCLUSIVE, not installed
    behaviours: dict[str, str]  # behaviour → pass, FAIL, n/a, "" (not asked)
    failure: str  # the first line of the first failure
    report: str  # the run's HTML report, relative to the table
    seconds: float
    tests: int  # how many tests (scenarios) the run judged
    broken: int  # how many of them could not judge the program (infrastructure)


def run_entry(entry: Entry, out: Path, workers: int = 2, select: str = "") -> Row:
    """Certify one program with `dmh certify` (Linux profile, its view, load and behaviours;
    with `select`, only the scenarios pytest's -k selects)."""
    version = installed_version(entry.package)
    if version is None:
        return Row(
            entry, None, "not installed", {}, f"apt-get install {entry.package}", "", 0.0, 0, 0
        )
    command = [
        sys.executable, "-m", "harness.cli", "certify", "--app", entry.command,
        "--out", str(out / entry.name), "-n", str(workers), "--",
        "--dm-guest-os=linux", f"--dm-expect={','.join(entry.expect)}",
        f"--dm-guest-backend={entry.backend}", f"--dm-app-load={entry.load}",
    ]  # fmt: skip
    if entry.view:
        command.append(f"--dm-app-view={entry.view}")
    if entry.view_patterns:
        command.append(f"--dm-app-view-pattern={';;'.join(entry.view_patterns)}")
    if select:
        command += ["-k", select]
    started = time.monotonic()
    subprocess.run(command, cwd=entry.folder, capture_output=True, check=False)
    seconds = time.monotonic() - started
    latest = out / entry.name / "latest"
    summary = json.loads((latest / "summary.json").read_text("utf-8"))
    records = load_records(latest / "records")
    return Row(
        entry,
        version,
        summary["verdict"]["status"].upper(),
        _behaviours(records, entry.expect),
        ""
        if summary["verdict"]["status"] == "certified"
        else (summary["verdict"]["reasons"] or [""])[0],
        str((latest / "index.html").resolve()),
        seconds,
        len(records),
        sum(r.outcome == "broken" for r in records),
    )


def _behaviours(records: Sequence[TestRecord], asked: Sequence[str]) -> dict[str, str]:
    """Per behaviour over every test of the run: FAIL if any failed, pass if any passed and
    none failed, n/a if it never applied."""
    seen: dict[str, set[str]] = {b: set() for b in asked}
    for record in records:
        for e in record.expectations:
            if e.behaviour in seen:
                seen[e.behaviour].add("n/a" if not e.applicable else "pass" if e.passed else "FAIL")
    return {
        b: next((v for v in ("FAIL", "pass", "n/a") if v in seen.get(b, set())), "")
        if b in seen
        else ""
        for b in BEHAVIOURS
    }


def table(
    rows: Sequence[Row], relative_to: Path, entries: Sequence[Entry] = (), before: str = ""
) -> str:
    """The catalogue as Markdown: one row per program and version. The rows of `entries`
    not run this time are kept from the table as it was (`before`), so certifying one
    program does not drop the others."""
    lines = [
        "# How programs behave under Hyper-V Dynamic Memory",
        "",
        "Written by `dmh catalog run` on the embedded emulator (Linux guest profile): each "
        "program as its Debian package ships it, judged through its own interface "
        "(`--dm-app-view`) while a load exercises it (`--dm-app-load`). pass / FAIL per "
        "behaviour; blank: not asked of it; n/a: the check had nothing to judge. Reports are "
        "the run directories of the machine that wrote it.",
        "",
        "| program | version | backend | verdict | "
        + " | ".join(BEHAVIOURS)
        + " | first failure | report |",
        "|---|---|---|---|" + "---|" * len(BEHAVIOURS) + "---|---|",
    ]
    made = {}
    for row in rows:
        report = ""
        if row.report:
            link = Path(os.path.relpath(row.report, relative_to.resolve()))
            report = f"[report]({link.as_posix()}) ({row.tests} tests, {row.seconds:.0f} s)"
        failure = row.failure.replace("|", "\\|")
        cells = " | ".join(row.behaviours.get(b, "") for b in BEHAVIOURS)
        made[row.entry.title] = (
            f"| {row.entry.title} | {row.version or '—'} | {row.entry.backend} | {row.verdict} "
            f"| {cells} | {failure} | {report} |"
        )
    titles = {e.title for e in entries} - set(made)
    kept = {
        title: line
        for line in before.splitlines()
        if (title := line.split(" | ")[0][2:]) in titles
    }  # fmt: skip
    # In the catalogue's order, whichever run wrote each row.
    order = [e.title for e in entries] + [t for t in made if t not in {e.title for e in entries}]
    lines += [{**kept, **made}[t] for t in order if t in made or t in kept]
    lines += ["", "## What each program is certified on, and why", ""]
    listed = [row.entry for row in rows] + [e for e in entries if e.title in kept]
    for entry in sorted(listed, key=lambda e: order.index(e.title)):
        view = ""
        if entry.view:
            shown = parse_view(entry.view, entry.view_patterns)
            view = f" View `{entry.view}`" + (
                f" ({shown.means})." if shown and shown.means else "."
            )
        lines.append(
            f"- **{entry.title}** (`{entry.command}`, {', '.join(entry.expect)}).{view} "
            f"Load `{entry.load}`. {entry.why}"
        )
    return "\n".join(lines) + "\n"
