"""`dmh doctor --smoke`: the lab acceptance checks (tests/lab, issue 13) for a user's own host.

A tiny VM from the user's Windows template runs every harness script once through the host's
real PowerShell: host facts, new-vm-from-template, start, one sampling tick, guest-ops (a file
written, an app's exit code and error output, a 12 MB file in chunks, a stop), a forced hot-add and a balloon removal,
a checkpoint and its restore, remove-vm. Each check prints one line (ok / FAILED / skipped,
with its time), so the report can be pasted into a bug report: it holds host and VM names,
never a password (the errors it quotes carry none). The VM is removed whatever happens.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from harness.deadline import wait_until
from harness.errors import HarnessError
from harness.hyperv.guest import DirectChannel, Guest, GuestCredentials
from harness.hyperv.host import HyperVHost
from harness.lease import Lease
from harness.levers import LoadCommand, MemoryLevers
from harness.sampler import Sampler
from harness.settings import MemorySettings
from harness.timeline import Timeline

LOAD = (
    "import sys, time\nblock = bytearray(int(sys.argv[1]) << 20)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\nprint('holding', flush=True)\n"
    "time.sleep(600)\n"
)
CRASH = "import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n"  # exits at once
DIGEST = "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"


class CheckFailed(Exception):
    """A smoke check saw something other than what a working host shows."""


@dataclass
class Smoke:
    """The checks run so far and how each went."""

    host: HyperVHost
    template: str
    guest_python: str
    credentials: GuestCredentials
    boot_timeout: float = 300.0
    print_line: Callable[[str], None] = print
    results: list[tuple[str, str]] = field(default_factory=list)  # (check, "ok" | ...)

    @contextmanager
    def check(self, name: str) -> Iterator[list[str]]:
        """Run one check; what it appends to the yielded list is its detail."""
        detail: list[str] = []
        started = time.monotonic()
        try:
            yield detail
            status = "ok"
        except (HarnessError, CheckFailed) as exc:
            status = "FAILED"
            detail.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        seconds = time.monotonic() - started
        self.results.append((name, status))
        self.print_line(f"  {status:7} {name} ({seconds:.1f} s)" + (f": {detail[0]}" if detail else ""))  # fmt: skip

    def skip(self, name: str, why: str) -> None:
        self.results.append((name, "skipped"))
        self.print_line(f"  skipped {name}: {why}")

    @property
    def passed(self) -> bool:
        return all(status == "ok" for _, status in self.results)


def run_smoke(smoke: Smoke) -> bool:
    """Run every check; True when all passed. The VM made here is removed in any case."""
    host = smoke.host
    with smoke.check("host facts") as detail:
        facts = host.facts()
        detail.append(
            f"{facts.os_caption} ({facts.os_version}), Hyper-V {facts.hyperv_version.value}, "
            f"{facts.balancer_available_mb} MB available for VMs"
        )
    run_id = uuid.uuid4().hex[:12]
    name = f"dmh-smoke-{run_id}"
    created = False
    try:
        with smoke.check("create a VM from the template") as detail:
            settings = MemorySettings.build(startup="512MB", minimum="512MB", maximum="2GB")
            host.create_vm(name, settings, run_id=run_id, template=smoke.template,
                           lease=Lease.mine(run_id).tags())  # fmt: skip
            created = True
            detail.append(f"{name}, 512 MB startup, 512 MB–2 GB")
        if created:
            with smoke.check("start it (heartbeat OK)"):
                host.start_vm(name, heartbeat_deadline=smoke.boot_timeout)
        if smoke.passed:
            _guest_checks(smoke, name)
        else:
            for check in ("sample", "app exit code", "a 12 MB file", "stop an app", "hot-add",
                          "balloon removal", "checkpoint and restore"):  # fmt: skip
                smoke.skip(check, "needs the running VM")
    finally:
        if created:
            with smoke.check("remove the VM and its disk"):
                left = host.remove_vm(name)
                if name in [vm.name for vm in host.vms()]:
                    raise CheckFailed(f"{name} is still listed after remove-vm")
                if left:
                    raise CheckFailed(f"remove-vm left disks behind: {'; '.join(left)}")
    return smoke.passed


def _guest_checks(smoke: Smoke, name: str) -> None:
    host = smoke.host
    guest = Guest(DirectChannel(host.session, name, smoke.credentials))
    with smoke.check("sample (host, guest, one round trip)") as detail:
        sample = Sampler(host, name, Timeline(), guest=guest).tick()
        if sample.host is None or sample.guest is None:
            raise CheckFailed(f"the tick saw host={sample.host is not None}, "
                              f"guest={sample.guest is not None}")  # fmt: skip
        detail.append(
            f"assigned {sample.host.assigned_mb} MB, guest sees {sample.guest.total_mb} MB, "
            f"DM maximum {sample.guest.max_memory_mb} MB"
        )
        if sample.guest.max_memory_mb != 2048:
            raise CheckFailed(
                f"the DM integration service reports a maximum of {sample.guest.max_memory_mb} "
                "MB, not 2048 (are the guest's integration services current?)"
            )
    with smoke.check("app exit code and error output"):
        guest.write_file("dmh-smoke/crash.py", CRASH.encode())
        crashed = guest.start_process(smoke.guest_python, ["dmh-smoke/crash.py"])

        def exited() -> list[int] | None:  # exit code 0 is an answer too
            code = crashed.poll().exit_code
            return None if code is None else [code]

        [code] = wait_until(exited, 60, what="the app to exit")
        if code != 3 or "boom" not in crashed.output:
            raise CheckFailed(f"exit code {code}, output {crashed.output[-200:]!r}")
    with smoke.check("a 12 MB file (in chunks: 10 MB per received object)"):
        content = os.urandom(12 << 20)
        guest.write_file("dmh-smoke/big.bin", content)
        digest = guest.start_process(smoke.guest_python, ["-c", DIGEST, "dmh-smoke/big.bin"])
        wait_until(lambda: digest.poll().exit_code is not None or None, 120, what="the digest")
        if digest.output.strip() != hashlib.sha256(content).hexdigest():
            raise CheckFailed(f"the guest's copy differs: {digest.output[-200:]!r}")
    with smoke.check("stop an app"):
        sleeper = guest.start_process(smoke.guest_python, ["-c", "import time; time.sleep(600)"])
        if not sleeper.stats().running:
            raise CheckFailed("the app was not running after start")
        sleeper.stop()
        if sleeper.stats().running:
            raise CheckFailed("the app still runs after stop")
    levers = MemoryLevers(host, name, Timeline(), guest=guest,
                          load=LoadCommand(smoke.guest_python, ["dmh-smoke/load.py"]))  # fmt: skip
    with smoke.check("hot-add") as detail:
        guest.write_file("dmh-smoke/load.py", LOAD.encode())
        move = levers.force_hot_add("256MB")
        detail.append(f"{move.before_mb} → {move.after_mb} MB in {move.seconds:g} s ({move.strategy})")  # fmt: skip
    with smoke.check("balloon removal") as detail:
        move = levers.force_balloon("128MB")
        detail.append(f"{move.before_mb} → {move.after_mb} MB in {move.seconds:g} s ({move.strategy})")  # fmt: skip
    with smoke.check("checkpoint and restore"):
        host.checkpoint(name, "dmh-smoke[1]")  # an exact name, though it holds brackets
        host.restore(name, "dmh-smoke[1]")
