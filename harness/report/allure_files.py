"""Run-wide Allure files (environment, categories, executor), written once by the controller,
and the Allure 3 configuration shipped next to the categories (`reports/allurerc.json`).

Categories separate product defects (`ExpectationFailed`) from infrastructure problems, and
group product defects by the behaviour that failed (survive, track, grow, release, bounded, limits),
never by message text, whose numbers differ in every run. Allure 2 matches categories on the
message only, so its categories match the expectation's name (the words before the first
colon of a line); Allure 3 groups by the `expectation` label the plugin sets.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import harness
from harness.report.model import TestRecord
from harness.target import EMBEDDED_EMULATOR, RunTarget

REPORT_URL_VARIABLE = "DMH_REPORT_URL"  # where the published report will live, if known


EXPECTATION_LABEL = "expectation"  # one per behaviour that failed, on the test's result


@dataclass(frozen=True)
class Behaviour:
    """A behaviour an app can be certified on, and the words its expectations are named by."""

    key: str
    title: str
    words: str  # a regular expression over the expectation's name (Java and Python alike)


BEHAVIOURS = (
    Behaviour("survive", "the app did not survive", r"surviv|exit|crash|killed|signal"),
    Behaviour("track", "the app's view does not track the guest", r"track|stale|view"),
    Behaviour("grow", "the app did not grow into added memory", r"grow"),
    Behaviour("release", "the app did not release memory", r"releas|give"),
    Behaviour("bounded", "the app or the VM left its bounds", r"within|bound|exceed|outside"),
    Behaviour("limits", "the app's configured limits moved", r"limits"),
)


def behaviour_of(expectation: str) -> str | None:
    """The behaviour an expectation checks, from its name ("app releases memory after …" →
    "release": the word that comes first, as the name starts with what it checks); None for
    an expectation outside them."""
    found = [
        (match.start(), behaviour.key)
        for behaviour in BEHAVIOURS
        if (match := re.search(rf"(?i)\b(?:{behaviour.words})", expectation))
    ]
    return min(found)[1] if found else None


def _names(*classes: str) -> str:
    # Allure matches the whole message with Java's Pattern.matches; (?s) lets .* span lines.
    return r"(?s).*\b(" + "|".join(classes) + r")\b.*"


_FAILED = r"(?=.*\bExpectationFailed\b)"
# A line naming an expectation: an optional exception prefix, then the name up to its colon.
_NAME_LINE = r"(?:.*\n)?(?:[\w.]*ExpectationFailed: )?[^\n:]*\b(?i:{words})[^\n:]*:"


def _expectation_named(words: str) -> str:
    return rf"(?s){_FAILED}{_NAME_LINE.format(words=words)}.*"


def _expectation_not_named(words: str) -> str:
    return rf"(?s){_FAILED}(?!{_NAME_LINE.format(words=words)}).*"


# Allure 2 puts a result in every category it matches: a test that failed two behaviours is
# in both; broken categories are disjoint by class.
CATEGORIES: tuple[Mapping[str, Any], ...] = (
    *(
        {
            "name": f"Product defects: {behaviour.title}",
            "matchedStatuses": ["failed"],
            "messageRegex": _expectation_named(behaviour.words),
        }
        for behaviour in BEHAVIOURS
    ),
    {
        "name": "Product defects: another expectation failed",
        "matchedStatuses": ["failed"],
        "messageRegex": _expectation_not_named("|".join(b.words for b in BEHAVIOURS)),
    },
    {
        "name": "Infrastructure: host unreachable or credentials refused",
        "matchedStatuses": ["broken"],
        "messageRegex": _names("HostUnreachableError", "AuthenticationError"),
    },
    {
        "name": "Infrastructure: a lever could not move memory",
        "matchedStatuses": ["broken"],
        "messageRegex": _names("LeverError", "BalloonBlocked"),
    },
    {
        "name": "Infrastructure: deadline passed waiting for host or guest",
        "matchedStatuses": ["broken"],
        "messageRegex": _names("DeadlineError"),
    },
    {
        "name": "Infrastructure: a host command failed (VM did not start, wrong state, refused)",
        "matchedStatuses": ["broken"],
        "messageRegex": _names(
            "HostError",
            "CommandError",
            "ObjectNotFoundError",
            "InvalidStateError",
            "InvalidArgumentError",
        ),
    },
    {
        "name": "Infrastructure: other infrastructure problems",
        "matchedStatuses": ["broken"],
        "messageRegex": _names("InfrastructureError"),
    },
    {
        "name": "Harness configuration: a setting or option breaks a rule",
        "matchedStatuses": ["broken"],
        "messageRegex": _names("ConfigError", "SettingError", "RuntimeChangeError"),
    },
)


def allure3_config() -> dict[str, Any]:
    """The Allure 3 configuration (`reports/allurerc.json`): Allure 3 reads categories and
    history from its config file, not from categories.json or a carried history/ folder.
    Product defects are grouped by the `expectation` label, infrastructure by its class;
    never by message text. Paths are relative to where `allure` runs (the checkout)."""
    broken = [c for c in CATEGORIES if c["matchedStatuses"] == ["broken"]]
    rules: list[dict[str, Any]] = [
        {
            "id": "dm-product-defects",
            "name": "Product defects: the app misbehaved under Dynamic Memory",
            "matchers": {"statuses": ["failed"]},
            "groupBy": [{"label": EXPECTATION_LABEL}, {"label": "guest_os"}],
            "groupByMessage": False,
            "expand": True,
        }
    ]
    for category in broken:
        # JavaScript has no (?s) flag and searches rather than matching the whole message:
        # the class names alone, between word boundaries.
        classes = re.search(r"\\b\((.*)\)\\b", str(category["messageRegex"]))
        assert classes is not None, category
        rules.append(
            {
                "name": category["name"],
                "matchers": {"statuses": ["broken"], "message": rf"\b({classes.group(1)})\b"},
                "groupBy": [{"label": "guest_os"}],
                "groupByMessage": False,
            }
        )
    return {
        "name": "DM Harness certification",
        "output": "reports/allure-report",
        "historyPath": "reports/allure-history.jsonl",
        "appendHistory": True,
        "categories": {"rules": rules},
        "plugins": {
            "awesome": {
                "options": {
                    "reportName": "DM Harness certification",
                    "groupBy": ["epic", "feature", "story"],
                }
            }
        },
    }


def write_allure3_config(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(allure3_config(), indent=2) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Executor:
    """Allure's executor block: which CI system ran the build, and where to find it."""

    name: str
    type: str
    url: str | None = None
    build_order: int | None = None
    build_name: str | None = None
    build_url: str | None = None
    report_name: str | None = None
    report_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {
            "name": self.name,
            "type": self.type,
            "url": self.url,
            "buildOrder": self.build_order,
            "buildName": self.build_name,
            "buildUrl": self.build_url,
            "reportName": self.report_name,
            "reportUrl": self.report_url,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class AllureFiles:
    environment: Path
    categories: Path
    executor: Path | None


def write_allure_files(
    results_dir: Path,
    records: Iterable[TestRecord],
    hyperv_version: str | None = None,
    env: Mapping[str, str] | None = None,
) -> AllureFiles:
    """Write all three files for a run, taking host, guest profiles and app from the records."""
    records = list(records)
    targets = {r.target for r in records if r.target is not None}
    return AllureFiles(
        environment=write_environment(
            results_dir,
            host_label=", ".join(sorted({t.label for t in targets})),
            hyperv_version=hyperv_version or _hyperv(targets),
            guest_profiles=sorted({r.guest_os for r in records if r.guest_os}),
            app=", ".join(sorted({r.app for r in records if r.app})),
        ),
        categories=write_categories(results_dir),
        executor=write_executor(results_dir, os.environ if env is None else env),
    )


def _hyperv(targets: Iterable[RunTarget]) -> str:
    """The Hyper-V version the run's records name: the emulator's (or just the emulator, when
    nothing says where the tests ran); "unknown" for lab hosts (each test has its own tag)."""
    chosen = set(targets)
    if not chosen:
        return EMBEDDED_EMULATOR
    shown = sorted({t.hyperv or EMBEDDED_EMULATOR for t in chosen if t.embedded})
    return ", ".join(shown) or "unknown"


def write_environment(
    results_dir: Path,
    *,
    host_label: str,
    hyperv_version: str = "unknown",
    guest_profiles: Iterable[str] = (),
    app: str = "",
    extra: Mapping[str, str] | None = None,
) -> Path:
    """`environment.properties`: harness, host and its Hyper-V version, guest OS, app, Python."""
    values = {
        "DM.Harness": harness.__version__,
        "Host": host_label or EMBEDDED_EMULATOR,
        "Hyper-V": hyperv_version,
        "Guest.OS": ", ".join(guest_profiles) or "none",
        "App": app or "none",
        "Python": platform.python_version(),
        **(extra or {}),
    }
    lines = [f"{_escape_property(k, key=True)}={_escape_property(v)}" for k, v in values.items()]
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def categories(source: Path | None = None) -> list[dict[str, Any]]:
    """The categories: from `source` (a categories.json) if given, else the built-in ones."""
    if source is None:
        return [dict(c) for c in CATEGORIES]
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(c, dict) and "name" in c for c in data):
        raise ValueError(f"{source}: categories must be a JSON list of objects with a name")
    return data


def write_categories(results_dir: Path, source: Path | None = None) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "categories.json"
    path.write_text(json.dumps(categories(source), indent=2) + "\n", encoding="utf-8")
    return path


def detect_executor(env: Mapping[str, str]) -> Executor | None:
    """The CI system from its environment variables (GitHub, GitLab, Jenkins, Azure)."""
    report_url = _clean_url(env.get(REPORT_URL_VARIABLE))
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID")
        return Executor(
            name="GitHub Actions",
            type="github",
            url=_clean_url(f"{server}/{repo}") if repo else None,
            build_order=_int(env.get("GITHUB_RUN_NUMBER")),
            build_name=_join(env.get("GITHUB_WORKFLOW"), _hash(env.get("GITHUB_RUN_NUMBER"))),
            build_url=_clean_url(f"{server}/{repo}/actions/runs/{run_id}")
            if repo and run_id
            else None,
            report_name="DM Harness certification",
            report_url=report_url,
        )
    if env.get("GITLAB_CI") == "true":
        return Executor(
            name="GitLab CI",
            type="gitlab",
            url=_clean_url(env.get("CI_PROJECT_URL")),
            build_order=_int(env.get("CI_PIPELINE_IID") or env.get("CI_PIPELINE_ID")),
            build_name=_join(env.get("CI_JOB_NAME"), _hash(env.get("CI_PIPELINE_IID"))),
            build_url=_clean_url(env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL")),
            report_name="DM Harness certification",
            report_url=report_url,
        )
    if env.get("JENKINS_URL") and env.get("BUILD_NUMBER"):
        return Executor(
            name="Jenkins",
            type="jenkins",
            url=_clean_url(env.get("JENKINS_URL")),
            build_order=_int(env.get("BUILD_NUMBER")),
            build_name=env.get("BUILD_DISPLAY_NAME")
            or _join(env.get("JOB_NAME"), _hash(env.get("BUILD_NUMBER"))),
            build_url=_clean_url(env.get("BUILD_URL")),
            report_name="DM Harness certification",
            report_url=report_url,
        )
    if env.get("TF_BUILD", "").lower() == "true":
        collection = (env.get("SYSTEM_COLLECTIONURI") or "").rstrip("/")
        project = env.get("SYSTEM_TEAMPROJECT", "")
        build_id = env.get("BUILD_BUILDID")
        return Executor(
            name="Azure Pipelines",
            type="azure",
            url=_clean_url(f"{collection}/{project}") if collection and project else None,
            build_order=_int(build_id),
            build_name=_join(env.get("BUILD_DEFINITIONNAME"), env.get("BUILD_BUILDNUMBER")),
            build_url=_clean_url(f"{collection}/{project}/_build/results?buildId={build_id}")
            if collection and project and build_id
            else None,
            report_name="DM Harness certification",
            report_url=report_url,
        )
    return None


def write_executor(results_dir: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """`executor.json` when a CI system is recognised; None (and no file) otherwise."""
    executor = detect_executor(os.environ if env is None else env)
    if executor is None:
        return None
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "executor.json"
    path.write_text(json.dumps(executor.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def _escape_property(text: str, key: bool = False) -> str:
    # java.util.Properties reads ISO-8859-1, so anything beyond ASCII goes out as \uXXXX.
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif char in "=:#!" or (char == " " and (key or index == 0)):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _clean_url(url: str | None) -> str | None:
    """Drop any user:password@ part: a CI URL must never carry credentials into a report."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _hash(value: str | None) -> str | None:
    return f"#{value}" if value else None


def _join(*parts: str | None) -> str | None:
    text = " ".join(p for p in parts if p)
    return text or None
