"""The plugin's options resolved once into `DMOptions`, the run's `RunTarget` in the header,
JUnit and every record, and `pytest_dmh_run_finished`, the hook a report output is added by.
Each run is a real pytest subprocess loading the plugin."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from harness.fixtures import options
from harness.report.model import load_records
from harness.target import RunTarget
from tests.embedded import PLUGIN_ARGS, REPO, plugin_env, use_plugin_env

pytest_plugins = ["pytester"]


def test_every_option_is_a_typed_field() -> None:
    """An option without its field (or a field without its option) would fail every run at
    configure time; a reader's misspelled field is an AttributeError mypy reports."""
    fields = {f.name for f in dataclasses.fields(options.DMOptions)} - {"target", "sources"}
    assert fields == {o.name.removeprefix("dm_") for o in options.OPTIONS}


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("--dm-track-within=0", "--dm-track-within: '0' must be a finite number of seconds > 0"),
        ("--dm-track-within=inf", "--dm-track-within: 'inf' must be a finite number of seconds"),
        ("--dm-sample-interval=x", "--dm-sample-interval: 'x' must be a finite number of seconds"),
        ("--dm-guest-ssh-port=70000", "--dm-guest-ssh-port: '70000' must be a port number"),
        ("--dm-guest-accept-any-host-key=sure", "'sure' is not one of no, yes"),
        ("--dm-expect=fast", "--dm-expect: 'fast' must be one of survive, track"),
    ],
)
def test_a_bad_value_is_a_usage_error_before_anything_runs(
    pytester: pytest.Pytester, given: str, error: str
) -> None:
    pytester.makepyfile(test_nothing="def test_x():\n    pass\n")
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, given, timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert error in result.stderr.str()


def test_grace_takes_the_same_seconds_rule() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "certify", "--grace", "nan"],
        capture_output=True,
        text=True,
        env=plugin_env(),
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 4
    assert "'nan' must be a finite number of seconds > 0" in done.stderr


OUTPUT_PLUGIN = """
import json


def pytest_dmh_run_finished(config, records, run_dir, exitstatus):
    (run_dir / "extra.json").write_text(json.dumps({
        "tests": [r.scenario for r in records],
        "where": [r.target.description for r in records],
        "exitstatus": exitstatus,
        "summary_written": (run_dir / "summary.json").exists(),
    }))
"""


def test_a_report_output_is_added_by_a_hook_and_published_with_the_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(OUTPUT_PLUGIN)
    pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.dm_memory(startup="1GB", minimum="512MB", maximum="2GB")
        def test_hot_add_is_seen(dm_vm, dm_guest_os):
            assert dm_vm.state == "Running"
        """
    )
    out = pytester.path / "out"
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(
            *PLUGIN_ARGS,
            "--dm-guest-os=linux",
            "--dm-emulator-version=2016",
            f"--dm-report-dir={out}",
            "--junitxml=junit.xml",
            timeout=120,
        )
    result.assert_outcomes(passed=1)
    described = "embedded emulator (plays Hyper-V 2016), on the embedded emulator — not a "
    assert described in result.stdout.str()  # the header
    extra = json.loads((out / "latest" / "extra.json").read_text(encoding="utf-8"))
    assert extra == {
        "tests": ["hot-add is seen"],  # the one scenario name, as the console shows it
        "where": [described + "certification on Hyper-V"],
        "exitstatus": 0,
        "summary_written": True,  # the plugin's own outputs come first: the verdict is there
    }
    (record,) = load_records(out / "latest" / "records")
    assert record.target == RunTarget.emulator("2016", "process")
    assert "(1/1) hot-add is seen [linux]: PASS" in result.stdout.str()
    junit = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert f'name="dm_ran_on" value="{described}certification on Hyper-V"' in junit
