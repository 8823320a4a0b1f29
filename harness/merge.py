"""`dmh report --merge DIR... --out DIR`: one report from the shards of a plan.

Each shard (`dmh certify --plan --shard`) leaves a manifest naming, per cell, its run
directory. The merge reads the records of every cell's run, names each test by its cell
(`APP/PROFILE/HOST::nodeid`, so the same scenario in two cells stays two tests) and builds
one report from them with the report builder every run uses (harness.report.build): one
index.html (with a matrix app × host label × guest profile and a verdict per app), one
summary.json (its `matrix` key lists every cell and its verdict), one JUnit XML and one
Allure results directory, each result labelled with its cell and host.

A cell's verdict is its own run's (decided from its records and evidence when it ran); an
app's is the worst of its cells' (not certified, then inconclusive, then certified); the
whole plan's is the worst of its apps'. A cell no manifest names (a shard that failed to
upload, or one killed before the cell) is inconclusive: *not run*.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.plan import Cell, Plan, plan_from_json
from harness.report.allure_files import write_categories, write_environment, write_executor
from harness.report.build import ReportPaths, build_reports
from harness.report.model import TestRecord, load_records, resolve_timeline, save_record
from harness.report.run import LATEST, load_facts
from harness.verdict import RunFacts, Verdict, VerdictStatus

MANIFEST_GLOB = "shard-*-of-*.json"
_WORST: tuple[VerdictStatus, ...] = ("not certified", "inconclusive", "certified")
_WRITTEN = ("records", "timelines", "plots", "allure-results")


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    verdict: Verdict
    run: Path | None  # its run directory; None: not run
    hyperv: str = ""  # the Hyper-V version its tests ran on, as the records say
    facts: RunFacts = dataclasses.field(default_factory=RunFacts)


def merge_shards(dirs: Sequence[Path], out: Path, history: Path | None = None) -> ReportPaths:
    """Merge the shards found under `dirs` into one report in `out` (with `history`, the
    merged run is kept there and the report shows the nights' trend)."""
    if (out / LATEST).exists() or (out / "runs").is_dir():
        raise ConfigError(
            f"--out {out} holds dmh certify runs; give the merged report a directory of its "
            "own (e.g. --out reports/merged)"
        )
    plan, runs = find_runs(dirs)
    results = [_result(cell, runs.get(cell.id), plan) for cell in plan.cells]
    for name in _WRITTEN:  # a previous merge's, never mixed with this one's
        shutil.rmtree(out / name, ignore_errors=True)
    records = [r for result in results for r in _records(result, out)]
    for record in records:
        save_record(record, out / "records")
    (out / "records").mkdir(parents=True, exist_ok=True)
    verdict = plan_verdict(results)
    paths = build_reports(
        out / "records",
        out,
        history_dir=history,
        environment={"plan": plan.id, "cells": str(len(plan.cells))},
        facts=_facts(plan, results, records),
        verdict=verdict,
        extra_html=matrix_html(results),
        extra_summary={"matrix": matrix_json(plan, results)},
    )
    write_junit(results, out / "junit.xml")
    write_allure(results, out / "allure-results")
    return paths


# -- finding the shards ------------------------------------------------------------------


def find_runs(dirs: Sequence[Path]) -> tuple[Plan, dict[str, Path]]:
    """The plan and, per cell id, its run directory, from every shard manifest under
    `dirs`; ConfigError for manifests of different plans, or a cell run by two shards."""
    manifests = sorted({p.resolve() for d in dirs for p in _manifests(d)})
    if not manifests:
        raise ConfigError(
            f"dmh report --merge: no shard manifest ({MANIFEST_GLOB}, written by dmh certify "
            f"--plan --shard) under {', '.join(map(str, dirs))}"
        )
    plan: Plan | None = None
    runs: dict[str, Path] = {}
    seen: dict[str, Path] = {}
    for path in manifests:
        try:
            data = json.loads(path.read_text("utf-8"))
            this = plan_from_json(data["plan"])
            cells = [(str(c["cell"]), str(c["run"])) for c in data["cells"]]
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: not a dmh shard manifest: {exc}") from None
        if plan is not None and this.id != plan.id:
            raise ConfigError(
                f"{path} is a shard of plan {this.id}, {manifests[0]} of plan {plan.id}: "
                "merge the shards of one plan"
            )
        plan = this
        for cell_id, run in cells:
            where = (path.parent / run).resolve()
            if not where.is_relative_to(path.parent):
                raise ConfigError(f"{path}: cell {cell_id}'s run {run!r} is outside its shard")
            if cell_id in seen:
                raise ConfigError(
                    f"cell {cell_id} was run by two shards ({seen[cell_id]} and {path}): "
                    "merge each shard's output once"
                )
            seen[cell_id] = path
            runs[cell_id] = path.parent / run
    assert plan is not None
    return plan, runs


def _manifests(directory: Path) -> Iterable[Path]:
    if not directory.is_dir():
        raise ConfigError(f"dmh report --merge: {directory} is not a directory")
    return (
        p for p in directory.rglob(MANIFEST_GLOB) if "cells" not in p.relative_to(directory).parts
    )


# -- cells and verdicts ----------------------------------------------------------------


def _result(cell: Cell, run: Path | None, plan: Plan) -> CellResult:
    shard = next(s.name for s in plan.shards if cell.id in s.cells)
    if run is None:
        why = f"not run: shard {shard} left no result for it"
        return CellResult(cell, Verdict("inconclusive", (why,)), None)
    summary = _read(run / "summary.json")
    if summary is None:
        why = f"not finished: its run {run.name} (shard {shard}) has no summary.json"
        return CellResult(cell, Verdict("inconclusive", (why,)), run)
    verdict = summary["verdict"]
    records = load_records(run / "records") if (run / "records").is_dir() else []
    versions = sorted({r.target.hyperv for r in records if r.target and r.target.hyperv})
    return CellResult(
        cell,
        Verdict(verdict["status"], tuple(verdict["reasons"]), verdict.get("scope", "")),
        run,
        ", ".join(versions) or ", ".join(sorted({r.host_label for r in records if r.host_label})),
        load_facts(run / "records") if (run / "records").is_dir() else RunFacts(),
    )


def worst(statuses: Iterable[VerdictStatus]) -> VerdictStatus:
    found = set(statuses)
    return next((s for s in _WORST if s in found), "inconclusive")


def app_verdicts(results: Sequence[CellResult]) -> dict[str, VerdictStatus]:
    apps: dict[str, list[VerdictStatus]] = {}
    for result in results:
        apps.setdefault(result.cell.app, []).append(result.verdict.status)
    return {app: worst(statuses) for app, statuses in apps.items()}


def plan_verdict(results: Sequence[CellResult]) -> Verdict:
    """The worst of the apps' verdicts; one reason per app (and the first reason of each of
    its cells that is not certified)."""
    per_app = app_verdicts(results)
    reasons: list[str] = []
    for app, status in per_app.items():
        cells = [r for r in results if r.cell.app == app]
        reasons.append(f"{app}: {status} ({len(cells)} cells)")
        for r in cells:
            if r.verdict.status != "certified":
                first = r.verdict.reasons[0] if r.verdict.reasons else ""
                reasons.append(f"{r.cell.id}: {r.verdict.status}" + (f": {first}" if first else ""))
    scopes = {r.verdict.scope for r in results if r.verdict.scope}
    return Verdict(worst(per_app.values()), tuple(reasons), "; ".join(sorted(scopes)))


def _facts(plan: Plan, results: Sequence[CellResult], records: Sequence[TestRecord]) -> RunFacts:
    digest = hashlib.sha256(plan.id.encode())
    for result in results:
        digest.update(f"|{result.cell.id}={result.run.name if result.run else ''}".encode())
    starts = [r.facts.started for r in results if r.facts.started is not None]
    ends = [r.facts.finished for r in results if r.facts.finished is not None]
    exits = [r.facts.pytest_exit for r in results if r.facts.pytest_exit]
    return RunFacts(
        run_id=digest.hexdigest()[:16],
        started=min(starts) if starts else None,
        guest_profiles=tuple(dict.fromkeys(c.profile for c in plan.cells)),
        selected=tuple(r.nodeid for r in records),
        deselected=sum(r.facts.deselected for r in results),
        pytest_exit=exits[0] if exits else 0,
        interrupted=any(r.facts.interrupted for r in results),
        finished=max(ends) if ends else None,
    )


def cell_nodeid(cell: Cell, nodeid: str) -> str:
    return f"{cell.id}::{nodeid}"


def _records(result: CellResult, out: Path) -> list[TestRecord]:
    """The cell's records, named by the cell, their timelines copied into `out`."""
    if result.run is None or not (result.run / "records").is_dir():
        return []
    records_dir = result.run / "records"
    renamed = []
    for record in load_records(records_dir):
        timeline = _timeline(record, records_dir, result.run)
        path = None
        if timeline is not None:
            target = out / "timelines" / result.cell.path / timeline.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(timeline, target)
            path = str(Path("..") / target.relative_to(out))
        renamed.append(
            dataclasses.replace(
                record, nodeid=cell_nodeid(result.cell, record.nodeid), timeline_path=path
            )
        )
    return renamed


def _timeline(record: TestRecord, records_dir: Path, run: Path) -> Path | None:
    """The record's timeline: where it was written, or (the run moved: a CI artifact) the
    file of that name in the run's timelines/."""
    path = resolve_timeline(record, records_dir)
    if path is None:
        return None
    for candidate in (path, run / "timelines" / path.name):
        if candidate.is_file():
            return candidate
    return None


# -- matrix ----------------------------------------------------------------------------


def matrix_json(plan: Plan, results: Sequence[CellResult]) -> dict[str, Any]:
    per_app = app_verdicts(results)
    return {
        "plan": plan.id,
        "shards": len(plan.shards),
        "apps": [{"app": app, "verdict": status} for app, status in per_app.items()],
        "cells": [
            {
                "id": r.cell.id,
                "app": r.cell.app,
                "command": r.cell.command,
                "guest_profile": r.cell.profile,
                "host": r.cell.host,
                "hyperv": r.hyperv,
                "shard": next(s.name for s in plan.shards if r.cell.id in s.cells),
                "verdict": r.verdict.status,
                "reasons": list(r.verdict.reasons),
                "run": None if r.run is None else r.run.name,
            }
            for r in results
        ],
    }


def matrix_html(results: Sequence[CellResult]) -> str:
    """App × host label × guest profile, a verdict per cell and per app (all text escaped)."""
    e = html.escape
    hosts = list(dict.fromkeys(r.cell.host for r in results))
    profiles = list(dict.fromkeys(r.cell.profile for r in results))
    head = "".join(f'<th scope="col">{e(h)}<br>{e(p)}</th>' for h in hosts for p in profiles)
    rows = []
    for app, status in app_verdicts(results).items():
        cells = []
        for host in hosts:
            for profile in profiles:
                found = [
                    r for r in results
                    if (r.cell.app, r.cell.host, r.cell.profile) == (app, host, profile)
                ]  # fmt: skip
                if not found:
                    cells.append('<td class="cell none">—</td>')
                    continue
                r = found[0]
                css = {"certified": "passed", "not certified": "failed"}.get(
                    r.verdict.status, "broken"
                )
                hyperv = f" ({r.hyperv})" if r.hyperv else ""
                title = e("; ".join(r.verdict.reasons), quote=True)
                cells.append(
                    f'<td class="cell {css}" title="{title}">{e(r.verdict.status)}'
                    f'<span class="muted small">{e(hyperv)}</span></td>'
                )
        css = {"certified": "passed", "not certified": "failed"}.get(status, "broken")
        rows.append(
            f'<tr><th scope="row">{e(app)}</th>{"".join(cells)}'
            f'<td class="cell {css}"><strong>{e(status)}</strong></td></tr>'
        )
    return (
        '<section id="cells"><h2>Matrix: app × host × guest profile</h2>'
        '<table class="matrix"><thead><tr><th scope="col">App</th>'
        f'{head}<th scope="col">Verdict</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<p class="legend small">Each cell is one certification run of the plan (its own '
        "verdict); an app's verdict is the worst of its cells'.</p></section>"
    )


# -- JUnit and Allure ------------------------------------------------------------------


def write_junit(results: Sequence[CellResult], path: Path) -> Path:
    """One JUnit file: each cell's pytest testsuite, named by the cell, its testcases'
    classnames prefixed with it; a cell not run is one errored testcase saying so."""
    root = ET.Element("testsuites", name="dmh plan")
    for result in results:
        suites = _junit_suites(result.run / "junit.xml") if result.run else []
        if not suites:
            suite = ET.SubElement(root, "testsuite", name=result.cell.id, tests="1", errors="1",
                                  failures="0", skipped="0", time="0")  # fmt: skip
            case = ET.SubElement(suite, "testcase", classname=result.cell.id, name="cell", time="0")
            ET.SubElement(case, "error", message="; ".join(result.verdict.reasons))
            continue
        for suite in suites:
            suite.set("name", result.cell.id)
            for case in suite.iter("testcase"):
                case.set("classname", f"{result.cell.id}::{case.get('classname', '')}")
            root.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root.iter("testsuite"))))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in root.iter('testsuite')):.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _junit_suites(path: Path) -> list[ET.Element]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def write_allure(results: Sequence[CellResult], target: Path) -> Path:
    """Every cell's Allure results in one directory: each result gets the labels `host`
    (the cell's host label), `hyperv`, `dm_cell`, the suites app / host / profile, and a
    history id of its own per cell (else Allure would take the same scenario in two cells
    for retries of one test); environment.properties names every host."""
    target.mkdir(parents=True, exist_ok=True)
    for result in results:
        source = result.run / "allure-results" if result.run else None
        if source is None or not source.is_dir():
            continue
        for path in sorted(source.iterdir()):
            if path.name.endswith("-result.json"):
                data = json.loads(path.read_text("utf-8"))
                (target / path.name).write_text(json.dumps(_relabel(data, result)), "utf-8")
            elif path.name.endswith(("-container.json",)) or "-attachment" in path.name:
                shutil.copyfile(path, target / path.name)
    hosts = {r.cell.host: r.hyperv for r in results}
    write_environment(
        target,
        host_label=", ".join(hosts),
        hyperv_version=", ".join(sorted({v for v in hosts.values() if v})) or "unknown",
        guest_profiles=sorted({r.cell.profile for r in results}),
        app=", ".join(dict.fromkeys(r.cell.app for r in results)),
        extra={f"Host.{host}": hyperv or "not run" for host, hyperv in hosts.items()},
    )
    write_categories(target)
    write_executor(target)
    return target


def _relabel(data: dict[str, Any], result: CellResult) -> dict[str, Any]:
    cell = result.cell
    ours = {"host", "hyperv", "dm_cell", "parentSuite", "suite", "subSuite"}
    labels = [label for label in data.get("labels", []) if label.get("name") not in ours]
    labels += [
        {"name": "host", "value": cell.host},
        {"name": "hyperv", "value": result.hyperv or "unknown"},
        {"name": "dm_cell", "value": cell.id},
        {"name": "parentSuite", "value": cell.app},
        {"name": "suite", "value": f"host {cell.host}"},
        {"name": "subSuite", "value": cell.profile},
    ]
    for key in ("historyId", "testCaseId"):
        if data.get(key):
            data[key] = hashlib.md5(f"{cell.id}|{data[key]}".encode()).hexdigest()
    data["labels"] = labels
    data["fullName"] = f"{cell.id}::{data.get('fullName', data.get('name', ''))}"
    return data


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
