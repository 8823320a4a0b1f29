"""Cost of the emulator's WMI provider over WS-Man, with pypsrp's own WSMan client.

Prints median and p95 of a full Enumerate (+ Pulls) of Msvm_MemorySettingData with a WQL
filter, at 1 and at 50 VMs, and of GetSummaryInformation for all VMs, each as a ratio to
a baseline measured in the same process against the same server: one raw WS-Man Get (the
config resource) through the same WSMan client — HTTP, auth and SOAP without WMI.

Usage:

    .venv/bin/python benchmarks/wmi_enumerate.py [--iterations 200] [--vms 1,50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from _timing import stats, time_calls  # noqa: E402
from pypsrp.wsman import WSMan  # noqa: E402

from harness.emulator.service import EmbeddedEmulator  # noqa: E402
from harness.settings import MemoryChange  # noqa: E402
from harness.units import MB  # noqa: E402
from suites.tools.wmiclient import WmiClient  # noqa: E402


def measure(vms: int, iterations: int) -> None:
    emulator = EmbeddedEmulator(version="2022", guest_os="linux")
    with emulator:
        for i in range(vms):
            emulator.host.new_vm(f"bench-{i:02d}", "1GB")
            emulator.host.set_memory(
                f"bench-{i:02d}", MemoryChange(dynamic=True, minimum=512 * MB, maximum=4096 * MB)
            )
        with WSMan(
            "127.0.0.1", port=emulator.server.port, path="wsman", auth="basic",
            username=emulator.username, password=emulator.password, ssl=False, encryption="never",
        ) as wsman:  # fmt: skip
            client = WmiClient(wsman)
            query = "SELECT * FROM Msvm_MemorySettingData WHERE ResourceType = 4"
            assert len(client.query(query)) == vms
            baseline = stats(time_calls(wsman.get_server_config, iterations))
            enumerate_ms = stats(time_calls(lambda: client.query(query), iterations))
            summary_ms = stats(
                time_calls(lambda: client.summaries([0, 1, 103, 112, 113]), iterations // 2)
            )
    print(f"{vms} VM(s):")
    print(
        f"  raw WS-Man Get (baseline)         median {baseline[0]:7.2f} ms  p95 {baseline[1]:7.2f} ms"
    )
    for label, (median, p95) in (
        ("Enumerate Msvm_MemorySettingData", enumerate_ms),
        ("GetSummaryInformation (all VMs)", summary_ms),
    ):
        print(
            f"  {label:33} median {median:7.2f} ms  p95 {p95:7.2f} ms"
            f"  ratio {median / baseline[0]:5.1f}× baseline"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--vms", default="1,50", help="comma-separated VM counts")
    args = parser.parse_args()
    for count in (int(v) for v in args.vms.split(",")):
        measure(count, args.iterations)


if __name__ == "__main__":
    main()
