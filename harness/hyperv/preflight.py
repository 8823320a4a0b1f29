"""Integration-services preflight: can this VM's guest do Dynamic Memory at all?

Linux (over SSH, the `facts` script): hv_balloon loaded and hot-add on (reference §5.1), a
way for hot-added memory to come online (§5.2), a 64-bit x86 guest (§5.1: DM is 64-bit only,
hot-add is off on ARM64), the KVP daemon (§1.8) and the kernel (§5.4). Windows (from the
host): the VM's integration services as Get-VMIntegrationService reports them (§1.8).
A guest that cannot do DM is a skip with the reason, not a failure of the app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.hyperv.guest import GuestCredentials
from harness.hyperv.host import HyperVHost, prop, text
from harness.hyperv.ssh import SSHChannel, SSHTarget, guest_address
from harness.wildcards import literal

SKIP_PREFIX = "the guest cannot do Dynamic Memory"
_ONLINE = ("online", "online_kernel", "online_movable")


@dataclass(frozen=True)
class Readiness:
    """What preflight found: facts, why DM cannot work (empty: it can), and notes."""

    guest_os: str
    facts: Mapping[str, str]
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def capable(self) -> bool:
        return not self.reasons

    @property
    def skip_message(self) -> str:
        return f"{SKIP_PREFIX}: {'; '.join(self.reasons)}"


def linux_readiness(facts: Mapping[str, str]) -> Readiness:
    """Judge a Linux guest's `facts` report against the reference."""
    reasons: list[str] = []
    notes: list[str] = []
    machine = facts.get("machine", "")
    if facts.get("hv_balloon") != "1":
        reasons.append(
            "hv_balloon is not loaded (no /sys/module/hv_balloon; kernel CONFIG_HYPERV_BALLOON)"
        )
    elif facts.get("hot_add", "").upper().startswith("N"):
        reasons.append("hv_balloon's hot_add parameter is off: memory cannot be hot-added")
    if machine in ("aarch64", "arm64"):
        reasons.append(f"hot-add is disabled on ARM64 guests (machine {machine})")
    elif machine and machine != "x86_64":
        reasons.append(f"Dynamic Memory needs a 64-bit guest (machine {machine})")
    onlined = (
        facts.get("auto_online") in _ONLINE
        or facts.get("memhp_default_state") in _ONLINE
        or facts.get("udev_online") == "1"
    )
    if not onlined:
        reasons.append(
            "hot-added memory would stay offline: auto_online_blocks is "
            f"{facts.get('auto_online') or 'missing'!r}, no memhp_default_state=online and no "
            "udev rule onlining memory"
        )
    if facts.get("kvp_daemon") != "1":
        notes.append(
            "the KVP daemon (hv_kvp_daemon) is not running: the host cannot report the "
            "guest's address"
        )
    version = re.match(r"(\d+)\.(\d+)", facts.get("kernel", ""))
    if version and (int(version.group(1)), int(version.group(2))) < (5, 11):
        notes.append(
            f"kernel {facts['kernel']} predates the balloon MemTotal patch (about 5.11): "
            "MemTotal keeps its high-water mark when memory is ballooned away (§5.4)"
        )
    return Readiness("linux", dict(facts), tuple(reasons), tuple(notes))


def check_linux(channel: SSHChannel) -> Readiness:
    """Read the guest's facts (one round trip) and judge them."""
    return linux_readiness(channel.script("facts", resend=True).values)


def check_windows(host: HyperVHost, vm_name: str) -> Readiness:
    """The VM's integration services as the host reports them. Heartbeat and KVP not OK are
    noted; nothing on the host's side says a Windows guest cannot do DM, so no reasons."""
    facts: dict[str, str] = {}
    notes: list[str] = []
    for service in host.session.cmdlet("Get-VMIntegrationService", VMName=literal(vm_name)):
        name = text(prop(service, "Name"))
        enabled = bool(prop(service, "Enabled"))
        status = text(prop(service, "PrimaryStatusDescription"))
        facts[name] = f"{'enabled' if enabled else 'disabled'}, {status or 'no status'}"
        if name in ("Heartbeat", "Key-Value Pair Exchange") and (not enabled or status != "OK"):
            notes.append(f"integration service {name!r} is {facts[name]}")
    return Readiness("windows", facts, (), tuple(notes))


def check_vm(
    host: HyperVHost,
    vm_name: str,
    guest_os: str,
    *,
    address: str = "",
    port: int = 22,
    known_hosts: str | None = None,
    key_file: str | None = None,
) -> Readiness:
    """`dmh doctor --vm`: a Windows VM from the host; a Linux VM over SSH, at its address
    from KVP (or `address`), with the guest credentials from the environment/keyring."""
    if guest_os == "windows":
        return check_windows(host, vm_name)
    credentials = GuestCredentials.from_env()
    target = SSHTarget(
        hostname=address or guest_address(host, vm_name, deadline=30),
        port=port,
        username=credentials.username,
        password=credentials.password,
        key_file=key_file,
        known_hosts=known_hosts,
    )
    channel = SSHChannel(target)
    try:
        return check_linux(channel)
    finally:
        channel.close()


def describe(readiness: Readiness) -> list[str]:
    """What doctor prints: the facts, the notes, and the verdict."""
    lines = [f"  {key + ':':<22}{value}" for key, value in sorted(readiness.facts.items())]
    lines += [f"  note: {note}" for note in readiness.notes]
    verdict = "can do Dynamic Memory" if readiness.capable else f"skipped: {readiness.skip_message}"
    return [*lines, f"  verdict: {verdict}"]
