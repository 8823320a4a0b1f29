"""The example pipelines in docs/ci/ run as written: their `run:` / `script:` lines, in real
shells, in one workspace per job, with their artifacts handed on the way each CI system does
it (GitHub: upload/download-artifact by name; GitLab: every earlier job's artifact paths),
certifying on embedded emulators (each cell's pytest starts its own).

Kept small: two apps of known verdicts (the good reference cache; the stale one, which fails
tracking from *start below demand* on) on one guest profile and one host label, and only
that one scenario (`-k`): the good app's cells are therefore inconclusive (a subset is not a
certification), the stale app's not certified. The pipelines' own `APPS` and `WORKERS` are
the values a user would override; the test overrides them the same way (environment).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.merge import find_runs, merge_shards
from tests.fleet import miniyaml

# One worker runs every test here (--dist loadgroup): the module's pipelines run once.
pytestmark = pytest.mark.xdist_group("ci_examples")
REPO = Path(__file__).resolve().parents[2]
CI = REPO / "docs" / "ci"
TIMEOUT = 300
APPS = """\
profiles = ["linux"]
hosts = ["2019"]
pytest_args = ["-k", "start_below_demand"]

[apps.good]
command = "cache_good.py"
expect = ["survive", "track", "grow", "release", "bounded"]

[apps.stale]
command = "cache_stale.py"
expect = ["survive", "track", "bounded"]
"""
EXPECTED = {"good/linux/2019": "inconclusive", "stale/linux/2019": "not certified"}
OUTCOMES = {"good/linux/2019": "passed", "stale/linux/2019": "failed"}
_MATRIX_EXPR = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")
_INSTALL = re.compile(r"^python -m pip install\b")  # this checkout is installed already


@dataclass
class Pipeline:
    """What a pipeline left: each step's exit status, and the workspaces of its jobs."""

    root: Path
    exits: dict[str, int] = field(default_factory=dict)  # "job[i]: command" → exit status
    workspaces: dict[str, Path] = field(default_factory=dict)

    def exit_of(self, job: str, command: str) -> list[int]:
        return [
            code for step, code in self.exits.items() if step.startswith(job) and command in step
        ]


def environment(apps: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMH_", "GITHUB_", "CI_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(APPS=str(apps), WORKERS="0", **extra)
    return env


def shell(command: str, cwd: Path, env: Mapping[str, str]) -> int:
    """One `run:` block or `script:` line as the runner would: bash, stop at the first error."""
    assert "${{" not in command, f"an expression the test does not evaluate: {command}"
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=dict(env),
        timeout=TIMEOUT,
        check=False,
    )
    return done.returncode


@pytest.fixture(scope="module")
def apps_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("apps") / "apps.toml"
    path.write_text(APPS, "utf-8")
    return path


# -- GitHub Actions --------------------------------------------------------------------


def run_github(root: Path, apps: Path) -> Pipeline:
    workflow = miniyaml.load((CI / "github-actions.yml").read_text("utf-8"))
    base = environment(
        apps, **{k: v for k, v in workflow["env"].items() if k not in ("APPS", "WORKERS")}
    )
    pipeline = Pipeline(root)
    artifacts = root / "artifacts"
    outputs: dict[str, dict[str, str]] = {}
    for name, job in workflow["jobs"].items():
        include = [{}]
        matrix = job.get("strategy", {}).get("matrix")
        if matrix is not None:
            assert (
                matrix["include"]
                == f"${{{{ fromJSON(needs.{job['needs']}.outputs.matrix).include }}}}"
            )
            include = json.loads(outputs[job["needs"]]["matrix"])["include"]
        for index, values in enumerate(include, 1):
            workspace = root / f"{name}-{index}"
            workspace.mkdir()
            pipeline.workspaces[f"{name}[{index}]"] = workspace
            output_file = workspace.parent / f".{name}-{index}.output"
            output_file.write_text("")
            env = {**base, "GITHUB_OUTPUT": str(output_file)}
            failed = False
            for step in job["steps"]:
                if failed and step.get("if") != "always()":
                    continue
                if "run" in step:
                    command = expand(step["run"], values)
                    if _INSTALL.match(command):
                        continue
                    code = shell(command, workspace, env)
                    pipeline.exits[f"{name}[{index}]: {command}"] = code
                    failed = failed or code != 0
                elif step["uses"].startswith("actions/upload-artifact@"):
                    # paths relative to the least common ancestor of what the patterns match
                    upload(workspace, expand(step["with"]["path"], values).split(),
                           artifacts / expand(step["with"]["name"], values), common_root=True)  # fmt: skip
                elif step["uses"].startswith("actions/download-artifact@"):
                    target = workspace / step["with"]["path"]
                    for artifact in sorted(artifacts.iterdir()):
                        if fnmatch.fnmatch(artifact.name, step["with"]["pattern"]):
                            shutil.copytree(artifact, target / artifact.name)
            outputs[name] = dict(
                line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
            )
    return pipeline


# -- GitLab CI ---------------------------------------------------------------------------


def run_gitlab(root: Path, apps: Path) -> Pipeline:
    config = miniyaml.load((CI / "gitlab-ci.yml").read_text("utf-8"))
    base = environment(
        apps, **{k: v for k, v in config["variables"].items() if k not in ("APPS", "WORKERS")}
    )
    pipeline = Pipeline(root)
    artifacts = root / "artifacts"
    artifacts.mkdir()
    for stage in config["stages"]:
        jobs = [
            (n, j) for n, j in config.items() if isinstance(j, dict) and j.get("stage") == stage
        ]
        for name, job in jobs:
            for index, values in enumerate(_gitlab_matrix(job), 1):
                workspace = root / f"{name}-{index}"
                # every artifact of the earlier stages, at its path
                shutil.copytree(artifacts, workspace, symlinks=True)
                pipeline.workspaces[f"{name}[{index}]"] = workspace
                env = {**base, **values}
                for line in config["default"]["before_script"]:
                    assert _INSTALL.match(line), line
                for line in job["script"]:
                    code = shell(line, workspace, env)
                    pipeline.exits[f"{name}[{index}]: {line}"] = code
                    if code:
                        break
                assert job["artifacts"]["when"] == "always"
                upload(workspace, job["artifacts"]["paths"], artifacts, common_root=False)
    return pipeline


def expand(text: str, matrix: Mapping[str, Any]) -> str:
    """`${{ matrix.NAME }}` replaced by the job's matrix value."""
    return _MATRIX_EXPR.sub(lambda m: str(matrix[m.group(1)]), text)


def upload(workspace: Path, patterns: list[str], target: Path, *, common_root: bool) -> None:
    """Copy what the glob patterns match in `workspace` to `target`, at their paths
    relative to the workspace (GitLab) or to the matches' least common ancestor (GitHub)."""
    found = sorted({p for pattern in patterns for p in workspace.glob(pattern.rstrip("/"))})
    assert found, f"no artifact matched {patterns}"
    root = Path(os.path.commonpath(found)) if common_root else workspace
    if common_root and len(found) == 1:
        root = found[0].parent
    for path in found:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, destination, dirs_exist_ok=True)
        else:
            shutil.copyfile(path, destination)


def _gitlab_matrix(job: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    entries = job.get("parallel", {}).get("matrix")
    if not entries:
        yield {}
        return
    for entry in entries:
        names = list(entry)
        lists = [v if isinstance(v, list) else [v] for v in entry.values()]
        for combination in itertools.product(*lists):
            yield dict(zip(names, combination, strict=True))


# -- the runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory, apps_file: Path) -> Pipeline:
    return run_github(tmp_path_factory.mktemp("github"), apps_file)


@pytest.fixture(scope="module")
def gitlab(tmp_path_factory: pytest.TempPathFactory, apps_file: Path) -> Pipeline:
    return run_gitlab(tmp_path_factory.mktemp("gitlab"), apps_file)


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory: pytest.TempPathFactory, apps_file: Path) -> Path:
    """The same plan in one shard, run and merged on its own: what the shards must equal."""
    root = tmp_path_factory.mktemp("single")
    env = environment(apps_file)
    for command in (
        'dmh plan "$APPS" --shards 1 --out plan.json',
        "dmh certify --plan plan.json --shard 1/1 -n 0 --out single || test $? = 1",
        "dmh report --merge single --out merged --no-screenshot || test $? = 1",
    ):
        assert shell(command, root, env) == 0, command
    return root / "merged"


def summary(report: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((report / "summary.json").read_text("utf-8"))
    return data


def cells(report: Path) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in summary(report)["matrix"]["cells"]}


def outcomes(report: Path) -> dict[str, str]:
    return {t["nodeid"].split("::", 1)[0]: t["outcome"] for t in summary(report)["tests"]}


# -- GitHub ------------------------------------------------------------------------------


def test_github_plan_job_hands_a_matrix_of_every_shard(github: Pipeline) -> None:
    plan = json.loads((github.workspaces["plan[1]"] / "plan.json").read_text("utf-8"))
    assert [e["shard"] for e in plan["include"]] == ["1/2", "2/2"]
    dealt = [cell for shard in plan["shards"] for cell in shard["cells"]]
    assert sorted(dealt) == sorted(c["id"] for c in plan["cells"]) == sorted(EXPECTED)
    assert len(dealt) == len(set(dealt))  # each cell in exactly one shard


def test_github_shards_cover_the_matrix_exactly_once(github: Pipeline) -> None:
    plan, runs = find_runs([github.root / "artifacts"])
    assert sorted(runs) == sorted(c.id for c in plan.cells) == sorted(EXPECTED)
    manifests = sorted((github.root / "artifacts").rglob("shard-*-of-2.json"))
    per_manifest = [
        [c["cell"] for c in json.loads(p.read_text("utf-8"))["cells"]] for p in manifests
    ]
    assert sorted(c for cells in per_manifest for c in cells) == sorted(EXPECTED)
    assert all(len(cells) == 1 for cells in per_manifest)
    # a shard with the stale app says not certified (1); the good app's alone, inconclusive (2)
    assert sorted(github.exit_of("certify", "dmh certify")) == [1, 2]


def test_github_merged_summary_lists_every_cell_with_its_verdict(github: Pipeline) -> None:
    merged = github.workspaces["report[1]"] / "reports" / "merged"
    assert github.exit_of("report", "dmh report --merge") == [1]  # stale: not certified
    assert cells(merged) == EXPECTED
    assert outcomes(merged) == OUTCOMES
    data = summary(merged)
    assert {a["app"]: a["verdict"] for a in data["matrix"]["apps"]} == {
        "good": "inconclusive",
        "stale": "not certified",
    }
    assert data["verdict"]["status"] == "not certified"
    # one JUnit and one Allure results directory, each test named by its cell
    junit = (merged / "junit.xml").read_text("utf-8")
    assert junit.count("<testcase ") == 2
    assert 'classname="stale/linux/2019::' in junit and 'classname="good/linux/2019::' in junit
    results = [
        json.loads(p.read_text("utf-8")) for p in (merged / "allure-results").glob("*-result.json")
    ]
    assert sorted(
        next(label["value"] for label in r["labels"] if label["name"] == "dm_cell") for r in results
    ) == sorted(EXPECTED)
    assert len({r["historyId"] for r in results}) == 2  # the same scenario, two tests
    environment = (merged / "allure-results" / "environment.properties").read_text("ascii")
    assert "Host.2019=2019 (embedded emulator)" in environment
    assert "Matrix: app × host × guest profile" in (merged / "index.html").read_text("utf-8")


def test_merged_shards_equal_one_unsharded_run(github: Pipeline, unsharded: Path) -> None:
    merged = github.workspaces["report[1]"] / "reports" / "merged"
    assert cells(merged) == cells(unsharded) == EXPECTED
    assert outcomes(merged) == outcomes(unsharded)
    assert summary(merged)["verdict"]["status"] == summary(unsharded)["verdict"]["status"]


def test_a_missing_shard_leaves_its_cells_not_run(github: Pipeline, tmp_path: Path) -> None:
    only_first = github.root / "artifacts" / "shard-1"
    merge_shards([only_first], tmp_path / "merged")
    found = summary(tmp_path / "merged")["matrix"]["cells"]
    missing = [c for c in found if c["run"] is None]
    assert len(missing) == 1 and missing[0]["verdict"] == "inconclusive"
    assert missing[0]["reasons"] == ["not run: shard 2/2 left no result for it"]


def test_a_shard_merged_twice_is_refused(github: Pipeline, tmp_path: Path) -> None:
    shard = github.root / "artifacts" / "shard-1"
    shutil.copytree(shard, tmp_path / "again")
    with pytest.raises(ConfigError, match=r"was run by two shards"):
        merge_shards([shard, tmp_path / "again"], tmp_path / "merged")


# -- GitLab ------------------------------------------------------------------------------


def test_gitlab_pipeline_merges_its_parallel_matrix(gitlab: Pipeline, unsharded: Path) -> None:
    assert sorted(gitlab.exit_of("certify", "dmh certify")) == [1, 2]
    assert gitlab.exit_of("report", "dmh report --merge") == [1]
    merged = gitlab.workspaces["report[1]"] / "merged"
    assert cells(merged) == cells(unsharded) == EXPECTED
    assert outcomes(merged) == OUTCOMES
    assert (merged / "junit.xml").read_text("utf-8").count("<testcase ") == 2
