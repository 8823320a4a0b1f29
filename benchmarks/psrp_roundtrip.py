"""Round-trip cost of the emulator's PSRP endpoint over loopback, with the real pypsrp client.

Prints median and p95 of one `PowerShell(pool).add_cmdlet("Get-VM").invoke()` and of a runspace
pool open+close, and their ratio to a baseline measured against the same server: one raw HTTP
POST of a WS-Management Get (the config resource) to the same /wsman with the same Basic auth
and keep-alive, i.e. HTTP + auth + SOAP parse/build without any PSRP. Two servers:

- toy: an EmulatorServer whose handler answers every pipeline with one Get-VM-shaped object
  (the endpoint's own cost);
- hyperv: the EmbeddedEmulator (emulated host, balancer driver ticking, Hyper-V cmdlets) with
  50 VMs, every other one running; `Get-VM -Name <one>` and `Get-VM` (all of them), whose
  ratio to the one-VM invoke is the cost of object output at scale (target: within 3x). It
  also prints what pypsrp alone spends deserializing those objects (the client's share, which
  no server can remove).

Usage:

    .venv/bin/python benchmarks/psrp_roundtrip.py [--iterations 300] [--pool-iterations 50]
        [--tls] [--server toy|hyperv|both] [--vms 50]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import requests  # noqa: E402
from _timing import stats, time_calls  # noqa: E402
from pypsrp.powershell import PowerShell, RunspacePool  # noqa: E402
from pypsrp.serializer import Serializer, TaggedValue  # noqa: E402
from pypsrp.wsman import WSMan  # noqa: E402

from harness.emulator.cmdlets.shapes import vm_object  # noqa: E402
from harness.emulator.psobjects import int64, make_enum, make_object  # noqa: E402
from harness.emulator.psrp import Command, PipelineHandler, PipelineOutput  # noqa: E402
from harness.emulator.server import EmulatorServer  # noqa: E402
from harness.emulator.service import EmbeddedEmulator  # noqa: E402

TARGET_MEDIAN_MS = 15.0
TARGET_SCALE_RATIO = 3.0  # Get-VM of all the VMs, against Get-VM of one
PASSWORD = "benchmark-" + uuid.uuid4().hex
GB = 1024**3


class ToyGetVM:
    """Answers every pipeline with one object shaped like Get-VM's."""

    def run(
        self, commands: Sequence[Command], pipeline_input: Sequence[Any], out: PipelineOutput
    ) -> None:
        out.write(
            make_object(
                [
                    "Microsoft.HyperV.PowerShell.VirtualMachine",
                    "Microsoft.HyperV.PowerShell.VirtualMachineBase",
                    "Microsoft.HyperV.PowerShell.VirtualizationObject",
                ],
                {
                    "Name": "bench01",
                    "Id": uuid.UUID(int=1),
                    "State": make_enum("Microsoft.HyperV.PowerShell.VMState", "Running", 2),
                    "MemoryAssigned": int64(4 * GB),
                    "MemoryDemand": int64(3 * GB),
                    "DynamicMemoryEnabled": True,
                    "ProcessorCount": int64(2),
                },
                "VirtualMachine (Name = 'bench01')",
            )
        )


@dataclass(frozen=True)
class Endpoint:
    """Where the client connects; `cert` is the CA path under TLS."""

    url: str
    port: int
    username: str
    password: str
    tls: bool
    cert: str | None


def _get_config_body(url: str) -> bytes:
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header>'
        "<a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action>"
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID><a:To>{url}</a:To>"
        "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/config</w:ResourceURI>"
        "<w:OperationTimeout>PT20S</w:OperationTimeout></s:Header><s:Body/></s:Envelope>"
    ).encode()


def _connect(endpoint: Endpoint) -> WSMan:
    return WSMan(
        "127.0.0.1",
        port=endpoint.port,
        path="wsman",
        ssl=endpoint.tls,
        auth="basic",
        encryption="auto" if endpoint.tls else "never",
        username=endpoint.username,
        password=endpoint.password,
        cert_validation=endpoint.cert or False,  # type: ignore[arg-type]  # or a CA path
    )


def measure(
    endpoint: Endpoint,
    invokes: Sequence[tuple[str, Callable[[PowerShell], object]]],
    *,
    iterations: int,
    pool_iterations: int,
) -> dict[str, float]:
    """Baseline POST, each labelled invoke, and pool open+close (milliseconds, ratios)."""
    verify: bool | str = endpoint.cert or False
    with requests.Session() as session:
        session.auth = (endpoint.username, endpoint.password)
        body = _get_config_body(endpoint.url)
        headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}

        def post() -> None:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override session.verify
            answer = session.post(endpoint.url, data=body, headers=headers, verify=verify)
            answer.raise_for_status()

        baseline = time_calls(post, iterations)

    figures: dict[str, float] = {}
    base_med, base_p95 = stats(baseline)
    figures["baseline_median_ms"], figures["baseline_p95_ms"] = base_med, base_p95
    with _connect(endpoint) as conn, RunspacePool(conn) as pool:
        for label, build in invokes:

            def invoke(build: Callable[[PowerShell], object] = build, label: str = label) -> None:
                ps = PowerShell(pool)
                build(ps)
                ps.invoke()
                if ps.had_errors:
                    raise RuntimeError(f"{label} failed: {[str(e) for e in ps.streams.error]}")

            med, p95 = stats(time_calls(invoke, iterations, warmup=20))
            figures[f"{label}_median_ms"], figures[f"{label}_p95_ms"] = med, p95
            figures[f"{label}_ratio"] = med / base_med

        def open_close() -> None:
            with RunspacePool(conn):
                pass

        med, p95 = stats(time_calls(open_close, pool_iterations, warmup=3))
        figures["pool_median_ms"], figures["pool_p95_ms"] = med, p95
        figures["pool_ratio"] = med / base_med
    return figures


def _report(title: str, figures: dict[str, float], labels: Sequence[str]) -> None:
    print(title)
    rows = [("baseline raw WS-Management Get POST", "baseline", False)]
    rows += [(f"invoke {label}", label, True) for label in labels]
    rows.append(("pool open+close", "pool", True))
    for text, key, ratio in rows:
        line = (
            f"  {text:<36} median {figures[f'{key}_median_ms']:6.2f} ms"
            f"  p95 {figures[f'{key}_p95_ms']:6.2f} ms"
        )
        if ratio:
            line += f"  = {figures[f'{key}_ratio']:4.1f}x baseline"
        print(line)


def _get_vm(name: str | None = None) -> Callable[[PowerShell], object]:
    def build(ps: PowerShell) -> object:
        ps.add_cmdlet("Get-VM")
        if name is not None:
            ps.add_parameter("Name", name)
        return ps

    return build


@contextmanager
def _toy_server(handler: PipelineHandler | None, tls: bool) -> Iterator[Endpoint]:
    with EmulatorServer(handler or ToyGetVM(), password=PASSWORD, tls=tls) as server:
        yield Endpoint(server.url, server.port, "dmh", PASSWORD, tls, server.cert_path)


@contextmanager
def _hyperv_server(vms: int, tls: bool) -> Iterator[tuple[EmbeddedEmulator, Endpoint]]:
    """An EmbeddedEmulator with `vms` DM VMs, every other one running (the driver ticks)."""
    with EmbeddedEmulator(host_memory="64GB", password=PASSWORD, tls=tls) as emu:
        endpoint = Endpoint(
            emu.url, emu.server.port, emu.username, PASSWORD, tls, emu.server.cert_path
        )
        with _connect(endpoint) as conn, RunspacePool(conn) as pool:
            for i in range(vms):
                name = f"bench{i + 1:02d}"
                for cmdlet, params in (
                    ("New-VM", {"Name": name, "MemoryStartupBytes": TaggedValue("I64", GB)}),
                    (
                        "Set-VMMemory",
                        {
                            "VMName": name,
                            "DynamicMemoryEnabled": True,
                            "MinimumBytes": TaggedValue("I64", 512 * 1024**2),
                            "MaximumBytes": TaggedValue("I64", 4 * GB),
                        },
                    ),
                    *((("Start-VM", {"Name": name}),) if i % 2 == 0 else ()),
                ):
                    ps = PowerShell(pool).add_cmdlet(cmdlet)
                    for key, value in params.items():
                        ps.add_parameter(key, value)
                    ps.invoke()
                    if ps.had_errors:
                        raise RuntimeError(f"{cmdlet} {name}: {ps.streams.error[0]}")
        yield emu, endpoint


def run(
    handler: PipelineHandler | None = None,
    *,
    iterations: int = 300,
    pool_iterations: int = 50,
    tls: bool = False,
) -> dict[str, float]:
    """The toy server (or `handler`): Get-VM figures under `invoke_*` keys, as printed."""
    with _toy_server(handler, tls) as endpoint:
        figures = measure(
            endpoint,
            [("Get-VM", _get_vm())],
            iterations=iterations,
            pool_iterations=pool_iterations,
        )
    scheme = "HTTPS" if tls else "HTTP"
    _report(f"toy handler over loopback {scheme} ({iterations} invokes)", figures, ["Get-VM"])
    return {k.replace("Get-VM", "invoke"): v for k, v in figures.items()}


def _client_share(emu: EmbeddedEmulator, iterations: int) -> float:
    """Milliseconds pypsrp's deserializer alone takes for the objects of one `Get-VM` (all VMs),
    measured in this process on the same objects the server writes."""
    texts = [vm_object(vm).clixml.decode() for vm in emu.host.find_vms("*")]

    def deserialize() -> None:
        for text in texts:
            Serializer().deserialize(text)

    median, _ = stats(time_calls(deserialize, max(10, iterations // 10), warmup=2))
    return median


def run_hyperv(
    *, vms: int = 50, iterations: int = 300, pool_iterations: int = 50, tls: bool = False
) -> dict[str, float]:
    """The real Hyper-V handler: `Get-VM -Name bench01` (one VM) and `Get-VM` (all)."""
    labels = ["Get-VM -Name", f"Get-VM ({vms} VMs)"]
    with _hyperv_server(vms, tls) as (emu, endpoint):
        figures = measure(
            endpoint,
            [(labels[0], _get_vm("bench01")), (labels[1], _get_vm())],
            iterations=iterations,
            pool_iterations=pool_iterations,
        )
        client_ms = _client_share(emu, iterations)
    scheme = "HTTPS" if tls else "HTTP"
    title = f"Hyper-V handler (EmbeddedEmulator, {vms} VMs) over loopback {scheme} ({iterations} invokes)"
    _report(title, figures, labels)
    one, many = figures[f"{labels[0]}_median_ms"], figures[f"{labels[1]}_median_ms"]
    scale = many / one
    figures["scale_ratio"] = scale
    print(
        f"  Get-VM of {vms} VMs / Get-VM of one: {scale:4.1f}x"
        f" ({'within' if scale <= TARGET_SCALE_RATIO else 'OVER'} the {TARGET_SCALE_RATIO:.0f}x"
        f" target); per further VM {(many - one) / max(1, vms - 1):.2f} ms, of which pypsrp's"
        f" deserializer alone {client_ms / vms:.2f} ms ({client_ms:.1f} ms for all {vms})"
    )
    return {k.replace(labels[0], "invoke"): v for k, v in figures.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--pool-iterations", type=int, default=50)
    parser.add_argument("--tls", action="store_true", help="measure over HTTPS")
    parser.add_argument("--server", choices=["toy", "hyperv", "both"], default="both")
    parser.add_argument("--vms", type=int, default=50, help="VMs on the Hyper-V server")
    args = parser.parse_args(argv)
    medians: list[float] = []
    if args.server in ("toy", "both"):
        toy = run(iterations=args.iterations, pool_iterations=args.pool_iterations, tls=args.tls)
        medians.append(toy["invoke_median_ms"])
    if args.server in ("hyperv", "both"):
        real = run_hyperv(
            vms=args.vms,
            iterations=args.iterations,
            pool_iterations=args.pool_iterations,
            tls=args.tls,
        )
        medians.append(real["invoke_median_ms"])
    verdict = "meet" if max(medians) <= TARGET_MEDIAN_MS else "MISS"
    print(f"one-VM Get-VM invoke medians {verdict} the {TARGET_MEDIAN_MS:.0f} ms target")
    return 0 if verdict == "meet" else 1


if __name__ == "__main__":
    raise SystemExit(main())
