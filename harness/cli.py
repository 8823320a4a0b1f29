"""`dmh`: run the certification suites, serve the emulator, build reports, check a host.

dmh certify [--dm-host URL] [--app CMD | --tool CMD] [-n N] [--history DIR] [-- pytest args]
dmh emulator serve [--host 127.0.0.1] [--port 5985] [--tls] ...
dmh report [--out reports/out] [--history DIR]
dmh doctor --dm-host URL [--vm NAME --guest-os linux|windows]
dmh sweep --dm-host URL [--run-id ID] [--yes]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.hyperv.host import HyperVHost

log = logging.getLogger("dmh")

DEFAULT_OUT = Path("reports/out")
DEFAULT_ALLURE = Path("reports/allure-results")
EXIT = {"certified": 0, "not certified": 1, "inconclusive": 2}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"dmh: {exc}", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmh", description="DM Harness: apps under Hyper-V Dynamic Memory"
    )
    parser.add_argument("--version", action="version", version=f"dmh {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(required=True, metavar="command")

    certify = sub.add_parser("certify", help="run the certification suites and write the reports")
    certify.add_argument(
        "--dm-host", default=None, help="Hyper-V host URL (default: the embedded emulator)"
    )
    certify.add_argument("--app", default=None, help="command line of the app under test")
    certify.add_argument(
        "--tool",
        default=None,
        help="command line of a management tool to certify (runs the management-tool suite only)",
    )
    certify.add_argument(
        "-n", "--workers", default="2", help="pytest-xdist workers (default 2; 0 = none)"
    )
    certify.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report directory (default reports/out)"
    )
    certify.add_argument(
        "--allure-dir", type=Path, default=DEFAULT_ALLURE, help="Allure results directory"
    )
    certify.add_argument(
        "--history", type=Path, default=None, help="keep run summaries here and show the trend"
    )
    certify.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    certify.set_defaults(func=_certify)

    emulator = sub.add_parser("emulator", help="the embedded Hyper-V emulator")
    emulator_sub = emulator.add_subparsers(required=True, metavar="action")
    serve = emulator_sub.add_parser("serve", help="serve an emulated Hyper-V host over WinRM/PSRP")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5985)
    serve.add_argument(
        "--tls", action="store_true", help="HTTPS with a generated self-signed certificate"
    )
    serve.add_argument("--certfile", default=None)
    serve.add_argument("--keyfile", default=None)
    serve.add_argument("--username", default="dmh")
    serve.add_argument("--host-memory", default="64GiB")
    serve.add_argument(
        "--host-version",
        default="2022",
        choices=["2008R2SP1", "2012", "2012R2", "2016", "2019", "2022"],
    )
    serve.add_argument("--guest-os", default="windows", choices=["windows", "linux"])
    serve.add_argument("--timings", default="fast", choices=["fast", "realistic"])
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    serve.set_defaults(func=_serve)

    report = sub.add_parser("report", help="build the HTML report and summary from result records")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    report.add_argument("--records", type=Path, default=None, help="default: OUT/records")
    report.add_argument("--history", type=Path, default=None)
    report.add_argument("--no-screenshot", action="store_true")
    report.set_defaults(func=_report)

    doctor = sub.add_parser("doctor", help="check that a Hyper-V host is reachable and usable")
    doctor.add_argument("--dm-host", required=True)
    doctor.add_argument("--vm", help="also check this VM's guest can do Dynamic Memory")
    doctor.add_argument("--guest-os", choices=("linux", "windows"), default="linux")
    doctor.add_argument("--guest-address", default="", help="default: from the host (KVP)")
    doctor.add_argument("--guest-port", type=int, default=22)
    doctor.add_argument("--guest-known-hosts", default=None, help="default ~/.ssh/known_hosts")
    doctor.add_argument("--guest-key", default=None, help="SSH private key file")
    doctor.set_defaults(func=_doctor)

    sweep = sub.add_parser("sweep", help="remove VMs the harness left behind on a host")
    sweep.add_argument("--dm-host", required=True)
    sweep.add_argument("--run-id", default=None, help="only this run's VMs")
    sweep.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    sweep.set_defaults(func=_sweep)
    return parser


# -- certify -------------------------------------------------------------------------------


TOOL_SUITE = "test_management_tools.py"
INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def suites_dir() -> Path:
    """The suites: the checkout's suites/ when run from it, else the installed package's
    (an ISV runs `dmh certify` from their own repository)."""
    if Path("suites").is_dir() and Path("conftest.py").is_file():
        return Path("suites")
    import importlib.util

    spec = importlib.util.find_spec("harness.suites")
    if spec is None or spec.origin is None:
        raise HarnessError("dmh certify: the suites (harness.suites) are not installed")
    return Path(spec.origin).resolve().parent


def _certify(args: argparse.Namespace) -> int:
    suites = suites_dir()
    target = suites / TOOL_SUITE if args.tool else suites
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pytest", str(target), "-p", "no:cacheprovider",
        f"--junitxml={out / 'junit.xml'}",
        f"--alluredir={args.allure_dir}", "--clean-alluredir",
        f"--dm-report-dir={out}",
    ]  # fmt: skip
    if args.workers not in ("0", "1"):
        command += ["-n", str(args.workers)]
    if args.dm_host:
        command.append(f"--dm-host={args.dm_host}")
    if args.app:
        command.append(f"--dm-app={args.app}")
    if args.tool:
        command.append(f"--dm-tool={args.tool}")
    ini = next((Path(name) for name in INI_FILES if Path(name).is_file()), None)
    if suites.is_absolute():
        # Installed suites: the settings and paths are those of the directory run from.
        command += [f"--rootdir={Path.cwd()}"] + ([f"-c={ini}"] if ini else [])
    if args.history:
        command.append(f"--dm-history-dir={args.history}")
    command += list(args.pytest_args)
    print("running:", " ".join(command[2:]), flush=True)
    code = subprocess.call(command)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        print(f"dmh: the run wrote no summary (pytest exit code {code})", file=sys.stderr)
        return 3
    _screenshot(out)
    return _print_verdict(out, args.allure_dir)


def _screenshot(out: Path) -> None:
    html = out / "index.html"
    chromium = os.environ.get("DMH_CHROMIUM", "/usr/bin/chromium")
    if not html.is_file() or not Path(chromium).exists():
        print(f"(no screenshot: {chromium} not found)")
        return
    from harness.report.browser import BrowserError, screenshot

    try:
        errors = screenshot(html, out / "report.png", chromium=chromium)
    except BrowserError as exc:
        print(f"(no screenshot: {exc})")
        return
    for error in errors:
        print(f"report console error: {error}", file=sys.stderr)


def _print_verdict(out: Path, allure_dir: Path | None) -> int:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    verdict = summary["verdict"]
    totals = summary["totals"]
    print()
    print(f"JUnit XML:       {out / 'junit.xml'}")
    if allure_dir is not None:
        print(f"Allure results:  {allure_dir}  (allure serve {allure_dir})")
    print(f"HTML report:     {out / 'index.html'}")
    if (out / "report.png").is_file():
        print(f"Screenshot:      {out / 'report.png'}")
    print(f"JSON summary:    {out / 'summary.json'}")
    print(
        f"Tests: {totals['tests']}  passed {totals['passed']}  failed {totals['failed']}  "
        f"broken {totals['broken']}  skipped {totals['skipped']}"
    )
    print(f"VERDICT: {verdict['status'].upper()}")
    if verdict.get("where"):
        print(f"  ({verdict['where']})")
    for reason in verdict.get("reasons", []):
        print(f"  - {reason}")
    return EXIT.get(verdict["status"], 1)


# -- report --------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from harness.report.trend import build_reports

    records = args.records or args.out / "records"
    if not records.is_dir():
        print(
            f"dmh report: no result records in {records} (run the suites with --dm-report-dir)",
            file=sys.stderr,
        )
        return 3
    build_reports(records, args.out, history_dir=args.history)
    if not args.no_screenshot:
        _screenshot(args.out)
    return _print_verdict(args.out, None)


# -- emulator serve ------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from harness.emulator.service import EmbeddedEmulator

    password = os.environ.get("DMH_EMULATOR_PASSWORD") or None
    # The same variables the client reads for guest credentials (harness.hyperv.guest).
    guest_username = os.environ.get("DMH_GUEST_USERNAME") or "guest"
    guest_password = os.environ.get("DMH_GUEST_PASSWORD") or None
    emulator = EmbeddedEmulator(
        host_memory=args.host_memory,
        version=args.host_version,
        guest_os=args.guest_os,
        timings=args.timings,
        tls=args.tls,
        username=args.username,
        password=password,
        bind=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        certfile=args.certfile,
        keyfile=args.keyfile,
        guest_username=guest_username,
        guest_password=guest_password,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator.start()
    try:
        print(emulator.url, flush=True)
        print(f"username: {args.username}", flush=True)
        if password is None:
            # Shown once so the user can connect; never logged.
            print(
                f"password: {emulator.password}  (set DMH_EMULATOR_PASSWORD to choose one)",
                flush=True,
            )
        print(f"guest username: {guest_username}", flush=True)
        if guest_password is None:
            print(
                f"guest password: {emulator.guest_password}  (set DMH_GUEST_PASSWORD to choose one)",
                flush=True,
            )
        if emulator.server.cert_path:
            print(f"certificate: {emulator.server.cert_path}", flush=True)
        print(
            f"templates: {emulator.template_path('windows')}, {emulator.template_path('linux')}",
            flush=True,
        )
        stop.wait()
    finally:
        emulator.close()
        print("emulator stopped", flush=True)
    return 0


# -- doctor and sweep ----------------------------------------------------------------------


def _host(url: str) -> HyperVHost:
    from harness.config import HostTarget
    from harness.hyperv.host import HyperVHost
    from harness.hyperv.session import HostSession

    return HyperVHost(HostSession(HostTarget.parse(url)))


def _doctor(args: argparse.Namespace) -> int:
    host = _host(args.dm_host)
    facts = host.facts()
    print(f"host:            {host.label}")
    print(f"computer:        {facts.computer_name}")
    print(f"OS:              {facts.os_caption} ({facts.os_version})")
    print(f"Hyper-V rules:   {facts.hyperv_version.value}")
    print(
        f"memory:          {facts.memory_capacity >> 30} GB, {facts.balancer_available_mb} MB available for VMs"
    )
    print(f"VMs:             {len(host.vms())}, harness leftovers: {len(host.leftovers())}")
    status = 0
    if args.vm:
        from harness.hyperv.preflight import check_vm, describe

        readiness = check_vm(
            host,
            args.vm,
            args.guest_os,
            address=args.guest_address,
            port=args.guest_port,
            known_hosts=args.guest_known_hosts,
            key_file=args.guest_key,
        )
        print(f"guest {args.vm} ({args.guest_os}), integration services:")
        print("\n".join(describe(readiness)))
        status = 0 if readiness.capable else 1
    host.session.close()
    return status


def _sweep(args: argparse.Namespace) -> int:
    host = _host(args.dm_host)
    names = host.leftovers(args.run_id)
    for name in names:
        if args.yes:
            host.remove_vm(name)
            print(f"removed {name}")
        else:
            print(f"leftover {name}")
    if names and not args.yes:
        print("(list only; add --yes to remove them)")
    host.session.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
