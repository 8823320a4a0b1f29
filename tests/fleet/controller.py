"""A controller, as another CI job's run would be: a separate process that leases capacity on
one host of an inventory through the real client, holds its leases (a heartbeat renews them)
and releases them when its stdin closes. Reports one JSON line after leasing.

    python -m tests.fleet.controller INVENTORY HOST --mb 1024 --count 10 [--ttl 60] [--go FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.capacity import HostLeases, Renewer
from harness.deadline import wait_until
from harness.hyperv.session import HostSession
from harness.inventory import load_inventory


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("inventory", type=Path)
    parser.add_argument("host")
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--ttl", type=int, default=60)
    parser.add_argument("--run-id", default="0123456789abcdef")
    parser.add_argument("--go", type=Path, default=None, help="lease once this file exists")
    args = parser.parse_args()
    entry = load_inventory(args.inventory).named(args.host)
    session = HostSession(entry.target())
    host = HostLeases.of(session, entry, ttl_s=args.ttl)
    renewer = Renewer(max(0.2, args.ttl / 3))
    host.list()  # connected before the start line, so both controllers start together
    if args.go is not None:
        print(json.dumps({"ready": True}), flush=True)
        wait_until(args.go.is_file, 60.0, what=f"the start file {args.go}", interval=0.01)
    granted: list[str] = []
    seen: list[int] = []
    refused: list[str] = []
    for _ in range(args.count):
        answer = host.acquire(args.mb, args.run_id)
        if answer.granted:
            granted.append(answer.lease_id)
            seen.append(answer.leased_mb)
            renewer.hold(host, answer.lease_id)
        else:
            refused.append(answer.reason)
    print(json.dumps({"granted": granted, "leased_mb_seen": seen, "refused": refused}), flush=True)
    sys.stdin.read()  # held until the test closes our stdin (or kills us)
    renewer.stop()
    released = sum(host.release(lease_id) for lease_id in granted)
    session.close()
    print(json.dumps({"released": released}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
