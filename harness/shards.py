"""`dmh certify --plan plan.json --shard I/N`: run one shard's cells, one `dmh certify` each.

Each cell gets its own report directory (`OUT/cells/APP/PROFILE/HOST/`, with its runs/ and
latest like any `--out`), so pruning one cell's old runs never touches another's. The
manifest `OUT/shard-I-of-N.json` carries the whole plan and, per cell done so far, its run
directory and verdict; it is rewritten after every cell, so a shard killed half-way still
leaves the cells it finished for `dmh report --merge`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.certify import (
    EXIT_CERTIFIED,
    EXIT_INCONCLUSIVE,
    EXIT_NOT_CERTIFIED,
    EXIT_USAGE,
    CertifyOptions,
    certify,
)
from harness.plan import Cell, Plan, replace_args, shard_manifest_name
from harness.report.run import new_run_id, run_dir, write_json

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class CellRun:
    cell: str  # its id
    run: str  # its run directory, relative to the shard's OUT
    verdict: str  # certified, not certified, inconclusive
    exit: int  # what `dmh certify` returned for it
    seconds: float


def run_shard(plan: Plan, index: int, of: int, base: CertifyOptions) -> int:
    """Run the shard's cells in turn with `base`'s settings (host, workers, extra pytest
    arguments), each as its own certify run. Exit: 4 if a cell was a usage error, else 1 if
    one was not certified, else 2 if one was inconclusive (or the shard was interrupted),
    else 0."""
    shard = plan.shard(index, of)
    out = base.out
    manifest = out / shard_manifest_name(index, of)
    done: list[CellRun] = []
    started = time.time()
    interrupted = False
    for number, cell_id in enumerate(shard.cells, 1):
        cell = replace_args(plan.cell(cell_id), base.pytest_args)
        print(f"\n== cell {number}/{len(shard.cells)} of shard {shard.name}: {cell.id}", flush=True)
        began = time.monotonic()
        outcome = _run_cell(cell, base)
        done.append(dataclasses.replace(outcome, seconds=round(time.monotonic() - began, 1)))
        _write_manifest(manifest, plan, index, of, done, started)
        if _interrupted(out / outcome.run):
            interrupted = True
            print(f"dmh: shard {shard.name} interrupted: the cells after {cell.id} not run")
            break
    print(f"\nshard {shard.name} of plan {plan.id}: manifest {manifest}")
    for run in done:
        print(f"  {run.cell}: {run.verdict.upper()} ({run.seconds:.0f} s)")
    codes = {r.exit for r in done}
    if EXIT_USAGE in codes:
        return EXIT_USAGE
    if EXIT_NOT_CERTIFIED in codes:
        return EXIT_NOT_CERTIFIED
    if interrupted or codes - {EXIT_CERTIFIED}:
        return EXIT_INCONCLUSIVE
    return EXIT_CERTIFIED


def _run_cell(cell: Cell, base: CertifyOptions) -> CellRun:
    cell_out = base.out / cell.path
    run_id = new_run_id()
    code = certify(
        dataclasses.replace(
            base,
            out=cell_out,
            app=cell.command,
            run_id=run_id,
            allure_dir=None,  # each cell's own: the merge reads them all
            history=base.history / cell.path if base.history else None,  # a trend per cell
            pytest_args=cell.certify_args(),
        )
    )
    run = run_dir(cell_out, run_id)
    summary = _read(run / "summary.json")
    verdict = summary["verdict"]["status"] if summary else "inconclusive"
    return CellRun(cell.id, os.path.relpath(run, base.out), verdict, code, 0.0)


def _interrupted(run: Path) -> bool:
    summary = _read(run / "summary.json")
    return bool(summary and summary["run"].get("interrupted"))


def _write_manifest(
    path: Path, plan: Plan, index: int, of: int, done: list[CellRun], started: float
) -> None:
    write_json(
        path,
        {
            "manifest_version": MANIFEST_VERSION,
            "plan": plan.to_json(),
            "shard": {"index": index, "of": of},
            "started": started,
            "cells": [dataclasses.asdict(r) for r in done],
        },
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
