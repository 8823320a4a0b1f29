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
from harness.report.allure_files import (
    CATEGORIES,
    categories,
    detect_executor,
    write_allure_files,
    write_categories,
    write_environment,
    write_executor,
)
from harness.report.model import load_records

STATIC = Path(__file__).resolve().parents[2] / "reports" / "allure-categories.json"


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
        guest_profiles=["ubuntu-22.04", "windows-2022"],
        app="python -m cache_sizer --ratio=0.25",
        extra={"Schedule: mode": "fast\nnext", "Gast": "Größe ✓"},
    )
    assert read_properties(path) == {
        "DM.Harness": harness.__version__,
        "Host": "embedded emulator",
        "Hyper-V": "embedded emulator",
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
    assert matching(message, "failed") == [
        "Product defects: the app misbehaved under Dynamic Memory"
    ]
    assert matching(allure_message(AssertionError("plain assert")), "failed") == []


def _leaf_error(cls: type[errors.HarnessError]) -> BaseException:
    if issubclass(cls, errors.RuntimeChangeError):
        return cls("maximum_mb", 8192, "cannot change while running", "6.3")
    if issubclass(cls, errors.SettingError):
        return cls("maximum_mb", 3, "a multiple of 2 MB")
    if issubclass(cls, errors.HostError):
        return cls("refused", host="hyperv01.lab", command="Start-VM")
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
    assert props["Hyper-V"] == "embedded emulator"
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
