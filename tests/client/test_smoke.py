"""`dmh doctor --smoke` against the emulator: every check passes on a working host, a
failure is named in one line, the VM is removed either way, and no secret is printed."""

from __future__ import annotations

import sys

import pytest

from harness.cli import main
from tests.embedded import Emulator


def doctor(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, *extra: str) -> list[str]:
    emu = emulator.emu
    monkeypatch.setenv("DMH_HOST_PASSWORD", emu.password)
    monkeypatch.setenv("DMH_GUEST_USERNAME", emu.guest_username)
    monkeypatch.setenv("DMH_GUEST_PASSWORD", emu.guest_password)
    url = f"psrp://{emu.username}@127.0.0.1:{emu.server.port}?auth=basic&ssl=false"
    return ["doctor", "--dm-host", url, "--smoke", "--guest-python", sys.executable, *extra]


def test_smoke_passes_on_a_working_host(
    http_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = http_emulator.emu
    before = {vm.name for vm in emu.host.find_vms()}
    argv = doctor(http_emulator, monkeypatch, "--template", emu.template_path("windows"))
    assert main(argv) == 0
    out = capsys.readouterr().out
    checks = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert checks == ["ok"] * 11, out
    assert "smoke: 11 of 11 checks passed" in out
    assert "DM maximum 2048 MB" in out and "hot-add" in out
    assert emu.password not in out and emu.guest_password not in out
    assert {vm.name for vm in emu.host.find_vms()} == before


def test_a_failed_check_is_named_and_the_rest_skipped(
    http_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A template that is not on the host: the host's own error, in one line, and exit 1."""
    argv = doctor(http_emulator, monkeypatch, "--template", "C:\\no\\such.vhdx")
    assert main(argv) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("  FAILED")]
    assert len(failed) == 1 and "create a VM from the template" in failed[0]
    assert "such.vhdx" in failed[0]
    assert out.count("  skipped ") == 7
    assert "smoke: 1 of 9 checks passed" in out


def test_smoke_needs_a_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--dm-host", "psrp://u@h", "--smoke"]) == 4
    assert "--smoke needs --template" in capsys.readouterr().err
