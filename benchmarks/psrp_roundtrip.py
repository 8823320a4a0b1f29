"""Round-trip cost of the emulator's PSRP endpoint over loopback, with the real pypsrp client.

Prints median and p95 of one `PowerShell(pool).add_cmdlet("Get-VM").invoke()` and of a runspace
pool open+close, and their ratio to a baseline measured in the same process: one raw HTTP POST
of a WS-Management Get (the config resource) to the same /wsman with the same Basic auth and
keep-alive, i.e. HTTP + auth + SOAP parse/build without any PSRP. Usage:

    .venv/bin/python benchmarks/psrp_roundtrip.py [--iterations 300] [--pool-iterations 50] [--tls]

To benchmark another handler (e.g. the Hyper-V cmdlets), call `run(handler=...)`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import requests  # noqa: E402
from pypsrp.powershell import PowerShell, RunspacePool  # noqa: E402
from pypsrp.wsman import WSMan  # noqa: E402

from harness.emulator.psobjects import int64, make_enum, make_object  # noqa: E402
from harness.emulator.psrp import Command, PipelineHandler, PipelineOutput  # noqa: E402
from harness.emulator.server import EmulatorServer  # noqa: E402

TARGET_MEDIAN_MS = 15.0
PASSWORD = "benchmark-" + uuid.uuid4().hex


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
                    "MemoryAssigned": int64(4 * 1024**3),
                    "MemoryDemand": int64(3 * 1024**3),
                    "DynamicMemoryEnabled": True,
                    "ProcessorCount": int64(2),
                },
                "VirtualMachine (Name = 'bench01')",
            )
        )


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _time(action: Callable[[], object], iterations: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


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


def run(
    handler: PipelineHandler | None = None,
    *,
    iterations: int = 300,
    pool_iterations: int = 50,
    tls: bool = False,
) -> dict[str, float]:
    """Measure; returns the figures (milliseconds and ratios) it also prints."""
    with EmulatorServer(handler or ToyGetVM(), password=PASSWORD, tls=tls) as server:
        verify: bool | str = server.cert_path or False
        with requests.Session() as session:
            session.auth = ("dmh", PASSWORD)
            body = _get_config_body(server.url)
            headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}

            def post() -> None:
                # verify per request: requests lets REQUESTS_CA_BUNDLE override session.verify
                answer = session.post(server.url, data=body, headers=headers, verify=verify)
                answer.raise_for_status()

            baseline = _time(post, iterations)

        conn = WSMan(
            "127.0.0.1",
            port=server.port,
            path="wsman",
            ssl=tls,
            auth="basic",
            encryption="auto" if tls else "never",
            username="dmh",
            password=PASSWORD,
            cert_validation=verify,  # type: ignore[arg-type]  # pypsrp also takes a CA path
        )
        with conn, RunspacePool(conn) as pool:

            def invoke() -> None:
                PowerShell(pool).add_cmdlet("Get-VM").invoke()

            invokes = _time(invoke, iterations, warmup=20)

            def open_close() -> None:
                with RunspacePool(conn):
                    pass

            pools = _time(open_close, pool_iterations, warmup=3)

    base_med, base_p95 = _stats(baseline)
    inv_med, inv_p95 = _stats(invokes)
    pool_med, pool_p95 = _stats(pools)
    figures = {
        "baseline_median_ms": base_med,
        "baseline_p95_ms": base_p95,
        "invoke_median_ms": inv_med,
        "invoke_p95_ms": inv_p95,
        "pool_median_ms": pool_med,
        "pool_p95_ms": pool_p95,
        "invoke_ratio": inv_med / base_med,
        "pool_ratio": pool_med / base_med,
    }
    scheme = "HTTPS" if tls else "HTTP"
    print(f"emulator PSRP round trips over loopback {scheme} ({iterations} invokes)")
    print(
        f"  baseline raw WS-Management Get POST: median {base_med:6.2f} ms  p95 {base_p95:6.2f} ms"
    )
    print(
        f"  invoke Get-VM (Command+Receive):     median {inv_med:6.2f} ms  p95 {inv_p95:6.2f} ms"
        f"  = {inv_med / base_med:4.1f}x baseline"
    )
    print(
        f"  pool open+close:                     median {pool_med:6.2f} ms  p95 {pool_p95:6.2f} ms"
        f"  = {pool_med / base_med:4.1f}x baseline"
    )
    verdict = "meets" if inv_med <= TARGET_MEDIAN_MS else "MISSES"
    print(f"  invoke median {verdict} the {TARGET_MEDIAN_MS:.0f} ms target")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--pool-iterations", type=int, default=50)
    parser.add_argument("--tls", action="store_true", help="measure over HTTPS")
    args = parser.parse_args(argv)
    figures = run(iterations=args.iterations, pool_iterations=args.pool_iterations, tls=args.tls)
    return 0 if figures["invoke_median_ms"] <= TARGET_MEDIAN_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
