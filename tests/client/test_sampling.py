"""A guest app that allocates then frees memory, sampled in the background onto a timeline:
hot-add then ballooning at the host, guest counters and app stats moving, the app's own
reports parsed incrementally by a probe; the timeline saved and reloaded."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from harness.hyperv.host import HyperVHost
from harness.probe import JsonLinesProbe
from harness.sampler import Sampler
from harness.timeline import Sample, Timeline

from .support import (
    ALLOC_PROGRAM,
    PYTHON,
    SPLIT_PROGRAM,
    Emulator,
    direct_guest,
    finish,
    memory,
    running_vm,
    wait_for,
)

ALLOC_MB = 500


def _app(sample: Sample) -> float:
    return sample.app.reported.get("allocated_mb", -1) if sample.app else -1


def test_hot_add_then_balloon_on_a_sampled_timeline(
    http_emulator: Emulator, vm_name: str, tmp_path: Path
) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        # Minimum = startup, so the only balloon removal is the one after the app frees.
        settings = memory(startup="512MB", minimum="512MB", maximum="2GB")
        with running_vm(host, vm_name, http_emulator, settings):
            guest = direct_guest(session, vm_name, http_emulator)
            guest.write_file("apps/alloc.py", ALLOC_PROGRAM.encode())
            process = guest.start_process(PYTHON, ["apps/alloc.py", str(ALLOC_MB)])
            timeline = Timeline(name="hot-add then balloon")
            sampler = Sampler(
                host,
                vm_name,
                timeline,
                guest=guest,
                process=process,
                probe=JsonLinesProbe(),
                interval=0.2,
            )
            with sampler:
                idle = timeline.wait_for(
                    lambda s: _app(s) == 0 and s.guest is not None, 10, "the app's first report"
                )
                assert idle.host is not None and idle.app is not None
                guest.write_file("apps/go", b"")
                # Hot-add: the host adds memory, the guest commits it, the app holds it.
                peak = timeline.wait_for(
                    lambda s: (
                        _app(s) == ALLOC_MB
                        and s.host is not None
                        and s.host.assigned_mb >= idle.host.assigned_mb + 256
                        and s.host.add_operations > idle.host.add_operations
                        and s.guest is not None
                        and s.guest.committed_mb >= idle.guest.committed_mb + ALLOC_MB * 0.9
                        and s.app is not None
                        and s.app.working_set_mb >= ALLOC_MB * 0.9
                    ),
                    20,
                    "hot-add after the app allocated",
                )
                assert peak.guest is not None and peak.host is not None and peak.app is not None
                assert peak.guest.total_mb > idle.guest.total_mb  # the guest saw memory arrive
                guest.write_file("apps/free", b"")
                # Balloon removal: the app lets go, then the host takes memory back.
                low = timeline.wait_for(
                    lambda s: (
                        _app(s) == 0
                        and s.host is not None
                        and s.host.remove_operations > peak.host.remove_operations
                        and s.host.assigned_mb <= peak.host.assigned_mb - 256
                        and s.guest is not None
                        and s.guest.committed_mb <= peak.guest.committed_mb - ALLOC_MB * 0.8
                        and s.app is not None
                        and s.app.working_set_mb <= peak.app.working_set_mb - ALLOC_MB * 0.8
                    ),
                    20,
                    "balloon removal after the app freed",
                )
                assert low.host is not None and low.host.removed_mb > 0
                guest.write_file("apps/exit", b"")
                timeline.wait_for(
                    lambda s: s.app is not None and s.app.exit_code == 0, 10, "the app's exit"
                )
            assert sampler.errors == 0
            # Each report line was fetched once, in order, across many ticks.
            lines = [line for line in process.output.splitlines() if line]
            assert [line.split('"value": ')[1] for line in lines] == ["0}", f"{ALLOC_MB}}}", "0}"]
            samples = timeline.samples
            assert len(samples) >= 10
            assert all(b.t > a.t for a, b in itertools.pairwise(samples))

    jsonl = timeline.to_jsonl(tmp_path / "timeline.jsonl")
    reloaded = Timeline.from_jsonl(jsonl)
    assert reloaded.name == timeline.name
    assert reloaded.samples == samples
    rows = list(csv.DictReader(timeline.to_csv(tmp_path / "timeline.csv").open(encoding="utf-8")))
    assert len(rows) == len(samples)
    assert max(int(r["host.assigned_mb"]) for r in rows) == max(
        s.host.assigned_mb for s in samples if s.host
    )
    assert {r["app.reported.allocated_mb"] for r in rows} >= {"0.0", f"{float(ALLOC_MB)}"}


def test_output_split_mid_line_and_mid_character(http_emulator: Emulator, vm_name: str) -> None:
    """A sampler tick can land in the middle of a line or of a UTF-8 character: neither may
    be lost or mangled."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            guest.write_file("split/split.py", SPLIT_PROGRAM.encode())
            process = guest.start_process(PYTHON, ["split/split.py"])
            timeline = Timeline()
            sampler = Sampler(
                host, vm_name, timeline, guest=guest, process=process, probe=JsonLinesProbe()
            )
            wait_for(lambda: sampler.tick() and process.output, 10, "half a line")
            assert process.output == '{"metric": "split", "va'
            guest.write_file("split/half1", b"")
            wait_for(lambda: sampler.tick() and "caf" in process.output, 10, "half a character")
            sample = sampler.tick()
            assert sample.app is not None and sample.app.reported == {"split": 7.0}
            guest.write_file("split/half2", b"")
            assert finish(process) == 0
            sampler.tick()
            assert process.output == '{"metric": "split", "value": 7}\ncafé\n'


COUNT_PROGRAM = """\
import sys, time
for i in range(int(sys.argv[1])):
    print(f"line {i}", flush=True)
    time.sleep(0.002)
"""


def test_sampler_and_poll_read_output_once(http_emulator: Emulator, vm_name: str) -> None:
    """The background sampler and a caller polling the same process share one output: each
    line arrives once, in order, whoever fetched it."""
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with running_vm(host, vm_name, http_emulator):
            guest = direct_guest(session, vm_name, http_emulator)
            guest.write_file("count.py", COUNT_PROGRAM.encode())
            process = guest.start_process(PYTHON, ["count.py", "400"])
            with Sampler(host, vm_name, Timeline(), guest=guest, process=process, interval=0.01):
                assert finish(process) == 0
            process.poll()
            assert process.output.splitlines() == [f"line {i}" for i in range(400)]
