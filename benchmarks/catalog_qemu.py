"""The catalogue's real-kernel entries (backend = "qemu"), each beside its process-backend
twin (the entry of the same package and command): verdict per behaviour and wall time of
both, and the ratio QEMU / process. CI runs only the process entries (tests/suites/
test_catalog.py); the QEMU ones live here because TCG makes them minutes long.

    python benchmarks/catalog_qemu.py [NAME...] [--out DIR] [--table FILE]

Writes the rows into the table (default docs/catalog.md) as `dmh catalog run` would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.catalog import load_catalog, run_entry, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="QEMU entries (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "catalog")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "catalog.md")
    args = parser.parse_args()
    entries = load_catalog(ROOT / "suites" / "catalog")
    qemu = [e for e in entries if e.backend == "qemu" and (not args.names or e.name in args.names)]
    if not qemu:
        print("no QEMU entries to run", file=sys.stderr)
        return 2
    rows = []
    print(f"{'entry':<22} {'backend':<8} {'verdict':<14} {'time':>7}  behaviours")
    for entry in qemu:
        twins = [
            e for e in entries
            if e.backend == "process" and (e.package, e.command) == (entry.package, entry.command)
        ]  # fmt: skip
        pair = [run_entry(twin, args.out) for twin in twins[:1]] + [run_entry(entry, args.out)]
        for row in pair:
            asked = {b: v for b, v in row.behaviours.items() if v}
            print(
                f"{row.entry.name:<22} {row.entry.backend:<8} {row.verdict:<14} "
                f"{row.seconds:>6.0f}s  {asked}"
            )
            if row.failure:
                print(f"{'':<22} first failure: {row.failure[:160]}")
        if len(pair) == 2 and pair[0].seconds:
            same = pair[0].behaviours == pair[1].behaviours
            print(
                f"{'':<22} QEMU / process time: {pair[1].seconds / pair[0].seconds:.1f}x; "
                f"same verdict per behaviour: {'yes' if same else 'NO'}"
            )
        rows.append(pair[-1])
    before = args.table.read_text("utf-8") if args.table.is_file() else ""
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table(rows, args.table.parent, entries, before), "utf-8")
    print(f"table: {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
