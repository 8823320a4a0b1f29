"""`dmh certify`: run the suites in pytest under supervision and give this run's verdict.

Each run gets an id and its own directory (`OUT/runs/<id>/`); the verdict comes from that
run's evidence and pytest's exit code, never from files an earlier or a concurrent run left.
When the run is over, `OUT/latest` (and the top-level names through it) switch to it at once.

pytest runs in its own session, so a terminal's Ctrl-C reaches only `dmh`, which forwards it
(SIGINT, or SIGTERM for SIGTERM/SIGHUP) once and waits up to `--grace` seconds while pytest
tears down (VMs, guest processes, reports); a second interrupt or the end of the grace period
kills pytest's process group. If `dmh` itself dies, pytest gets SIGTERM from the kernel
(PR_SET_PDEATHSIG) and tears down on its own: it never runs on unattended.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from harness.report.run import (
    load_facts,
    new_run_id,
    prune,
    publish,
    run_dir,
)
from harness.target import EMBEDDED_EMULATOR
from harness.units import parse_seconds
from harness.verdict import RunFacts

EXIT_CERTIFIED = 0
EXIT_NOT_CERTIFIED = 1
EXIT_INCONCLUSIVE = 2
EXIT_ERROR = 3  # a command other than certify could not do its job (host unreachable, …)
EXIT_USAGE = 4  # a bad option or value: nothing ran (pytest uses 4 for the same)
VERDICT_EXIT = {
    "certified": EXIT_CERTIFIED,
    "not certified": EXIT_NOT_CERTIFIED,
    "inconclusive": EXIT_INCONCLUSIVE,
}
PYTEST_USAGE_ERROR = 4
DEFAULT_GRACE_S = 60.0
_PR_SET_PDEATHSIG = 1
_FORWARDED = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}


INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


@dataclass(frozen=True)
class CertifyOptions:
    suites: Path  # the checkout's suites/, or the installed package's
    target: Path  # what pytest runs: the suites, or only the management-tool suite
    out: Path
    allure_dir: Path | None  # None: the run's own allure-results/
    workers: str
    host_url: str | None
    app: str | None
    tool: str | None
    history: Path | None
    grace: float
    pytest_args: tuple[str, ...]
    screenshot: Callable[[Path], None]
    run_id: str | None = None  # None: a new one (a plan's shard chooses its cells' ids)


@dataclass(frozen=True)
class PytestEnd:
    """How pytest ended, as `dmh` saw it."""

    code: int  # pytest's exit code; negative: killed by that signal
    forwarded: str | None = None  # the signal dmh received and passed on
    killed: bool = False  # dmh had to kill it (grace period over, or a second interrupt)


def check_grace(text: str) -> float:
    """argparse type for --grace: seconds, finite and > 0."""
    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} {exc}") from None


def check_workers(text: str) -> str:
    """argparse type for -n: a count ≥ 0, or pytest-xdist's 'auto' / 'logical'."""
    if text in ("auto", "logical") or (text.isdigit() and int(text) >= 0):
        return text
    raise ValueError(f"{text!r} must be a number of workers (0 = none), auto or logical")


def certify(options: CertifyOptions) -> int:
    for url in _host_urls(options):
        # Refused here, before any line echoes it: a password in the URL, a bad option, no
        # credentials.
        from harness.config import HostTarget

        HostTarget.parse(url)
    run_id = options.run_id or new_run_id()
    started = time.time()
    run = run_dir(options.out, run_id)
    run.mkdir(parents=True)
    allure_dir = options.allure_dir or run / "allure-results"
    command = [
        sys.executable, "-m", "pytest", str(options.target), "-p", "no:cacheprovider",
        f"--junitxml={run / 'junit.xml'}",
        f"--alluredir={allure_dir}", "--clean-alluredir",
        f"--dm-report-dir={options.out}", f"--dm-run-id={run_id}",
    ]  # fmt: skip
    if options.workers not in ("0", "1"):
        command += ["-n", options.workers]
    if options.host_url:
        command.append(f"--dm-host={options.host_url}")
    if options.app:
        command.append(f"--dm-app={options.app}")
    if options.tool:
        command.append(f"--dm-tool={options.tool}")
    ini = next((Path(name) for name in INI_FILES if Path(name).is_file()), None)
    if options.suites.is_absolute():
        # Installed suites: the settings and paths are those of the directory run from.
        command += [f"--rootdir={Path.cwd()}"] + ([f"-c={ini}"] if ini else [])
    if options.history:
        command.append(f"--dm-history-dir={options.history}")
    command += options.pytest_args
    print(f"run {run_id}: {run}", flush=True)
    print("running:", " ".join(command[2:]), flush=True)
    end = supervise(command, options.grace)
    problem = "usage error (pytest exit 4): nothing ran" if end.code == PYTEST_USAGE_ERROR else ""
    facts = load_facts(
        run / "records",
        pytest_exit=end.code,
        interrupted=end.forwarded is not None,
        problem=problem,
    )
    if facts.run_id is None:  # pytest ended before it wrote its evidence: dmh knows these
        facts = dataclasses.replace(facts, run_id=run_id, started=started)
    if end.forwarded and not facts.interruption:  # pytest did not get to say it
        how = f"{end.forwarded}; pytest killed" if end.killed else end.forwarded
        facts = dataclasses.replace(facts, interruption=how)
    summary = _summary(run, run_id, facts, options)
    publish(options.out, run)
    prune(options.out)
    if problem:
        print(f"dmh: {problem} (pytest said why above)", file=sys.stderr)
        return EXIT_USAGE
    options.screenshot(run)
    if end.killed:
        print(
            f"dmh: pytest did not finish within {options.grace:g} s and was killed: "
            "VMs or guest processes may be left (dmh sweep finds VMs)",
            file=sys.stderr,
        )
    return print_verdict(run, summary, allure_dir)


def _host_urls(options: CertifyOptions) -> list[str]:
    """Every host URL this run would pass to pytest: --dm-host, and one among the pytest
    arguments (`--dm-host=URL` or `--dm-host URL`)."""
    urls = [options.host_url] if options.host_url else []
    args = options.pytest_args
    for index, arg in enumerate(args):
        if arg.startswith("--dm-host="):
            urls.append(arg.split("=", 1)[1])
        elif arg == "--dm-host" and index + 1 < len(args):
            urls.append(args[index + 1])
    return [u for u in urls if u]


def _summary(run: Path, run_id: str, facts: RunFacts, options: CertifyOptions) -> dict[str, Any]:
    """The run's summary: the plugin's, if it was built from what dmh saw too; else rebuilt
    from the run's records and evidence with pytest's real exit code."""
    path = run / "summary.json"
    existing = _read_json(path)
    if existing is not None:
        info = existing.get("run", {})
        if (info.get("id"), info.get("pytest_exit"), info.get("interrupted")) == (
            run_id,
            facts.pytest_exit,
            facts.interrupted,
        ):
            return existing
    from harness.report.build import build_reports

    environment = dict(existing["run"]["environment"]) if existing else {}
    if not environment:
        environment = {
            "host": "lab host" if options.host_url else EMBEDDED_EMULATOR,
            "app": f"tool: {options.tool}" if options.tool else options.app or "cache_good.py",
        }
    (run / "records").mkdir(parents=True, exist_ok=True)
    build_reports(
        run / "records", run, history_dir=options.history, environment=environment, facts=facts
    )
    data = _read_json(path)
    assert data is not None, "build_reports writes summary.json"
    return data


def print_verdict(run: Path, summary: dict[str, Any], allure_dir: Path | None) -> int:
    verdict = summary["verdict"]
    totals = summary["totals"]
    print()
    print(f"JUnit XML:       {run / 'junit.xml'}")
    if allure_dir is not None:
        print(f"Allure results:  {allure_dir}  (allure serve {allure_dir})")
    print(f"HTML report:     {run / 'index.html'}")
    if (run / "report.png").is_file():
        print(f"Screenshot:      {run / 'report.png'}")
    print(f"JSON summary:    {run / 'summary.json'}")
    print(
        f"Tests: {totals['tests']}  passed {totals['passed']}  failed {totals['failed']}  "
        f"broken {totals['broken']}  skipped {totals['skipped']}"
    )
    scope = verdict.get("scope") or ""
    print(f"VERDICT: {verdict['status'].upper()}" + (f" ({scope})" if scope else ""))
    if verdict.get("where"):
        print(f"  ({verdict['where']})")
    for reason in verdict.get("reasons", []):
        print(f"  - {reason}")
    return VERDICT_EXIT.get(verdict["status"], EXIT_INCONCLUSIVE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- supervising pytest -----------------------------------------------------------------


def supervise(command: Sequence[str], grace: float) -> PytestEnd:
    """Run `command` in its own session; forward the first interrupt, wait `grace` seconds
    for it to end, then (or at a second interrupt) kill its process group."""
    received: list[int] = []
    proc = subprocess.Popen(
        list(command), start_new_session=True, preexec_fn=_die_with_parent(os.getpid())
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    handled = [s for s in _FORWARDED if _can_handle(s)]
    previous = {s: signal.signal(s, on_signal) for s in handled}
    forwarded: str | None = None
    deadline = math.inf
    killed = False
    try:
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if received and forwarded is None:
                first = signal.Signals(received[0])
                forwarded = first.name
                _send(proc, _FORWARDED[first])
                deadline = time.monotonic() + grace
                print(
                    f"\ndmh: {first.name}: pytest is tearing down (VMs, guest processes, "
                    f"reports); waiting up to {grace:g} s — interrupt again to stop it now",
                    file=sys.stderr,
                    flush=True,
                )
            if not killed and (len(received) > 1 or time.monotonic() > deadline):
                killed = True
                _kill_group(proc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # only on an exception of our own: never leave it behind
            _kill_group(proc)
            proc.wait()
    return PytestEnd(code, forwarded, killed)


def _can_handle(sig: signal.Signals) -> bool:
    return signal.getsignal(sig) is not signal.SIG_IGN  # nohup'd: leave SIGHUP ignored


def _send(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _send(proc, signal.SIGKILL)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec function: the child gets SIGTERM when `parent` dies (Linux), and ends at
    once if the parent is already gone. libc is loaded here, before the fork."""
    prctl: Any = None
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return setup
