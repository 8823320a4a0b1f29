"""The installable plugin: a wheel built from this checkout, installed into a fresh virtual
environment (dependencies from the configured package index, through pip's cache), runs the
suites from a directory outside the checkout, as an ISV's repository would: `pytest --pyargs
harness.suites` through the `pytest11` entry point, and `dmh certify`.

Slow (a venv and its dependencies): one module-scoped environment serves every test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.embedded import REPO

# One worker builds the wheel once for all of them: two builds at once collide in the
# checkout's build/ directory (setuptools builds in the source tree).
pytestmark = pytest.mark.xdist_group("wheel")

# Names other projects own on PyPI: the wheel must not install them at the top level.
FOREIGN_TOP_LEVEL = ("fixtures", "suites", "reports", "tests")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a directory outside the checkout, like an ISV's repository

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DMH_", "PYTEST_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            command,
            cwd=self.outside,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _checked(process: subprocess.CompletedProcess[str]) -> str:
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    _checked(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    )
    (wheel,) = dist.glob("dm_harness-*.whl")
    venv = root / "venv"
    _checked(
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    )
    outside = root / "isv-repo"
    outside.mkdir()
    result = Installed(wheel, venv, outside)
    _checked(result.run(result.bin("pip"), "install", "-q", str(wheel)))
    yield result


def test_the_wheel_ships_the_plugin_suites_and_reports_under_harness(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert not tops & set(FOREIGN_TOP_LEVEL), tops
    for shipped in (
        "harness/fixtures/plugin.py",
        "harness/suites/test_certification.py",
        "harness/suites/conftest.py",
        "harness/suites/apps/cache_good.py",
        "harness/suites/tools/wmi_tool.py",
        "harness/reports/allurerc.json",
        "harness/reports/allure-categories.json",
        "harness/emulator/process/sandbox/dmh_guest_preload.c",
    ):
        assert shipped in names, shipped
    # Every package of the checkout is in the wheel (the package list is explicit).
    packages = {
        "harness." + ".".join(p.parent.relative_to(REPO / "harness").parts)
        for p in (REPO / "harness").rglob("__init__.py")
    }
    packages = {p.rstrip(".") for p in packages}
    for package in packages:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    assert "[pytest11]\nharness.fixtures.plugin = harness.fixtures.plugin" in text
    assert "dmh = harness.cli:main" in text


def test_pytest_runs_the_installed_suites_from_any_directory(installed: Installed) -> None:
    """The entry point loads the plugin once; the suites are found by package name."""
    output = _checked(
        installed.run(installed.bin("pytest"), "--pyargs", "harness.suites", "--co", "-q")
    )
    assert "12 tests collected" in output, output[-3000:]
    assert "test_hot_add_during_steady_load[linux]" in output
    header = _checked(installed.run(installed.bin("pytest"), "--pyargs", "harness.suites", "--co"))
    assert "not a certification on Hyper-V" in header
    # Naming the plugin again (as a conftest.py or -p would) does not register it twice.
    twice = installed.run(
        installed.bin("pytest"), "-p", "harness.fixtures.plugin", "--pyargs", "harness.suites",
        "--co", "-q",
    )  # fmt: skip
    assert "12 tests collected" in _checked(twice)


def test_dmh_certify_runs_outside_the_checkout(installed: Installed) -> None:
    """`dmh certify` from an ISV's directory: the installed suites on the embedded emulator
    (one scenario, one profile: a subset, so inconclusive rather than certified)."""
    process = installed.run(
        installed.bin("dmh"), "certify", "--", "-k", "hot_add and linux", timeout=600
    )
    output = process.stdout + process.stderr
    assert "(1/1) hot-add during steady load [linux]: PASS" in output, output[-4000:]
    summary = json.loads((installed.outside / "reports" / "out" / "summary.json").read_text())
    assert summary["totals"]["passed"] == 1, output[-4000:]
    assert not (installed.outside / "suites").exists()  # nothing copied into the ISV's repo
