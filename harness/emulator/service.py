"""The embedded emulator as one service: an emulated Hyper-V host, its balancer driver, and
its WinRM/PSRP endpoint on loopback (plus a WinRM endpoint per guest, made on demand).

Only fixtures and the CLI wire this to the client (`fixtures.wiring.emulator_target`); the
emulator never imports the client.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import uuid
from pathlib import Path

from harness.emulator.backends import DEFAULT, backend
from harness.emulator.balancer import Timings
from harness.emulator.cmdlets import TEMPLATE_DIR, GuestEndpoint, HyperVHandler
from harness.emulator.errors import GuestError
from harness.emulator.host import EmulatedHost, HostDriver, VmRecord
from harness.emulator.server import EmulatorServer
from harness.emulator.ssh import GuestSSH, SSHEndpoint
from harness.emulator.wmi import ServedWith, WmiProvider
from harness.settings import HostVersion

log = logging.getLogger(__name__)

GUEST_OS = ("windows", "linux")
ENV_GUEST_BACKEND = "DMH_GUEST_BACKEND"


def template_path(guest_os: str) -> str:
    """The emulated host's template disk for a guest OS (a template's OS is what it holds)."""
    return f"{TEMPLATE_DIR}\\{guest_os}.vhdx"


def _guest_backend(chosen: str | None) -> str:
    """process (the default) or qemu: Linux guests as real QEMU VMs; from DMH_GUEST_BACKEND
    when not given. A backend this machine cannot run fails here, clearly."""
    name = chosen or os.environ.get(ENV_GUEST_BACKEND) or DEFAULT
    backend(name).check()
    return name


class EmbeddedEmulator:
    """An emulated Hyper-V host behind a real WinRM/PSRP endpoint on 127.0.0.1."""

    def __init__(
        self,
        *,
        host_memory: int | str = "64GB",
        version: HostVersion | str = HostVersion.V2022,
        guest_os: str = "windows",
        timings: Timings | str = "fast",
        tls: bool = False,
        username: str = "dmh",
        password: str | None = None,
        bind: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        certfile: str | None = None,
        keyfile: str | None = None,
        guest_username: str = "guest",
        guest_password: str | None = None,
        guest_backend: str | None = None,
        host_name: str | None = None,
    ) -> None:
        if isinstance(timings, str):
            timings = Timings.realistic() if timings == "realistic" else Timings.fast()
        self.version = HostVersion.parse(version)
        self.host = EmulatedHost(
            host_memory,
            version=self.version,
            guest_os=guest_os,
            timings=timings,
            disks={template_path(os_name): os_name for os_name in GUEST_OS},
            guest_backend=_guest_backend(guest_backend),
            name=host_name,  # the computer name it answers with (default: this machine's)
        )
        self.username = username
        self.password = password or secrets.token_urlsafe(18)
        # What guests accept (PowerShell Direct and their WinRM); the client reads them from
        # DMH_GUEST_USERNAME / DMH_GUEST_PASSWORD, so a served emulator must be able to take them.
        self.guest_username = guest_username
        self.guest_password = guest_password or secrets.token_urlsafe(18)
        self.tls = tls
        self._bind = bind
        self._allow_remote = allow_remote
        self._guest_servers: dict[uuid.UUID, EmulatorServer] = {}
        self._lock = threading.Lock()
        self.driver = HostDriver(self.host)
        # Every Linux guest's sshd (started on demand), with one host key for the run.
        self.ssh = GuestSSH(guest_username, self.guest_password)
        self.handler = HyperVHandler(
            self.host,
            guest_username=guest_username,
            guest_password=self.guest_password,
            guest_endpoint=self._guest_endpoint,
        )
        # The host's WMI provider over WS-Man, on the same URL and credentials as PSRP (§6)
        self.wmi = WmiProvider(self.host)
        self.server = EmulatorServer(
            ServedWith(self.handler, self.wmi),
            username=username,
            password=self.password,
            host=bind,
            port=port,
            tls=tls,
            certfile=certfile,
            keyfile=keyfile,
            allow_remote=allow_remote,
        )

    def start(self) -> EmbeddedEmulator:
        self.driver.start()
        try:
            self.server.start()
        except BaseException:
            self.driver.stop()
            raise
        return self

    def close(self) -> None:
        """Stop the endpoints, the driver and every guest process."""
        with self._lock:
            guests, self._guest_servers = list(self._guest_servers.values()), {}
        for server in guests:
            server.stop()
        self.ssh.close()
        self.server.stop()
        self.driver.stop()
        self.host.close()

    def __enter__(self) -> EmbeddedEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def address(self) -> str:
        """The address a client connects to (loopback when bound to every interface)."""
        return "127.0.0.1" if self._bind in ("0.0.0.0", "::") else self._bind.strip("[]")

    def template_path(self, guest_os: str) -> str:
        return template_path(guest_os)

    def _guest_endpoint(self, vm: VmRecord) -> GuestEndpoint:
        """The guest's own WinRM listener (like a guest's IP), started the first time asked."""
        with self._lock:
            server = self._guest_servers.get(vm.id)
            if server is None:
                handler = HyperVHandler(
                    self.host,
                    guest_username=self.guest_username,
                    guest_password=self.guest_password,
                    bound_vm=vm.id,
                )
                server = EmulatorServer(
                    handler,
                    username=self.guest_username,
                    password=self.guest_password,
                    tls=False,  # a stock guest's listener is HTTP 5985 (real-host facts)
                    max_workers=4,
                )
                server.start()
                self._guest_servers[vm.id] = server
                log.info("guest %s listens on %s", vm.name, server.url)
        return GuestEndpoint("127.0.0.1", server.port, "wsman", False)

    def ssh_endpoint(self, vm_name: str) -> SSHEndpoint:
        """A Linux guest's sshd on loopback (its port stands in for the guest's address),
        started the first time asked; a Windows guest has none."""
        vm = self.host.get_vm(vm_name)
        guest = self.host.guest(vm.id)
        if guest.os_name != "linux":
            raise GuestError(
                f"The virtual machine '{vm.name}' runs {guest.os_name}: it has no SSH server.",
                target=vm.name,
            )
        return self.ssh.serve(vm.id, lambda: self.host.guest(vm.id))

    def guest_cert_path(self, vm_id: uuid.UUID) -> Path | None:
        server = self._guest_servers.get(vm_id)
        return Path(server.cert_path) if server and server.cert_path else None
