"""`dmh plan` and `dmh certify --plan --shard`: cells, shards, bad input, host labels.

The plan is pure (a TOML in, JSON out); the host-label checks run real `dmh` processes on
embedded emulators (one fast scenario each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, SettingError
from harness.plan import host_label_problem, load_apps, load_plan, make_plan, parse_shard

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300
MATRIX = """\
profiles = ["linux", "windows"]
hosts = ["2019", "2022", "lab-a"]

[apps.a]
command = "cache_good.py"
expect = ["survive", "track"]

[apps.b]
command = "cache_stale.py --x 1"
expect = ["survive"]
view = ""

[apps.c]
command = "cache_quiet.py"
expect = ["bounded"]
profiles = ["linux"]
hosts = ["2022"]
"""


def write(tmp_path: Path, text: str, name: str = "apps.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def dmh(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_cells_are_apps_times_profiles_times_hosts_with_per_app_axes(tmp_path: Path) -> None:
    cells = load_apps(write(tmp_path, MATRIX))
    assert [c.id for c in cells] == [
        "a/linux/2019", "a/linux/2022", "a/linux/lab-a",
        "a/windows/2019", "a/windows/2022", "a/windows/lab-a",
        "b/linux/2019", "b/linux/2022", "b/linux/lab-a",
        "b/windows/2019", "b/windows/2022", "b/windows/lab-a",
        "c/linux/2022",
    ]  # fmt: skip
    b = next(c for c in cells if c.id == "b/windows/lab-a")
    assert b.certify_args() == (
        "--dm-guest-os=windows",
        "--dm-expect=survive",
        "--dm-host-label=lab-a",
    )
    assert b.command == "cache_stale.py --x 1"


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 13])
def test_shards_cover_every_cell_once_and_differ_by_at_most_one(
    tmp_path: Path, shards: int
) -> None:
    cells = load_apps(write(tmp_path, MATRIX))
    plan = make_plan(cells, shards, "apps.toml")
    dealt = [cell for shard in plan.shards for cell in shard.cells]
    assert sorted(dealt) == sorted(c.id for c in cells)
    assert len(dealt) == len(set(dealt))
    sizes = [len(s.cells) for s in plan.shards]
    assert max(sizes) - min(sizes) <= 1
    assert [(s.index, s.of) for s in plan.shards] == [(i, shards) for i in range(1, shards + 1)]


def test_the_plan_is_the_same_on_every_machine_and_reads_back(tmp_path: Path) -> None:
    """Each CI job may compute the plan again: same TOML, same id, same shards."""
    first = dmh(
        "plan", str(write(tmp_path, MATRIX)), "--shards", "3", "--out", "p1.json", cwd=tmp_path
    )
    second = dmh("plan", "apps.toml", "--shards", "3", "--out", "p2.json", cwd=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr
    assert (tmp_path / "p1.json").read_text() == (tmp_path / "p2.json").read_text()
    assert json.loads(first.stdout) == {
        "include": [
            {"shard": "1/3", "index": 1, "of": 3, "cells": 5},
            {"shard": "2/3", "index": 2, "of": 3, "cells": 4},
            {"shard": "3/3", "index": 3, "of": 3, "cells": 4},
        ]
    }
    plan = load_plan(tmp_path / "p1.json")
    assert plan.id == json.loads((tmp_path / "p1.json").read_text())["id"]
    assert plan.shard(2, 3).cells == (
        "a/linux/2022", "a/windows/2022", "b/linux/2022", "b/windows/2022",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('profiles = ["linux"]\n', "apps: None is not allowed: must be one or more [apps.NAME]"),
        ('[apps.a]\ncommand = "x.py"\n', "missing keys ['expect']"),
        ('[apps.a]\ncommand = "x.py"\nexpect = ["fly"]\n', "'fly' is not allowed: must be one of"),
        ('profiles = ["macos"]\n[apps.a]\ncommand = "x"\nexpect = ["survive"]\n',
         "guest profile: 'macos' is not allowed: must be one of windows, linux"),
        ('hosts = ["a b"]\n[apps.a]\ncommand = "x"\nexpect = ["survive"]\n',
         "hosts label: 'a b' is not allowed: must be letters, digits"),
        ('[apps."a/b"]\ncommand = "x"\nexpect = ["survive"]\n', "app name: 'a/b' is not allowed"),
        ('[apps.a]\ncommand = ""\nexpect = ["survive"]\n', "apps.a.command: '' is not allowed"),
        ('shards = 3\n[apps.a]\ncommand = "x"\nexpect = ["survive"]\n', "keys: ['shards']"),
        ("[apps.a\n", "not TOML"),
    ],
)  # fmt: skip
def test_a_bad_apps_file_names_the_value_and_the_rule(
    tmp_path: Path, text: str, named: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_apps(path)
    assert str(path) in str(caught.value) and named in str(caught.value)


def test_more_shards_than_cells_and_bad_shard_numbers_are_refused(tmp_path: Path) -> None:
    cells = load_apps(write(tmp_path, MATRIX))
    with pytest.raises(SettingError, match=r"--shards: 14 .*at most the plan's 13 cells"):
        make_plan(cells, 14)
    for text in ("0/3", "4/3", "3", "a/b", "1/"):
        with pytest.raises(ValueError, match=r"must be"):
            parse_shard(text)
    with pytest.raises(SettingError, match=r"--shard: 1/2 .*this plan has 3 shards"):
        make_plan(cells, 3).shard(1, 2)
    done = dmh("certify", "--plan", "nope.json", cwd=tmp_path)
    assert done.returncode == 4 and "--plan and --shard go together" in done.stderr


def test_a_plan_edited_by_hand_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    data = make_plan(load_apps(write(tmp_path, MATRIX)), 2).to_json()
    data["shards"][0]["cells"].append(data["shards"][1]["cells"][0])  # a cell in two shards
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"do not cover its cells exactly once"):
        load_plan(path)
    data = make_plan(load_apps(write(tmp_path, MATRIX)), 2).to_json()
    data["cells"][0]["command"] = "evil.py"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"does not match its cells"):
        load_plan(path)


def test_host_label_problems_say_what_the_host_is() -> None:
    assert host_label_problem("2019", embedded=True, version="2019") == ""
    assert host_label_problem("any", embedded=False, version="2016") == ""
    assert "asks for Hyper-V 2016, but the embedded emulator plays Hyper-V 2022" in (
        host_label_problem("2016", embedded=True, version="2022")
    )
    assert "not a Hyper-V version" in host_label_problem("gpu", embedded=False, version="2019")


def test_a_shard_runs_its_cells_and_a_label_no_host_matches_is_inconclusive(
    tmp_path: Path,
) -> None:
    """Two cells of one app: host label 2016 makes the embedded emulator play 2016 (its
    records say so), an inventory label it cannot have breaks the cell, saying why."""
    apps = write(
        tmp_path,
        'profiles = ["linux"]\nhosts = ["2016", "lab-gpu"]\npytest_args = ["-k", "start_below_demand"]\n'
        '[apps.good]\ncommand = "cache_good.py"\nexpect = ["survive", "track"]\n',
    )
    assert dmh("plan", str(apps), "--out", "plan.json", cwd=tmp_path).returncode == 0
    done = dmh("certify", "--plan", "plan.json", "--shard", "1/1", "-n", "0", "--out", "out",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "shard-1-of-1.json").read_text())
    assert [c["cell"] for c in manifest["cells"]] == ["good/linux/2016", "good/linux/lab-gpu"]
    runs = {c["cell"]: tmp_path / "out" / c["run"] for c in manifest["cells"]}
    played = json.loads((runs["good/linux/2016"] / "summary.json").read_text())
    assert played["tests"][0]["outcome"] == "passed"
    assert played["verdict"]["status"] == "inconclusive"  # -k: a subset
    records = list((runs["good/linux/2016"] / "records").glob("record-*.json"))
    assert json.loads(records[0].read_text())["target"]["hyperv_version"] == "2016"
    broken = json.loads((runs["good/linux/lab-gpu"] / "summary.json").read_text())
    assert broken["tests"][0]["outcome"] == "broken"
    assert "host label 'lab-gpu' is not a Hyper-V version" in broken["verdict"]["reasons"][0]


def test_the_readme_matrix_commands_parse_and_plan_the_docs_apps(tmp_path: Path) -> None:
    """The README's commands under `<!-- readme-nightly-matrix -->`: every one parses with
    dmh's own parser, and the plan it shows is the one the docs' apps file gives."""
    import re
    import shlex

    from harness.cli import _parser

    text = (REPO / "README.md").read_text("utf-8")
    found = re.search(r"<!-- readme-nightly-matrix -->\n```sh\n(.*?)\n```", text, re.S)
    assert found is not None
    commands = [shlex.split(line.split("#")[0]) for line in found.group(1).splitlines()]
    assert [c[1] for c in commands] == ["plan", "certify", "certify", "report"]
    for command in commands:
        assert command[0] == ".venv/bin/dmh"
        _parser().parse_args(command[1:])  # a bad option would exit 4
    plan = make_plan(load_apps(REPO / "docs" / "ci" / "apps.toml"), 2)
    assert len(plan.cells) == 8 and [len(s.cells) for s in plan.shards] == [4, 4]


def test_a_lab_host_of_another_version_than_the_label_breaks_the_cell(tmp_path: Path) -> None:
    """`--dm-host` (an emulator playing Hyper-V 2019, reached as a lab host is): a cell that
    asks for 2022 is not run there; its tests are broken with both versions named."""
    from tests.embedded import running_emulator

    apps = write(
        tmp_path,
        'profiles = ["linux"]\nhosts = ["2022"]\npytest_args = ["-k", "start_below_demand"]\n'
        '[apps.good]\ncommand = "cache_good.py"\nexpect = ["survive"]\n',
    )
    assert dmh("plan", str(apps), "--out", "plan.json", cwd=tmp_path).returncode == 0
    with running_emulator(version="2019") as emulator:
        emu = emulator.emu
        url = f"psrp://{emu.username}@127.0.0.1:{emu.server.port}?auth=basic&ssl=false"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMH_")}
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "certify", "--dm-host", url, "--plan",
             "plan.json", "--shard", "1/1", "-n", "0", "--out", "out"],
            cwd=tmp_path, env={**env, "DMH_HOST_PASSWORD": emu.password}, capture_output=True,
            text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "shard-1-of-1.json").read_text())
    summary = json.loads(
        (tmp_path / "out" / manifest["cells"][0]["run"] / "summary.json").read_text()
    )
    assert summary["tests"][0]["outcome"] == "broken"
    assert (
        "host label '2022' asks for Hyper-V 2022, but the host given with --dm-host runs "
        "Hyper-V 2019" in summary["verdict"]["reasons"][0]
    )
    assert emu.password not in done.stdout + done.stderr
