"""The app's load (`--dm-app-load`), run by the suites as users run them: what its runs' exit
codes mean for the verdict (harness/appload.py). The load here is a shell script in the
user's directory, copied into the guest like the app's files; what it does on each run is
written in it, so each rule is exercised by the real runner in a real guest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.suites.test_meta import SURVIVE, run_suite, verdict

pytest_plugins = ["pytester"]

# Run N (from 0) does what its line says: the count is kept in the guest, beside the script.
SCRIPT = """\
n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs
echo "run $n"
{body}
"""


def load_script(pytester: pytest.Pytester, body: str) -> str:
    pytester.path.joinpath("load.sh").write_text(SCRIPT.format(body=body))
    return "--dm-app-load=sh load.sh"


def timeline_events(pytester: pytest.Pytester) -> list[str]:
    [path] = (pytester.path / "out").glob("runs/*/timelines/*.jsonl")
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return [line["message"] for line in lines if line.get("type") == "event"]


def test_a_load_that_stops_being_served_fails_the_app_and_a_killed_client_does_not(
    pytester: pytest.Pytester,
) -> None:
    """Runs 0 and 1 succeed; run 2 is killed by SIGKILL, as the guest's OOM killer would kill
    the client (not the app's failure); run 3 on exits 1: the app stopped serving."""
    load = load_script(
        pytester,
        '[ "$n" -lt 2 ] && exit 0\n[ "$n" -eq 2 ] && kill -9 $$\necho "refused"; exit 1',
    )
    records = run_suite(pytester, "cache_quiet.py", "--dm-guest-os=linux", "-k", "hot_add", load)
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "failed", record.message
    [survive] = [e for e in record.expectations if e.name == SURVIVE]
    assert not survive.passed
    assert survive.detail.startswith(
        "the app stopped serving its load: a run of `sh load.sh` exited 1: run 3 / refused"
    ), survive.detail
    assert "4 times, 2 succeeded, 1 killed by the guest, 1 failed after it" in survive.detail
    events = timeline_events(pytester)
    assert "app load served: a run succeeded" in events
    assert any(e.startswith("app load run was killed (SIGKILL): run 2") for e in events), events
    assert verdict(pytester) == "not certified"


def test_a_load_that_never_succeeds_breaks_the_test(pytester: pytest.Pytester) -> None:
    """Nothing was exercised as asked: the test is broken, never passed, never the app's."""
    load = load_script(pytester, 'echo "connection refused"; exit 7')
    records = run_suite(pytester, "cache_quiet.py", "--dm-guest-os=linux", "-k", "hot_add", load)
    record = records["test_hot_add_during_steady_load[linux]"]
    assert record.outcome == "broken", record.message
    assert "the app load did not succeed before the first lever" in record.message, record.message
    assert "the last that did not succeed exited 7: run " in record.message, record.message
    assert "/ connection refused" in record.message
    assert verdict(pytester) == "inconclusive"


def test_a_load_names_only_the_apps_pid(pytester: pytest.Pytester) -> None:
    """A placeholder other than {pid} is refused before anything runs, naming the rule."""
    result = pytester.runpytest_subprocess(
        str(Path(__file__).resolve().parents[2] / "suites" / "test_certification.py"),
        "--dm-app-load=redis-benchmark -p {port}",
    )
    assert result.ret != 0
    assert "may use only the placeholder {pid} (found port)" in result.stderr.str()
