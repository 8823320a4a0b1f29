"""Nightly matrices: `dmh plan` expands a TOML of apps into cells (app × guest profile ×
host label) and deals them into N shards; `dmh certify --plan --shard i/N` runs one shard.

A CI system is the distributed engine (GitHub Actions `strategy.matrix`, GitLab
`parallel:matrix`); the plan only says which cells each of its jobs runs, the same way on
every machine (it depends on the TOML alone), so each job may compute it again or read the
plan job's file. Each cell is one `dmh certify` of one app on one profile and host label,
in its own report directory (`OUT/cells/APP/PROFILE/HOST/`); the shard's manifest
(`OUT/shard-I-of-N.json`, rewritten after every cell) names the run of each cell, and
`dmh report --merge` (harness.merge) builds one report from the manifests of all shards.

APPS.toml:

    profiles = ["linux", "windows"]      # guest profiles (default: both)
    hosts = ["2019", "2022"]             # host labels (default: "any", no constraint)
    pytest_args = ["-k", "hot_add"]      # optional, for every cell (a subset is inconclusive)

    [apps.good]
    command = "cache_good.py"            # as for `dmh certify --app`
    expect = ["survive", "track", "grow", "release", "bounded"]   # --dm-expect
    view = ""                            # optional --dm-app-view
    profiles = ["linux"]                 # optional: this app's own axes
    hosts = ["2022"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.appview import parse_view
from harness.errors import ConfigError, SettingError
from harness.expect import BEHAVIOURS, parse_behaviours

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

PLAN_VERSION = 1
PROFILES = ("windows", "linux")
ANY_HOST = "any"  # the host label that asks for nothing: the run's host, whatever it is
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOP_KEYS = {"profiles", "hosts", "pytest_args", "apps"}
_APP_KEYS = {"command", "expect", "view", "profiles", "hosts"}


@dataclass(frozen=True)
class Cell:
    """One certification: one app on one guest profile and host label."""

    app: str  # the app's name in the TOML
    command: str  # --app
    profile: str  # --dm-guest-os
    host: str  # --dm-host-label, or ANY_HOST
    expect: tuple[str, ...]  # --dm-expect
    view: str = ""  # --dm-app-view
    pytest_args: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.app}/{self.profile}/{self.host}"

    @property
    def path(self) -> Path:
        """The cell's report directory under a shard's --out."""
        return Path("cells", self.app, self.profile, self.host)

    def certify_args(self) -> tuple[str, ...]:
        """The pytest arguments of this cell's `dmh certify`, after its `--app`."""
        args = [f"--dm-guest-os={self.profile}", f"--dm-expect={','.join(self.expect)}"]
        if self.host != ANY_HOST:
            args.append(f"--dm-host-label={self.host}")
        if self.view:
            args.append(f"--dm-app-view={self.view}")
        return (*args, *self.pytest_args)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "command": self.command,
            "profile": self.profile,
            "host": self.host,
            "expect": list(self.expect),
            "view": self.view,
            "pytest_args": list(self.pytest_args),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        cell = cls(
            app=check_name("app", data["app"]),
            command=str(data["command"]),
            profile=_profile(data["profile"]),
            host=check_name("host label", data["host"]),
            expect=parse_behaviours(",".join(map(str, data["expect"]))),
            view=str(data.get("view", "")),
            pytest_args=tuple(map(str, data.get("pytest_args", ()))),
        )
        if data.get("id", cell.id) != cell.id:
            raise ValueError(f"cell id {data['id']!r} does not match its app/profile/host")
        return cell


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    of: int
    cells: tuple[str, ...]  # cell ids

    @property
    def name(self) -> str:
        return f"{self.index}/{self.of}"


@dataclass(frozen=True)
class Plan:
    source: str  # the TOML's file name (for people; the id is what identifies the plan)
    cells: tuple[Cell, ...]
    shards: tuple[Shard, ...]

    @property
    def id(self) -> str:
        """The plan's identity: a digest of its cells and of how they are dealt."""
        text = json.dumps(
            [[c.to_json() for c in self.cells], [list(s.cells) for s in self.shards]],
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cell(self, cell_id: str) -> Cell:
        return next(c for c in self.cells if c.id == cell_id)

    def shard(self, index: int, of: int) -> Shard:
        if of != len(self.shards):
            raise SettingError(
                "--shard", f"{index}/{of}", f"this plan has {len(self.shards)} shards"
            )
        return self.shards[index - 1]

    def to_json(self) -> dict[str, Any]:
        """The plan file. `include` is a CI matrix: GitHub Actions `strategy.matrix.include`
        (fromJSON), one job per shard with `matrix.shard` = "I/N"."""
        return {
            "plan_version": PLAN_VERSION,
            "id": self.id,
            "source": self.source,
            "apps": list(dict.fromkeys(c.app for c in self.cells)),
            "profiles": list(dict.fromkeys(c.profile for c in self.cells)),
            "hosts": list(dict.fromkeys(c.host for c in self.cells)),
            "cells": [c.to_json() for c in self.cells],
            "shards": [{"index": s.index, "of": s.of, "cells": list(s.cells)} for s in self.shards],
            "include": matrix(self)["include"],
        }


def matrix(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """The CI matrix alone, small enough for a job output: one entry per shard."""
    return {
        "include": [
            {"shard": s.name, "index": s.index, "of": s.of, "cells": len(s.cells)}
            for s in plan.shards
        ]
    }


# -- APPS.toml -> plan ------------------------------------------------------------------


def load_apps(path: Path) -> list[Cell]:
    """Every cell of an apps TOML, checked: ConfigError names the file, the key and the rule."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the apps file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    try:
        return _cells(data)
    except SettingError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _cells(data: Mapping[str, Any]) -> list[Cell]:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SettingError("keys", sorted(unknown), f"the file has {', '.join(sorted(_TOP_KEYS))}")
    apps = data.get("apps")
    if not isinstance(apps, dict) or not apps:
        raise SettingError("apps", repr(apps), "must be one or more [apps.NAME] tables")
    profiles = _profiles("profiles", data.get("profiles", list(PROFILES)))
    hosts = _hosts("hosts", data.get("hosts", [ANY_HOST]))
    pytest_args = _strings("pytest_args", data.get("pytest_args", []))
    cells: list[Cell] = []
    for name, app in apps.items():
        check_name("app name", name)
        where = f"apps.{name}"
        if not isinstance(app, dict):
            raise SettingError(where, repr(app), "must be a table with command and expect")
        unknown = set(app) - _APP_KEYS
        missing = {"command", "expect"} - set(app)
        if unknown or missing:
            raise SettingError(
                where,
                f"unknown keys {sorted(unknown)}, missing keys {sorted(missing)}",
                f"an app has {', '.join(sorted(_APP_KEYS))} (command and expect required)",
            )
        command = app["command"]
        if not isinstance(command, str) or not command.strip():
            raise SettingError(f"{where}.command", repr(command), "must be a command line")
        expect = _strings(f"{where}.expect", app["expect"])
        if not expect:
            raise SettingError(f"{where}.expect", "[]", f"must list some of {BEHAVIOURS}")
        view = app.get("view", "")
        if not isinstance(view, str):
            raise SettingError(f"{where}.view", repr(view), "must be a string (--dm-app-view)")
        parse_view(view)
        behaviours = parse_behaviours(",".join(expect))
        for profile in _profiles(f"{where}.profiles", app.get("profiles", profiles)):
            for host in _hosts(f"{where}.hosts", app.get("hosts", hosts)):
                cells.append(
                    Cell(name, command.strip(), profile, host, behaviours, view.strip(),
                         tuple(pytest_args))
                )  # fmt: skip
    return cells


def make_plan(cells: Sequence[Cell], shards: int, source: str = "") -> Plan:
    """Deal the cells into `shards` shards: round robin in the TOML's order (apps, then
    profiles, then hosts), so shards differ by at most one cell and every axis is spread."""
    if shards < 1:
        raise SettingError("--shards", shards, "must be 1 or more")
    if shards > len(cells):
        raise SettingError(
            "--shards", shards, f"must be at most the plan's {len(cells)} cells (no empty job)"
        )
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SettingError("cells", ", ".join(duplicates), "each cell must appear once")
    dealt = tuple(
        Shard(index, shards, tuple(ids[index - 1 :: shards])) for index in range(1, shards + 1)
    )
    return Plan(source, tuple(cells), dealt)


# -- plan.json -> plan ------------------------------------------------------------------


def load_plan(path: Path) -> Plan:
    """A plan file, checked: its shards cover its cells exactly once, and its id matches."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the plan ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    try:
        return plan_from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a dmh plan (write one with dmh plan): {exc}") from None


def plan_from_json(data: Any) -> Plan:
    if not isinstance(data, dict) or data.get("plan_version") != PLAN_VERSION:
        raise ValueError(f"plan_version is not {PLAN_VERSION}")
    cells = tuple(Cell.from_json(c) for c in data["cells"])
    shards = tuple(
        Shard(int(s["index"]), int(s["of"]), tuple(map(str, s["cells"]))) for s in data["shards"]
    )
    dealt = [i for s in shards for i in s.cells]
    if sorted(dealt) != sorted(c.id for c in cells) or len(set(dealt)) != len(dealt):
        raise ValueError("its shards do not cover its cells exactly once")
    if [(s.index, s.of) for s in shards] != [(i, len(shards)) for i in range(1, len(shards) + 1)]:
        raise ValueError("its shards are not numbered 1/N to N/N")
    plan = Plan(str(data.get("source", "")), cells, shards)
    if data.get("id") != plan.id:
        raise ValueError(f"id {data.get('id')!r} does not match its cells (edited by hand?)")
    return plan


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard I/N`: 1 ≤ I ≤ N."""
    index, slash, total = text.partition("/")
    if not slash or not index.isdigit() or not total.isdigit():
        raise ValueError(f"{text!r} must be I/N, e.g. 2/3")
    if not 1 <= int(index) <= int(total):
        raise ValueError(f"{text!r}: I must be from 1 to N")
    return int(index), int(total)


def shard_manifest_name(index: int, of: int) -> str:
    return f"shard-{index}-of-{of}.json"


# -- checks ----------------------------------------------------------------------------


def _strings(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingError(field, repr(value), "must be a list of strings")
    return list(value)


def check_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise SettingError(
            field, repr(value), "must be letters, digits, '.', '_' or '-' (at most 64)"
        )
    return value


def _profile(value: Any) -> str:
    if value not in PROFILES:
        raise SettingError("guest profile", repr(value), f"must be one of {', '.join(PROFILES)}")
    return str(value)


def _profiles(field: str, value: Any) -> list[str]:
    profiles = _strings(field, value)
    if not profiles:
        raise SettingError(field, "[]", f"must list some of {', '.join(PROFILES)}")
    for profile in profiles:
        _profile(profile)
    return list(dict.fromkeys(profiles))


def _hosts(field: str, value: Any) -> list[str]:
    hosts = _strings(field, value)
    if not hosts:
        raise SettingError(field, "[]", f'must list host labels (or "{ANY_HOST}")')
    return [check_name(f"{field} label", h) for h in dict.fromkeys(hosts)]


def replace_args(cell: Cell, extra: Sequence[str]) -> Cell:
    """The cell with more pytest arguments (a shard's own, after `--`)."""
    return dataclasses.replace(cell, pytest_args=(*cell.pytest_args, *extra))


def host_label_problem(label: str, embedded: bool, version: str) -> str:
    """Why a host does not match a cell's host label ("" when it does): a Hyper-V version
    label must be the host's version (`version`: the one played, or read from the host);
    an inventory label cannot be matched by a single host given without an inventory."""
    if not label or label == ANY_HOST:
        return ""
    where = (
        f"the embedded emulator plays Hyper-V {version}"
        if embedded
        else (f"the host given with --dm-host runs Hyper-V {version}")
    )
    if label == version:
        return ""
    from harness.settings import HostVersion

    if label in {v.value for v in HostVersion}:
        return f"host label {label!r} asks for Hyper-V {label}, but {where}: not run elsewhere"
    return (
        f"host label {label!r} is not a Hyper-V version, and {where} and carries no inventory "
        "labels: run this cell on a host inventory that has the label (--dm-hosts)"
    )
