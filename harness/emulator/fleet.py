"""A fleet of embedded emulators: several emulated Hyper-V hosts, each with its own version,
memory and loopback port, behind one password, and the inventory (dmh-hosts.toml) that
reaches them, so everything that works on a lab of many hosts can be run without one.

    with EmulatorFleet.from_spec("2016,2019,2022:8GB") as fleet:
        Path("dmh-hosts.toml").write_text(fleet.inventory_toml())

The emulators share nothing: each has its own VMs, balancer and capacity leases.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from harness.emulator.service import GUEST_OS, EmbeddedEmulator, template_path
from harness.errors import SettingError
from harness.inventory import DEFAULT_RESERVE_MB, HostEntry, render_inventory
from harness.settings import HostVersion
from harness.units import MB, format_size, parse_size

log = logging.getLogger(__name__)

DEFAULT_MEMORY = "64GiB"
PASSWORD_VARIABLE = "DMH_EMULATOR_PASSWORD"  # what `dmh emulator serve` reads, too
DEFAULT_VM_LIMIT = 8


@dataclass(frozen=True)
class FleetMember:
    """One emulated host of a fleet: its inventory name, the version it plays, its memory."""

    name: str
    version: HostVersion
    memory: int  # bytes

    @property
    def reserve_mb(self) -> int:
        """The inventory's reserve, smaller on small emulated hosts so they stay usable."""
        return min(DEFAULT_RESERVE_MB, self.memory // MB // 4)

    @property
    def budget_mb(self) -> int:
        return self.memory // MB - self.reserve_mb


def parse_fleet(spec: str, default_memory: str | int = DEFAULT_MEMORY) -> tuple[FleetMember, ...]:
    """`2016,2019,2022:8GB`: a comma list of Hyper-V versions, each with an optional `:SIZE`
    (the others get `default_memory`). Names are `emu-<version>`, numbered when repeated."""
    entries = [e.strip() for e in spec.split(",")]
    if not spec.strip() or not all(entries):
        raise SettingError("fleet", repr(spec), "a comma list of Hyper-V versions, each with an "
                           "optional :SIZE, e.g. 2016,2019,2022:8GB")  # fmt: skip
    members: list[FleetMember] = []
    seen: dict[str, int] = {}
    for entry in entries:
        version_text, _, size_text = entry.partition(":")
        version = HostVersion.parse(version_text.strip())
        memory = parse_size(size_text.strip() or default_memory, f"fleet entry {entry!r} memory")
        if memory < 1024 * MB:
            raise SettingError(f"fleet entry {entry!r}", format_size(memory),
                               "an emulated host needs at least 1GB")  # fmt: skip
        base = f"emu-{version.value.lower()}"
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        members.append(FleetMember(name, version, memory))
    return tuple(members)


class EmulatorFleet:
    """Several embedded emulators on loopback, started and closed together."""

    def __init__(
        self,
        members: Sequence[FleetMember],
        *,
        password: str | None = None,
        username: str = "dmh",
        timings: str = "fast",
        tls: bool = False,
        port: int = 0,
        guest_username: str = "guest",
        guest_password: str | None = None,
        guest_backend: str | None = None,
        guest_os: str = "windows",
        vm_limit: int = DEFAULT_VM_LIMIT,
    ) -> None:
        if not members:
            raise SettingError("fleet", "empty", "a fleet has at least one host")
        self.members = tuple(members)
        self.username = username
        self.password = password or secrets.token_urlsafe(18)
        self.guest_username = guest_username
        self.guest_password = guest_password or secrets.token_urlsafe(18)
        self.vm_limit = vm_limit
        # Port 0: any free one each; else consecutive ports from `port`.
        self.emulators = [
            EmbeddedEmulator(
                host_memory=member.memory,
                version=member.version,
                guest_os=guest_os,
                timings=timings,
                tls=tls,
                username=username,
                password=self.password,
                port=port + index if port else 0,
                guest_username=guest_username,
                guest_password=self.guest_password,
                guest_backend=guest_backend,
                host_name=member.name.upper(),
            )
            for index, member in enumerate(self.members)
        ]

    @classmethod
    def from_spec(
        cls, spec: str, *, memory: str | int = DEFAULT_MEMORY, **options: object
    ) -> EmulatorFleet:
        return cls(parse_fleet(spec, memory), **options)  # type: ignore[arg-type]

    def start(self) -> EmulatorFleet:
        try:
            for emulator in self.emulators:
                emulator.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for emulator in self.emulators:
            try:
                emulator.close()
            except Exception:  # one host's failure must not leave the others running
                log.exception("closing emulated host %s failed", emulator.url)

    def __enter__(self) -> EmulatorFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def emulator(self, name: str) -> EmbeddedEmulator:
        for member, emulator in zip(self.members, self.emulators, strict=True):
            if member.name == name:
                return emulator
        raise KeyError(name)

    def inventory(self, credential: str = f"env:{PASSWORD_VARIABLE}") -> list[HostEntry]:
        """The fleet's hosts as an inventory: each reached over its own loopback port with the
        fleet's username (its password is the variable `credential` names)."""
        entries = []
        for member, emulator in zip(self.members, self.emulators, strict=True):
            query = "auth=basic&ssl=false"
            if emulator.tls:
                query = f"auth=basic&ssl=true&cert_validation={emulator.server.cert_path}"
            entries.append(
                HostEntry(
                    name=member.name,
                    url=f"psrp://{self.username}@{emulator.address}:{emulator.server.port}?{query}",
                    credential=credential,
                    labels=("emulator",),
                    budget_mb=member.budget_mb,
                    vm_limit=self.vm_limit,
                    reserve_mb=member.reserve_mb,
                    templates=MappingProxyType({os: template_path(os) for os in GUEST_OS}),
                )
            )
        return entries

    def inventory_toml(self, credential: str = f"env:{PASSWORD_VARIABLE}") -> str:
        shown = ", ".join(
            f"{m.name} (Hyper-V {m.version.value}, {format_size(m.memory)})" for m in self.members
        )
        return render_inventory(
            self.inventory(credential),
            f"A fleet of embedded emulators: {shown}.\nThe password is in "
            f"{credential.removeprefix('env:')}; versions are read from the hosts.",
        )
