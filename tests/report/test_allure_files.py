"""Allure's run-wide files: environment.properties, categories.json and executor.json."""

from __future__ import annotations

import json
import platform
import re
import traceback
from pathlib import Path

import pytest

import harness
from harness import errors
from harness.expect import BEHAVIOURS as harness_behaviours
from harness.report.allure_files import (
    BEHAVIOURS,
    CATEGORIES,
    allure3_config,
    behaviour_of,
    categories,
    detect_executor,
    write_allure_files,
    write_categories,
    write_environment,
    write_executor,
)
from harness.report.model import load_records

STATIC = Path(__file__).resolve().parents[2] / "reports" / "allure-categories.json"
ALLURE3 = Path(__file__).resolve().parents[2] / "reports" / "allurerc.json"


def read_properties(path: Path) -> dict[str, str]:
    """The subset of java.util.Properties the writer produces: key=value, backslash escapes."""
    text = path.read_bytes().decode("ascii")  # Properties are read as ISO-8859-1: ASCII only
    result = {}
    for line in text.splitlines():
        key, value = re.split(r"(?<!\\)=", line, maxsplit=1)
        result[_unescape(key)] = _unescape(value)
    return result


def _unescape(text: str) -> str:
    text = re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = text.encode("utf-16", "surrogatepass").decode("utf-16")
    escapes = {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), text)


def allure_message(error: BaseException) -> str:
    """The status message allure-pytest records for an exception."""
    return "".join(traceback.format_exception_only(type(error), error))


def matching(message: str, status: str) -> list[str]:
    # Allure uses Java's Pattern.matches: the whole message must match.
    return [
        c["name"]
        for c in CATEGORIES
        if status in c["matchedStatuses"] and re.fullmatch(c["messageRegex"], message)
    ]


def test_environment_for_the_embedded_emulator(tmp_path: Path) -> None:
    path = write_environment(
        tmp_path,
        host_label="embedded emulator",
        hyperv_version="2022 (embedded emulator)",
        guest_profiles=["ubuntu-22.04", "windows-2022"],
        app="python -m cache_sizer --ratio=0.25",
        extra={"Schedule: mode": "fast\nnext", "Gast": "Größe ✓"},
    )
    assert read_properties(path) == {
        "DM.Harness": harness.__version__,
        "Host": "embedded emulator",
        "Hyper-V": "2022 (embedded emulator)",
        "Guest.OS": "ubuntu-22.04, windows-2022",
        "App": "python -m cache_sizer --ratio=0.25",
        "Python": platform.python_version(),
        "Schedule: mode": "fast\nnext",
        "Gast": "Größe ✓",
    }


def test_environment_for_a_lab_host(tmp_path: Path) -> None:
    path = write_environment(
        tmp_path, host_label="psrp://hyperv01.lab:5986", hyperv_version="10.0.20348"
    )
    props = read_properties(path)
    assert props["Host"] == "psrp://hyperv01.lab:5986"
    assert props["Hyper-V"] == "10.0.20348"
    assert props["Guest.OS"] == "none"


def test_categories_file_is_the_static_copy(tmp_path: Path) -> None:
    written = json.loads(write_categories(tmp_path).read_text())
    assert written == json.loads(STATIC.read_text())
    assert categories(STATIC) == written
    for category in written:
        assert set(category) <= {"name", "matchedStatuses", "messageRegex", "traceRegex"}
        assert set(category["matchedStatuses"]) <= {"failed", "broken", "passed", "skipped"}


def test_an_expectation_failure_is_a_product_defect() -> None:
    message = allure_message(errors.ExpectationFailed("app kept 1024 MB\nwindow 16 s – 26 s"))
    assert matching(message, "failed") == ["Product defects: another expectation failed"]
    assert matching(allure_message(AssertionError("plain assert")), "failed") == []


def _failure(*lines: str) -> str:
    return allure_message(errors.ExpectationFailed("\n\n".join(lines)))


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("app survived", "the app did not survive"),
        ("the app exited", "the app did not survive"),
        ("app's total_mb tracks the guest", "the app's view does not track the guest"),
        ("app grows into memory after force hot-add (raise maximum)", "the app did not grow"),
        ("app releases memory after load generator commits 1 GB", "the app did not release"),
        ("the app did not release", "the app did not release"),
        ("app's working set within guest memory", "the app or the VM left its bounds"),
    ],
)
def test_product_defects_are_grouped_by_expectation_not_by_numbers(
    name: str, category: str
) -> None:
    """The same expectation with different numbers lands in one category, named by the
    behaviour; numbers in the detail never decide the category."""
    first = _failure(f"{name}: working set stayed at 1408 MB (was 2688 MB) at t=12.5s")
    second = _failure(f"{name}: working set stayed at 512 MB (was 640 MB) at t=3.0s")
    assert matching(first, "failed") == matching(second, "failed")
    found = matching(first, "failed")
    assert len(found) == 1 and found[0].startswith(f"Product defects: {category}"), found


def test_a_test_failing_two_behaviours_is_in_both_categories() -> None:
    message = allure_message(
        errors.ExpectationFailed(
            "2 expectation(s) failed:\n\napp's total_mb tracks the guest: at t=3.0s it "
            "reported 1024\n\napp survived: the app exited with code 3 after a release"
        )
    )
    assert matching(message, "failed") == [
        "Product defects: the app did not survive",
        "Product defects: the app's view does not track the guest",
    ]


def test_a_word_in_the_detail_does_not_move_the_category() -> None:
    # "release" and "exited" appear only after the name's colon: still a tracking failure.
    message = _failure("app's total_mb tracks the guest: stale after the balloon's release; exited")
    assert matching(message, "failed") == [
        "Product defects: the app's view does not track the guest"
    ]


def test_behaviour_of_an_expectation_name() -> None:
    assert behaviour_of("app releases memory after the load generator exits") == "release"
    assert behaviour_of("app grows into memory after force hot-add") == "grow"
    assert behaviour_of("assigned memory within minimum and maximum") == "bounded"
    assert behaviour_of("the app's total_mb does not track the guest") == "track"
    assert behaviour_of("app survived") == "survive"
    assert behaviour_of("the app's configured limits stay put") == "limits"
    assert behaviour_of("something else entirely") is None
    assert [b.key for b in BEHAVIOURS] == list(harness_behaviours)


def test_allure3_config_is_the_shipped_copy_and_valid_for_javascript() -> None:
    """Allure 3 ignores categories.json and the history/ carry-over without a config; the
    shipped reports/allurerc.json carries both, and its regexes are JavaScript ones."""
    config = allure3_config()
    assert json.loads(ALLURE3.read_text()) == config
    assert config["historyPath"].endswith(".jsonl")
    rules = config["categories"]["rules"]
    assert rules[0]["groupBy"][0] == {"label": "expectation"}
    assert all(rule["groupByMessage"] is False for rule in rules)
    broken = [r for r in rules if r["matchers"]["statuses"] == ["broken"]]
    assert len(broken) == len([c for c in CATEGORIES if c["matchedStatuses"] == ["broken"]])
    for rule in broken:
        pattern = rule["matchers"]["message"]
        assert "(?" not in pattern  # no inline flags: JavaScript's RegExp rejects (?s)
        found = [r["name"] for r in broken if re.search(r["matchers"]["message"], "LeverError: x")]
        assert found == ["Infrastructure: a lever could not move memory"]


def _leaf_error(cls: type[errors.HarnessError]) -> BaseException:
    if issubclass(cls, errors.RuntimeChangeError):
        return cls("maximum_mb", 8192, "cannot change while running", "6.3")
    if issubclass(cls, errors.SettingError):
        return cls("maximum_mb", 3, "a multiple of 2 MB")
    if issubclass(cls, errors.HostError):
        return cls("refused", host="hyperv01.lab", command="Start-VM")
    if issubclass(cls, errors.BalloonBlocked):
        return cls("it held", wanted_mb=512, assigned_mb=1024, demand_mb=900, seconds=60)
    error: BaseException = cls("it went wrong")
    return error


def _subclasses(cls: type[errors.HarnessError]) -> list[type[errors.HarnessError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def _class_name(cls: object) -> str:
    return getattr(cls, "__name__", str(cls))


HARNESS_ERRORS = sorted(
    {
        c
        for c in _subclasses(errors.HarnessError)
        if c.__module__ == "harness.errors" and c is not errors.HarnessError
    },
    key=_class_name,
)


@pytest.mark.parametrize("cls", HARNESS_ERRORS, ids=_class_name)
def test_every_harness_error_lands_in_exactly_one_broken_category(
    cls: type[errors.HarnessError],
) -> None:
    message = allure_message(_leaf_error(cls))
    found = matching(message, "broken")
    assert len(found) == 1, f"{cls.__name__}: {found}"
    infrastructure = issubclass(cls, errors.InfrastructureError)
    assert found[0].startswith("Infrastructure:") == infrastructure
    assert matching(message, "failed") == []


def test_records_give_the_environment(mixed_run: Path, tmp_path: Path) -> None:
    files = write_allure_files(tmp_path, load_records(mixed_run), env={})
    props = read_properties(files.environment)
    assert props["Guest.OS"] == "ubuntu-22.04, windows-2022"
    assert props["Hyper-V"] == "2022 (embedded emulator)"  # the records say what it played
    assert json.loads(files.categories.read_text())
    assert files.executor is None and not (tmp_path / "executor.json").exists()


CI = {
    "github": {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "isv/app",
        "GITHUB_RUN_ID": "991",
        "GITHUB_RUN_NUMBER": "42",
        "GITHUB_WORKFLOW": "certify",
        "DMH_REPORT_URL": "https://isv.github.io/app/report/",
    },
    "gitlab": {
        "GITLAB_CI": "true",
        "CI_PROJECT_URL": "https://gitlab.example/isv/app",
        "CI_PIPELINE_IID": "17",
        "CI_JOB_NAME": "certify",
        "CI_JOB_URL": "https://gitlab.example/isv/app/-/jobs/5",
    },
    "jenkins": {
        "JENKINS_URL": "https://ci:s3cret@jenkins.example:8443/",
        "BUILD_NUMBER": "311",
        "JOB_NAME": "certify",
        "BUILD_URL": "https://jenkins.example:8443/job/certify/311/",
    },
    "azure": {
        "TF_BUILD": "True",
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/isv/",
        "SYSTEM_TEAMPROJECT": "app",
        "BUILD_BUILDID": "1234",
        "BUILD_DEFINITIONNAME": "certify",
        "BUILD_BUILDNUMBER": "20250615.3",
    },
}


@pytest.mark.parametrize("kind", sorted(CI))
def test_executor_for_each_ci(kind: str, tmp_path: Path) -> None:
    path = write_executor(tmp_path, CI[kind])
    assert path == tmp_path / "executor.json"
    data = json.loads(path.read_text())
    assert data["type"] == kind
    assert {"name", "type", "buildName", "buildUrl", "buildOrder", "url"} <= set(data)
    assert isinstance(data["buildOrder"], int)
    assert all(v.startswith("https://") for k, v in data.items() if k.endswith(("Url", "url")))
    assert "s3cret" not in path.read_text()


def test_executor_details() -> None:
    github = detect_executor(CI["github"])
    assert github is not None
    assert github.build_url == "https://github.com/isv/app/actions/runs/991"
    assert github.build_name == "certify #42"
    assert github.report_url == "https://isv.github.io/app/report/"
    azure = detect_executor(CI["azure"])
    assert azure is not None
    assert azure.build_url == "https://dev.azure.com/isv/app/_build/results?buildId=1234"
    jenkins = detect_executor(CI["jenkins"])
    assert jenkins is not None and jenkins.url == "https://jenkins.example:8443/"


def test_no_executor_outside_ci(tmp_path: Path) -> None:
    assert detect_executor({"HOME": "/root"}) is None
    assert write_executor(tmp_path, {}) is None
    assert list(tmp_path.iterdir()) == []
