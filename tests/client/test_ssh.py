"""The SSH guest channel against the emulator's Linux guests: a real /bin/sh inside the guest,
host keys verified, hostile strings passed as data, the address from KVP, the preflight."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from harness.config import Secret
from harness.emulator.integration import LinuxIntegration
from harness.errors import (
    AuthenticationError,
    CommandError,
    ConfigError,
    DeadlineError,
    HostUnreachableError,
    ObjectNotFoundError,
    SettingError,
)
from harness.fixtures.wiring import emulator_ssh_target, emulator_switch
from harness.hyperv.guest import DirectChannel, Guest
from harness.hyperv.host import HyperVHost
from harness.hyperv.preflight import SKIP_PREFIX, check_linux
from harness.hyperv.ssh import SSHChannel, SSHTarget, guest_address
from harness.probe import JsonLinesProbe
from harness.sampler import Sampler
from harness.timeline import Timeline

from .support import ECHO_PROGRAM, HOSTILE, PYTHON, Emulator, finish, memory, wait_for


@contextlib.contextmanager
def linux_vm(
    host: HyperVHost, name: str, emulator: Emulator, *, switch: str | None = None
) -> Iterator[str]:
    """A VM from the emulator's Linux template on its switch, UEFI CA Secure Boot, started."""
    host.create_vm(
        name,
        memory(),
        run_id="client-tests",
        template=emulator.emu.template_path("linux"),
        switch=emulator_switch(emulator.emu) if switch is None else switch or None,
        secure_boot="MicrosoftUEFICertificateAuthority",
    )
    try:
        host.start_vm(name, heartbeat_deadline=20)
        yield name
    finally:
        host.remove_vm(name)


@contextlib.contextmanager
def ssh_channel(target: SSHTarget) -> Iterator[SSHChannel]:
    channel = SSHChannel(target)
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture
def linux_guest(http_emulator: Emulator, vm_name: str) -> Iterator[tuple[HyperVHost, SSHChannel]]:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with (
            linux_vm(host, vm_name, http_emulator),
            ssh_channel(emulator_ssh_target(http_emulator.emu, vm_name)) as channel,
        ):
            yield host, channel


def test_commands_run_in_a_real_shell_inside_the_guest(
    linux_guest: tuple[HyperVHost, SSHChannel],
) -> None:
    _, channel = linux_guest
    done = channel.execute(
        "echo $$; readlink /proc/self/ns/net; ps -o comm= -p $$; head -1 /proc/meminfo; "
        "echo err >&2; exit 7"
    )
    pid, net, comm, memtotal = done.stdout.decode().splitlines()
    assert done.exit_status == 7 and done.stderr == b"err\n"
    assert comm == "sh"
    # The guest's own PID namespace (small pids) and network namespace, and its meminfo.
    assert int(pid) < 100 and int(pid) != os.getpid()
    assert net != os.readlink("/proc/self/ns/net")
    assert memtotal.split()[1] == str(1024 * 1024)  # startup 1 GB, in kB
    # A second command reuses the connection and reaches the same guest.
    assert channel.execute("readlink /proc/self/ns/net").stdout.decode().strip() == net


def test_guest_operations_over_ssh(linux_guest: tuple[HyperVHost, SSHChannel]) -> None:
    _, channel = linux_guest
    guest = Guest(channel)
    counters = guest.counters()
    assert counters.total_mb == 1024
    assert 0 < counters.available_mb < counters.total_mb and counters.committed_mb > 0

    guest.write_file("work/echo.py", ECHO_PROGRAM.encode())
    guest.write_file("work/data.txt", "first\nsecond ✓\n".encode())
    process = guest.start_process(
        PYTHON,
        ["echo.py", "a b", ""],
        {"DMH_ENV_NAMES": '["GREETING"]', "GREETING": "hi", "DMH_EXIT": "3",
         "DMH_READ": '["data.txt"]'},
        working_directory="work",
    )  # fmt: skip
    assert finish(process) == 3
    seen = json.loads(process.output)
    assert seen["argv"] == ["a b", ""]
    assert seen["env"] == {"GREETING": "hi"}
    assert seen["cwd"].endswith("/work")
    assert seen["files"] == {"data.txt": "first\nsecond ✓\n"}

    # A chatty app: 3 MB written before the first poll come back whole, a bounded piece per
    # round trip, and its exit is reported with the last piece.
    chatty = guest.start_process(
        "sh", ["-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; exit 5"],
        working_directory="work",
    )  # fmt: skip
    wait_for(lambda: channel.sample(chatty.key).values.get("exit") == "5", 10, "chatty exits")
    first = chatty.poll()
    assert first.exit_code is None and len(first.output) == 1 << 20
    assert finish(chatty) == 5
    assert chatty.output == "x" * 3_000_000 + "\n"

    # A tree: the app and a child it starts; stop ends both, and the exit status is kept.
    sleeper = guest.start_process(
        "sh", ["-c", "sleep 60 & echo up; wait"], working_directory="work"
    )
    wait_for(lambda: "up" in (sleeper.poll().output or sleeper.output), 10, "output")
    stats = sleeper.stats()
    assert stats.running and stats.working_set > 0
    tree = channel.execute(f"ps -o pid= --sid {sleeper.pid}").stdout.split()
    assert len(tree) == 3  # the wrapper, sh and sleep
    assert sleeper.stop() == 128 + 15  # TERM; the wrapper kept the status
    result = sleeper.poll()
    assert not result.running and result.exit_code == 128 + 15
    assert sleeper.stop() == 128 + 15  # stopping an exited process is no error
    assert channel.execute(f"ps -o pid= --sid {sleeper.pid}").stdout.split() == []

    with pytest.raises(ObjectNotFoundError, match="no-such-program"):
        guest.start_process("no-such-program")


def test_hostile_strings_pass_as_data(linux_guest: tuple[HyperVHost, SSHChannel]) -> None:
    """Names, arguments, environment values and paths full of shell syntax reach the guest
    unchanged: nothing is ever parsed by a shell twice."""
    _, channel = linux_guest
    guest = Guest(channel)
    hostile_arg = HOSTILE + " $(touch pwned) `touch pwned2` '\"; touch pwned3 #"
    folder = f"hostile {HOSTILE.replace(chr(10), ' ')}"
    guest.write_file(f"{folder}/echo.py", ECHO_PROGRAM.encode())
    guest.write_file(f"{folder}/{HOSTILE.replace(chr(10), '_')}.txt", HOSTILE.encode())
    process = guest.start_process(
        PYTHON,
        ["echo.py", hostile_arg, "-x", "*", ""],
        {"DMH_ENV_NAMES": '["V"]', "V": hostile_arg},
        working_directory=folder,
    )
    assert finish(process) == 0
    seen = json.loads(process.output)
    assert seen["argv"] == [hostile_arg, "-x", "*", ""]
    assert seen["env"] == {"V": hostile_arg}
    found = channel.execute("find . /tmp -maxdepth 3 -name 'pwned*'")
    assert found.exit_status == 0 and found.stdout == b""
    with pytest.raises(SettingError, match="environment variable"):
        guest.start_process(PYTHON, ["-c", "0"], {"A;touch pwned": "1"})


def test_host_keys_are_verified(http_emulator: Emulator, vm_name: str, tmp_path: object) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with linux_vm(host, vm_name, http_emulator):
            good = emulator_ssh_target(http_emulator.emu, vm_name)
            other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
            with (
                ssh_channel(dataclasses.replace(good, host_keys=(other,))) as channel,
                pytest.raises(HostUnreachableError, match="host key is not trusted") as info,
            ):
                channel.execute("true")
            assert info.value.retryable is False
            # A known_hosts file: the wrong key refused, the right one accepted.
            known = os.path.join(str(tmp_path), "known_hosts")
            for key, works in ((other, False), (good.host_keys[0], True)):
                with open(known, "w") as stream:
                    stream.write(f"[{good.hostname}]:{good.port} {key}")
                target = dataclasses.replace(good, host_keys=(), known_hosts=known)
                with ssh_channel(target) as channel:
                    if works:
                        assert channel.execute("echo ok").stdout == b"ok\n"
                    else:
                        with pytest.raises(HostUnreachableError, match="not trusted"):
                            channel.execute("true")
            missing = dataclasses.replace(good, host_keys=(), known_hosts=known + ".none")
            with ssh_channel(missing) as channel, pytest.raises(ConfigError, match="known_hosts"):
                channel.execute("true")
            wrong = dataclasses.replace(good, password=Secret("not-the-password"))
            with ssh_channel(wrong) as channel, pytest.raises(AuthenticationError) as auth:
                channel.execute("true")
            assert "not-the-password" not in str(auth.value)


def test_address_comes_from_the_host_by_kvp(http_emulator: Emulator, vm_name: str) -> None:
    with http_emulator.session() as session:
        host = HyperVHost(session)
        with linux_vm(host, vm_name, http_emulator):
            assert guest_address(host, vm_name, deadline=5) == "127.0.0.1"
            guest = http_emulator.emu.host.guest(uuid.UUID(host.vm(vm_name).id))
            guest.set_integration(LinuxIntegration(kvp_daemon=False))
            with pytest.raises(DeadlineError, match="KVP daemon"):
                guest_address(host, vm_name, deadline=0.3)
        with (
            linux_vm(host, vm_name + "-nosw", http_emulator, switch=""),
            pytest.raises(DeadlineError, match="not connected to a switch"),
        ):
            guest_address(host, vm_name + "-nosw", deadline=0.3)


def test_preflight_skips_a_guest_without_hv_balloon(
    linux_guest: tuple[HyperVHost, SSHChannel], http_emulator: Emulator, vm_name: str
) -> None:
    host, channel = linux_guest
    readiness = check_linux(channel)
    assert readiness.capable, readiness.reasons
    assert readiness.facts["hv_balloon"] == "1" and readiness.facts["kvp_daemon"] == "1"
    guest = http_emulator.emu.host.guest(uuid.UUID(host.vm(vm_name).id))
    guest.set_integration(LinuxIntegration(hv_balloon=False))
    readiness = check_linux(channel)
    assert not readiness.capable
    assert readiness.skip_message.startswith(f"{SKIP_PREFIX}: hv_balloon is not loaded")
    guest.set_integration(LinuxIntegration(auto_online="offline"))
    assert "stay offline" in check_linux(channel).skip_message


def test_sampler_takes_the_guest_and_app_in_one_ssh_round_trip(
    linux_guest: tuple[HyperVHost, SSHChannel], vm_name: str
) -> None:
    host, channel = linux_guest
    guest = Guest(channel)
    program = (
        "import json\nfor i in range(3):\n"
        "    print(json.dumps({'metric': 'seen_mb', 'value': 100 + i}), flush=True)\n"
    )
    guest.write_file("app/report.py", program.encode())
    process = guest.start_process(PYTHON, ["report.py"], working_directory="app")
    sampler = Sampler(host, vm_name, Timeline(), guest=guest, process=process,
                      probe=JsonLinesProbe())  # fmt: skip
    sample = wait_for(
        lambda: (s := sampler.tick()).app is not None and s.app.exit_code is not None and s,
        15,
        "the app's exit in a sample",
    )
    assert sample.guest is not None and sample.guest.total_mb == 1024
    assert sample.app is not None and sample.app.reported == {"seen_mb": 102.0}
    assert sample.host is not None and sample.host.assigned_mb > 0


def test_powershell_direct_to_a_linux_guest_is_refused(
    linux_guest: tuple[HyperVHost, SSHChannel], http_emulator: Emulator, vm_name: str
) -> None:
    """As Hyper-V refuses it (§1.6): PowerShell Direct needs a Windows guest."""
    host, _ = linux_guest
    direct = Guest(DirectChannel(host.session, vm_name, http_emulator.credentials))
    with pytest.raises(CommandError, match="cannot handle"):
        direct.counters()
    sampler = Sampler(host, vm_name, Timeline(), guest=direct)
    sample = sampler.tick()  # the host half stands, the guest half is refused
    assert sample.guest is None and sample.host is not None and sampler.errors == 1


def test_doctor_checks_a_linux_guest_like_a_lab_one(
    linux_guest: tuple[HyperVHost, SSHChannel],
    http_emulator: Emulator,
    vm_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dmh doctor --vm`: the host by URL, the guest's address by KVP, its host key from a
    known_hosts file, credentials from the environment; exit status 1 when DM cannot work."""
    from harness.cli import main

    emu = http_emulator.emu
    endpoint = emu.ssh_endpoint(vm_name)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{endpoint.port} {endpoint.host_key}\n")
    monkeypatch.setenv("DMH_HOST_PASSWORD", emu.password)
    monkeypatch.setenv("DMH_GUEST_USERNAME", emu.guest_username)
    monkeypatch.setenv("DMH_GUEST_PASSWORD", emu.guest_password)
    url = f"psrp://{emu.username}@127.0.0.1:{emu.server.port}?auth=basic&ssl=false"
    argv = ["doctor", "--dm-host", url, "--vm", vm_name, "--guest-os", "linux",
            "--guest-port", str(endpoint.port), "--guest-known-hosts", str(known)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hv_balloon:           1" in out and "verdict: can do Dynamic Memory" in out
    guest = emu.host.guest(uuid.UUID(linux_guest[0].vm(vm_name).id))
    guest.set_integration(LinuxIntegration(hot_add=False))
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"skipped: {SKIP_PREFIX}: hv_balloon's hot_add parameter is off" in out
    assert emu.guest_password not in out and emu.password not in out
