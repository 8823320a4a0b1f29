"""VM leases: the owner written into a harness VM's Notes, read back, and judged alive or not."""

from __future__ import annotations

import subprocess
import sys

import psutil

from harness.lease import Lease, liveness, machine_name, parse_notes

NOW = 1_750_000_000.0


def test_notes_round_trip() -> None:
    lease = Lease("5e0f2c9a41d7", NOW, "ci-runner-7", 4242, NOW - 60.5)
    notes = lease.notes()
    assert notes == (
        "dm-harness run=5e0f2c9a41d7 started=1750000000 owner=ci-runner-7/4242/1749999939.50"
    )
    assert parse_notes(notes) == Lease("5e0f2c9a41d7", NOW, "ci-runner-7", 4242, NOW - 60.5)
    assert parse_notes("dm-harness run=abc") == Lease("abc")  # an older harness's VM
    assert parse_notes("someone else's VM") is None
    assert parse_notes("dm-harness run=") is None
    assert parse_notes("dm-harness run=abc started=soon owner=x/notapid") == Lease("abc")


def test_a_vm_of_a_live_process_on_this_machine_is_alive() -> None:
    lease = Lease.mine("5e0f2c9a41d7")
    state = liveness(lease, now=lease.started or NOW)
    assert state.alive is True and "is running on this machine" in state.why
    # Ages do not matter while the owner runs: a long run keeps its VMs.
    assert liveness(lease, max_age_s=0.0, now=(lease.started or NOW) + 1e6).alive is True


def test_a_vm_whose_owner_ended_or_whose_pid_was_reused_is_abandoned() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    gone = Lease("r1", NOW, machine_name(), int(done.stdout))
    assert liveness(gone, now=NOW).alive is False
    me = psutil.Process()
    reused = Lease("r2", NOW, machine_name(), me.pid, me.create_time() - 1000.0)
    state = liveness(reused, now=NOW)
    assert state.alive is False and "has ended" in state.why


def test_elsewhere_only_the_age_tells() -> None:
    young = Lease("r3", NOW - 3600, "another-machine", 1)
    old = Lease("r4", NOW - 30 * 3600, "another-machine", 1)
    assert liveness(young, now=NOW).alive is True
    state = liveness(old, now=NOW)
    assert state.alive is False and "30.0 h ago on another-machine, over 24 h" in state.why
    assert liveness(young, max_age_s=1800, now=NOW).alive is False
    unknown = liveness(Lease("r5"), now=NOW)
    assert unknown.alive is None and "--run-id" in unknown.why
