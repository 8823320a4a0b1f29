"""`dmh`: run the certification suites, serve the emulator, build reports, check a host.

dmh certify [--dm-host URL | --dm-hosts FILE] [--app CMD | --tool CMD] [-n N] [--history DIR] [--grace S]
            [-- pytest args]
dmh emulator serve [--host 127.0.0.1] [--port 5985] [--tls] ...
dmh emulator serve --fleet 2016,2019,2022:8GB [--write-inventory dmh-hosts.toml]
dmh report [--out reports/out] [--history DIR]
dmh plan APPS.toml [--shards N] [--out plan.json]
dmh certify --plan plan.json --shard I/N [--out DIR] [-- pytest args]
dmh report --merge DIR... --out DIR
dmh doctor --dm-host URL [--vm NAME --guest-os linux|windows] [--smoke --template DISK]
dmh doctor --dm-hosts dmh-hosts.toml
dmh sweep --dm-host URL | --dm-hosts FILE [--run-id ID] [--older-than HOURS] [--yes]

Exit codes: 0 certified (or: done), 1 not certified (doctor: the guest is not ready or a
smoke check failed), 2 inconclusive, 3 another command could not do its job (host
unreachable, …), 4 usage error (bad option, URL or value: nothing ran), 130 interrupted
(commands other than certify; an interrupted certify run is inconclusive).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness import __version__
from harness.certify import (
    DEFAULT_GRACE_S,
    EXIT_ERROR,
    EXIT_INCONCLUSIVE,
    EXIT_USAGE,
    CertifyOptions,
    certify,
    check_grace,
    check_workers,
    print_verdict,
)
from harness.errors import ConfigError, HarnessError

if TYPE_CHECKING:
    from harness.catalog import Entry
    from harness.hyperv.host import HyperVHost
    from harness.hyperv.record import Recorder

log = logging.getLogger("dmh")

DEFAULT_OUT = Path("reports/out")
MERGED_OUT = Path("reports/merged")  # dmh report --merge's default --out
EXIT_INTERRUPTED = 130  # a command other than certify stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """Bad options are one line and the usage exit code (argparse's own 2 means
    'inconclusive' to a CI reading dmh's exit codes)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"dmh: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as exc:
        print(f"dmh: {exc}", file=sys.stderr)
        return EXIT_INCONCLUSIVE if args.func is _certify else EXIT_ERROR
    except KeyboardInterrupt:
        print("dmh: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _checked(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a check that raises ValueError with a message naming the rule."""

    def convert(text: str) -> object:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


def check_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is outside 1-65535 (0: any free port)")
    return port


def check_hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of hours") from None
    if not hours >= 0 or hours == float("inf"):
        raise ValueError(f"{text!r} must be a finite number of hours >= 0")
    return hours


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dmh", description="DM Harness: apps under Hyper-V Dynamic Memory")
    parser.add_argument("--version", action="version", version=f"dmh {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(required=True, metavar="command")

    certify_cmd = sub.add_parser(
        "certify", help="run the certification suites and write the reports"
    )
    certify_cmd.add_argument(
        "--dm-host", default=None, help="Hyper-V host URL (default: the embedded emulator)"
    )
    certify_cmd.add_argument(
        "--dm-hosts",
        type=Path,
        default=None,
        help="a lab of many hosts instead of --dm-host: an inventory (dmh-hosts.toml)",
    )
    certify_cmd.add_argument("--app", default=None, help="command line of the app under test")
    certify_cmd.add_argument(
        "--tool",
        default=None,
        help="command line of a management tool to certify (runs the management-tool suite only)",
    )
    certify_cmd.add_argument(
        "-n",
        "--workers",
        default="2",
        type=_checked(check_workers),
        help="pytest-xdist workers (default 2; 0 = none)",
    )
    certify_cmd.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report directory (default reports/out)"
    )
    certify_cmd.add_argument(
        "--allure-dir",
        type=Path,
        default=None,
        help="Allure results directory (default: the run's own, OUT/allure-results)",
    )
    certify_cmd.add_argument(
        "--history", type=Path, default=None, help="keep run summaries here and show the trend"
    )
    certify_cmd.add_argument(
        "--grace",
        type=_checked(check_grace),
        default=DEFAULT_GRACE_S,
        help=f"seconds pytest gets to tear down after an interrupt (default {DEFAULT_GRACE_S:g})",
    )
    certify_cmd.add_argument(
        "--plan", type=Path, default=None, help="a plan file (dmh plan): run one of its shards"
    )
    certify_cmd.add_argument(
        "--shard", default=None, type=_checked(_shard), help="with --plan: the shard I/N to run"
    )
    certify_cmd.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    certify_cmd.set_defaults(func=_certify)

    plan = sub.add_parser(
        "plan", help="expand a TOML of apps into a matrix of cells dealt into CI shards"
    )
    plan.add_argument("apps", type=Path, help="the apps TOML (apps, profiles, host labels)")
    plan.add_argument(
        "--shards", type=_checked(_count), default=1, help="number of CI jobs (default 1)"
    )
    plan.add_argument(
        "--out", type=Path, default=None, help="write the plan here (default: print it)"
    )
    plan.set_defaults(func=_plan)

    emulator = sub.add_parser("emulator", help="the embedded Hyper-V emulator")
    emulator_sub = emulator.add_subparsers(required=True, metavar="action")
    serve = emulator_sub.add_parser("serve", help="serve an emulated Hyper-V host over WinRM/PSRP")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_checked(check_port),
        default=None,
        help="1-65535, 0: any free port (default 5985; with --fleet: any free ports)",
    )
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
    serve.add_argument(
        "--fleet",
        default=None,
        metavar="VERSIONS",
        help="several emulated hosts on their own loopback ports: Hyper-V versions, each with "
        "an optional :SIZE (the others get --host-memory), e.g. 2016,2019,2022:8GB",
    )
    serve.add_argument(
        "--write-inventory",
        type=Path,
        default=None,
        metavar="FILE",
        help="--fleet: write the fleet's dmh-hosts.toml here (default: print it)",
    )
    serve.set_defaults(func=_serve)

    report = sub.add_parser("report", help="rebuild the HTML report and summary of a run")
    report.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report directory: its latest run"
    )
    report.add_argument(
        "--records",
        type=Path,
        default=None,
        help="a run's records directory (default: OUT/latest/records); reports go to --out",
    )
    report.add_argument("--history", type=Path, default=None)
    report.add_argument("--no-screenshot", action="store_true")
    report.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="merge the shards of a plan (their --out directories, or folders holding them) "
        "into one report in --out (default reports/merged)",
    )
    report.set_defaults(func=_report)

    doctor = sub.add_parser("doctor", help="check that a Hyper-V host is reachable and usable")
    doctor.add_argument("--dm-host", default=None, help="the Hyper-V host URL")
    doctor.add_argument(
        "--dm-hosts", type=Path, default=None, help="every host of an inventory, in one table"
    )
    doctor.add_argument("--vm", help="also check this VM's guest can do Dynamic Memory")
    doctor.add_argument("--guest-os", choices=("linux", "windows"), default="linux")
    doctor.add_argument("--guest-address", default="", help="default: from the host (KVP)")
    doctor.add_argument("--guest-port", type=int, default=22)
    doctor.add_argument("--guest-known-hosts", default=None, help="default ~/.ssh/known_hosts")
    doctor.add_argument("--guest-key", default=None, help="SSH private key file")
    doctor.add_argument(
        "--smoke",
        action="store_true",
        help="also run every harness script once on a tiny VM made from --template (Windows "
        "guest; credentials from DMH_GUEST_USERNAME/DMH_GUEST_PASSWORD) and print a report",
    )
    doctor.add_argument("--template", default=None, help="--smoke: a Windows template disk")
    doctor.add_argument(
        "--guest-python", default="python", help="--smoke: Python in the template (default python)"
    )
    doctor.add_argument("--boot-timeout", type=float, default=300.0, help="--smoke: seconds")
    doctor.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="save the session's WS-Man and PSRP exchanges, scrubbed, to DIR/transcript.json",
    )
    doctor.set_defaults(func=_doctor)

    catalog = sub.add_parser(
        "catalog", help="certify the catalogue's programs as they ship and write its table"
    )
    catalog_sub = catalog.add_subparsers(required=True, metavar="action")
    catalog_run = catalog_sub.add_parser("run", help="certify programs of the catalogue")
    catalog_run.add_argument(
        "names", nargs="*", help="entries to run (default: every entry of --backend)"
    )
    catalog_run.add_argument(
        "--backend",
        default="process",
        choices=["process", "qemu", "all"],
        help="without names, the entries of this backend (default process; qemu entries take "
        "minutes each under TCG)",
    )
    catalog_run.add_argument(
        "--out",
        type=Path,
        default=Path("reports/catalog"),
        help="reports (default reports/catalog)",
    )
    catalog_run.add_argument(
        "--table",
        type=Path,
        default=Path("docs/catalog.md"),
        help="table (default docs/catalog.md)",
    )
    catalog_run.add_argument(
        "-n", "--workers", default="2", type=_checked(check_workers), help="xdist workers"
    )
    catalog_run.add_argument(
        "-k",
        dest="select",
        default="",
        metavar="EXPRESSION",
        help="only the scenarios pytest -k selects (a quicker check; the table shows how many "
        "tests each row ran)",
    )
    catalog_run.set_defaults(func=_catalog_run)
    catalog_list = catalog_sub.add_parser("list", help="the entries and their packages")
    catalog_list.set_defaults(func=_catalog_list)

    sweep = sub.add_parser("sweep", help="remove VMs the harness left behind on a host")
    sweep.add_argument("--dm-host", default=None, help="the Hyper-V host URL")
    sweep.add_argument(
        "--dm-hosts", type=Path, default=None, help="every host of an inventory (dmh-hosts.toml)"
    )
    sweep.add_argument("--run-id", default=None, help="only this run's VMs (alive or not)")
    sweep.add_argument(
        "--older-than",
        type=_checked(check_hours),
        default=24.0,
        help="hours after which a VM created on another machine counts as abandoned "
        "(default 24; on this machine its creator's process is checked)",
    )
    sweep.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    sweep.set_defaults(func=_sweep)
    return parser


# -- catalogue -------------------------------------------------------------------------------


def _catalog_entries(names: Sequence[str] = ()) -> list[Entry]:
    from harness.catalog import load_catalog

    entries = load_catalog(suites_dir() / "catalog")
    unknown = set(names) - {e.name for e in entries}
    if unknown:
        raise ConfigError(
            f"dmh catalog: no entry {', '.join(sorted(unknown))} (there are: "
            f"{', '.join(e.name for e in entries)})"
        )
    return [e for e in entries if not names or e.name in names]


def _catalog_list(args: argparse.Namespace) -> int:
    from harness.catalog import installed_version

    for entry in _catalog_entries():
        version = (
            installed_version(entry.package) or f"not installed (apt-get install {entry.package})"
        )
        print(f"{entry.name:12} {entry.package:24} {version:28} {entry.backend:8} {entry.command}")
    return 0


def _catalog_run(args: argparse.Namespace) -> int:
    """Each program certified in turn (a progress line each), then the table: exit 0 when
    every program was judged (whatever the verdict; with -k a subset is INCONCLUSIVE, never
    CERTIFIED), 1 when one could not be run or a test of it was broken."""
    from harness.catalog import run_entry, table

    entries = [
        e for e in _catalog_entries(args.names) if args.names or args.backend in ("all", e.backend)
    ]
    out = args.out.resolve()
    rows = []
    for entry in entries:
        row = run_entry(entry, out, args.workers, args.select)
        rows.append(row)
        print(f"{entry.name}: {row.verdict} ({row.seconds:.0f} s) {row.failure[:160]}", flush=True)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    before = args.table.read_text("utf-8") if args.table.is_file() else ""
    args.table.write_text(table(rows, args.table.parent, _catalog_entries(), before), "utf-8")
    print(f"table: {args.table}")
    broken = [r for r in rows if r.verdict == "not installed" or not r.tests or r.broken]
    return 1 if broken else 0


# -- certify and report --------------------------------------------------------------------


TOOL_SUITE = "test_management_tools.py"


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


# Extra pytest arguments certify sets itself: given again, the run's records and reports would
# go where the verdict is not read from.
_OWNED = {
    "--dm-report-dir": "--out", "--dm-run-id": "a new run id per run",
    "--junitxml": "--out (OUT/runs/<id>/junit.xml)", "--junit-xml": "--out",
    "--alluredir": "--allure-dir",
}  # fmt: skip


def _certify(args: argparse.Namespace) -> int:
    if args.plan is not None or args.shard is not None:
        return _certify_shard(args)
    for arg in args.pytest_args:
        name = arg.split("=", 1)[0]
        if name in _OWNED:
            raise ConfigError(
                f"{name} after '--' is set by dmh certify itself; use {_OWNED[name]} instead"
            )
    lab: tuple[str, ...] = ()
    if args.dm_hosts:
        if args.dm_host:
            raise ConfigError("dmh certify: --dm-host and --dm-hosts are both given; give one")
        from harness.inventory import load_inventory

        load_inventory(args.dm_hosts)  # a broken inventory is a usage error before any run
        lab = (f"--dm-hosts={args.dm_hosts.resolve()}",)
    suites = suites_dir()
    _preflight(args, suites)
    return certify(
        CertifyOptions(
            suites=suites,
            target=suites / TOOL_SUITE if args.tool else suites,
            out=args.out,
            allure_dir=args.allure_dir,
            workers=args.workers,
            host_url=args.dm_host,
            app=args.app,
            tool=args.tool,
            history=args.history,
            grace=args.grace,
            pytest_args=lab + tuple(args.pytest_args),
            screenshot=_screenshot,
        )
    )


def _preflight(args: argparse.Namespace, suites: Path) -> None:
    """The subject checked before anything is built: a usage error (exit 4) in seconds."""
    from harness.subject import check_app, check_subjects, check_tool

    check_subjects(args.app, args.tool)
    if args.tool:
        check_tool(args.tool, suites / "tools", Path.cwd())
    if args.app:
        check_app(args.app, Path.cwd(), suites / "apps")


def _screenshot(run: Path) -> None:
    html = run / "index.html"
    chromium = os.environ.get("DMH_CHROMIUM", "/usr/bin/chromium")
    if not html.is_file() or not Path(chromium).exists():
        print(f"(no screenshot: {chromium} not found)")
        return
    from harness.report.browser import BrowserError, screenshot

    try:
        errors = screenshot(html, run / "report.png", chromium=chromium)
    except BrowserError as exc:
        print(f"(no screenshot: {exc})")
        return
    for error in errors:
        print(f"report console error: {error}", file=sys.stderr)


# -- report --------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    import json

    from harness.report.build import build_reports

    if args.merge is not None:
        return _merge(args)

    if args.records is not None:
        records, target = args.records, args.out
    else:
        target = (args.out / "latest").resolve()
        records = target / "records"
    if not records.is_dir():
        print(
            f"dmh report: no result records in {records} (run dmh certify, or the suites with "
            "--dm-report-dir)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    paths = build_reports(records, target, history_dir=args.history)
    if not args.no_screenshot:
        _screenshot(target)
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    return print_verdict(target, summary, None)


# -- plans, shards and merge ----------------------------------------------------------------


def _shard(text: str) -> tuple[int, int]:
    from harness.plan import parse_shard

    return parse_shard(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} must be a whole number >= 1")
    return int(text)


def _plan(args: argparse.Namespace) -> int:
    import json

    from harness.errors import SettingError
    from harness.plan import load_apps, make_plan, matrix

    try:
        plan = make_plan(load_apps(args.apps), args.shards, args.apps.name)
    except SettingError as exc:
        raise ConfigError(f"dmh plan {args.apps}: {exc}") from None
    if args.out is None:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    from harness.report.run import write_json

    write_json(args.out, plan.to_json())
    # One line on stdout: the matrix a CI job output carries (GitHub: fromJSON(...).include).
    print(json.dumps(matrix(plan), separators=(",", ":")))
    print(
        f"plan {plan.id}: {len(plan.cells)} cells in {len(plan.shards)} shards -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _certify_shard(args: argparse.Namespace) -> int:
    from harness.plan import load_plan
    from harness.shards import run_shard
    from harness.subject import check_app

    if args.plan is None or args.shard is None:
        raise ConfigError(
            "--plan and --shard go together: dmh certify --plan plan.json --shard I/N"
        )
    if args.app or args.tool:
        raise ConfigError("--plan names each cell's app: give no --app or --tool with it")
    if args.allure_dir is not None:
        raise ConfigError(
            "--allure-dir with --plan: each cell writes its own Allure results; "
            "dmh report --merge puts them in one directory"
        )
    for arg in args.pytest_args:
        name = arg.split("=", 1)[0]
        if name in _OWNED or name in ("--dm-app", "--dm-guest-os", "--dm-expect"):
            raise ConfigError(f"{name} after '--' is set by the plan's cells or by dmh certify")
    plan = load_plan(args.plan)
    index, of = args.shard
    shard = plan.shard(index, of)
    suites = suites_dir()
    for cell_id in shard.cells:  # every app checked before the first cell runs
        check_app(plan.cell(cell_id).command, Path.cwd(), suites / "apps")
    return run_shard(
        plan,
        index,
        of,
        CertifyOptions(
            suites=suites,
            target=suites,
            out=args.out,
            allure_dir=None,
            workers=args.workers,
            host_url=args.dm_host,
            app=None,
            tool=None,
            history=args.history,
            grace=args.grace,
            pytest_args=tuple(args.pytest_args),
            screenshot=lambda run: None,  # one screenshot, of the merged report
        ),
    )


def _merge(args: argparse.Namespace) -> int:
    import json

    from harness.merge import merge_shards

    out = MERGED_OUT if args.out == DEFAULT_OUT else args.out
    paths = merge_shards(args.merge, out, args.history)
    if not args.no_screenshot:
        _screenshot(out)
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    return print_verdict(out, summary, out / "allure-results")


# -- emulator serve ------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.fleet:
        if args.host != "127.0.0.1" or args.allow_remote or args.certfile or args.keyfile:
            raise ConfigError(
                "--fleet serves on loopback with generated certificates (--tls): --host, "
                "--allow-remote, --certfile and --keyfile are for one emulated host"
            )
        from harness.labcli import serve_fleet

        return serve_fleet(args.fleet, memory=args.host_memory, port=args.port or 0,
                           write_inventory=args.write_inventory, timings=args.timings,
                           tls=args.tls, username=args.username, guest_os=args.guest_os,
                           out=lambda line: print(line, flush=True))  # fmt: skip
    if args.write_inventory is not None:
        raise ConfigError("--write-inventory writes a fleet's inventory: give --fleet too")
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
        port=5985 if args.port is None else args.port,
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


def _host(url: str, recorder: Recorder | None = None) -> HyperVHost:
    from harness.config import HostTarget
    from harness.hyperv.host import HyperVHost
    from harness.hyperv.session import HostSession

    return HyperVHost(HostSession(HostTarget.parse(url), recorder=recorder))


def _one_host_or_inventory(command: str, args: argparse.Namespace) -> None:
    if bool(args.dm_host) == bool(args.dm_hosts):
        raise ConfigError(
            f"dmh {command} needs --dm-host URL or --dm-hosts FILE (an inventory), one of them"
        )


def _doctor(args: argparse.Namespace) -> int:
    _one_host_or_inventory("doctor", args)
    if args.dm_hosts:
        if args.vm or args.smoke or args.record:
            raise ConfigError("--vm, --smoke and --record check one host: use --dm-host")
        from harness.labcli import doctor_hosts

        return doctor_hosts(args.dm_hosts, out=lambda line: print(line, flush=True))
    if args.smoke and not args.template:
        raise ConfigError("--smoke needs --template: a Windows template disk on the host")
    from harness.hyperv.record import Recorder

    recorder = Recorder() if args.record else None
    host = _host(args.dm_host, recorder)
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
    if args.smoke:
        from harness.hyperv.guest import GuestCredentials
        from harness.smoke import Smoke, run_smoke

        print(f"smoke checks (template {args.template}):")
        smoke = Smoke(host, args.template, args.guest_python, GuestCredentials.from_env(),
                      boot_timeout=args.boot_timeout)  # fmt: skip
        passed = run_smoke(smoke)
        ok = sum(status == "ok" for _, status in smoke.results)
        print(f"smoke: {ok} of {len(smoke.results)} checks passed")
        status = status or (0 if passed else 1)
    host.session.close()
    if recorder is not None:
        _save_transcript(recorder, host, args.record)
    return status


def _save_transcript(recorder: Recorder, host: HyperVHost, directory: str) -> None:
    """The doctor's exchanges, scrubbed of the host's and guest's names and passwords."""
    import os

    from harness.hyperv.record import Scrubber

    target = host.session.target
    facts = host.facts()
    scrubber = Scrubber(
        secrets=(target.password.reveal(), os.environ.get("DMH_GUEST_PASSWORD", "")),
        names={
            target.hostname: "hyperv-host.example",
            facts.computer_name: "HYPERV-HOST",
            target.username: "lab-user",
            os.environ.get("DMH_GUEST_USERNAME", ""): "guest-user",
        },
    )
    host_info = {
        "os_caption": facts.os_caption,
        "os_version": facts.os_version,
        "hyperv": facts.hyperv_version.value,
    }
    path = recorder.save(directory, scrubber, host_info)
    print(f"transcript:      {path} ({len(recorder.exchanges)} exchanges, scrubbed)")


def _sweep(args: argparse.Namespace) -> int:
    """List (or with --yes remove) harness VMs: with --run-id that run's, else only those
    whose run is no longer alive (harness.lease), never a run's in progress; and the host's
    expired capacity leases (harness.capacity). With --dm-hosts, on every host in turn."""
    _one_host_or_inventory("sweep", args)
    from harness.capacity import HostLeases
    from harness.labcli import sweep_inventory, sweep_leases

    if not args.dm_hosts:
        host = _host(args.dm_host)
        try:
            found = _sweep_host(args, host) + sweep_leases(HostLeases(host.session), args.yes)
        finally:
            host.session.close()
    else:
        from harness.hyperv.host import HyperVHost

        found = 0
        for entry, session in sweep_inventory(args.dm_hosts):
            try:
                host = HyperVHost(session)
                found += _sweep_host(args, host)
                found += sweep_leases(HostLeases.of(session, entry), args.yes)
            except HarnessError as exc:
                print(f"{entry.name}: skipped: {exc}")
            finally:
                session.close()
    if found and not args.yes:
        print("(list only; add --yes to remove the abandoned ones)")
    return 0


def _sweep_host(args: argparse.Namespace, host: HyperVHost) -> int:
    """One host's harness VMs, listed or removed; how many were found."""
    from harness.lease import liveness, parse_notes

    found = 0
    for vm in host.vms():
        lease = parse_notes(vm.notes)
        if lease is None or (args.run_id and lease.run_id != args.run_id):
            continue
        found += 1
        if args.run_id:
            abandoned, why = True, "--run-id"
        else:
            state = liveness(lease, max_age_s=args.older_than * 3600)
            abandoned, why = state.alive is False, state.why
        label = f"{vm.name} (run {lease.run_id}: {why})"
        if abandoned and args.yes:
            host.remove_vm(vm.name)
            print(f"removed {label}")
        elif abandoned:
            print(f"abandoned {label}")
        else:
            print(f"kept {label}")
    return found


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
