"""The guest backends behind one face: chosen by name from the backend table (an unknown name is
refused, naming the value and the choices), the QEMU backend for Linux guests only, and the
guest paths and files both backends lay out the same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.emulator.backends import make_guest
from harness.emulator.errors import GuestError
from harness.emulator.guestface import copy_in, path_parts, read_from
from harness.emulator.guestview import LinuxProfile, WindowsProfile
from harness.emulator.host import EmulatedHost
from harness.emulator.process.guest import EmulatedGuest
from harness.emulator.qemu.guest import QemuGuest
from harness.emulator.service import ENV_GUEST_BACKEND, EmbeddedEmulator
from harness.errors import SettingError


def test_an_unknown_backend_is_refused_naming_it_and_the_choices() -> None:
    with pytest.raises(SettingError) as caught:
        EmulatedHost("4GB", guest_backend="kvm")
    assert caught.value.value == "kvm"
    assert "'process', 'qemu'" in caught.value.rule


def test_the_service_refuses_an_unknown_backend_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_GUEST_BACKEND, "kvm")
    with pytest.raises(SettingError, match="kvm"):
        EmbeddedEmulator()


def test_the_qemu_backend_runs_linux_guests_and_leaves_windows_to_processes(
    tmp_path: Path,
) -> None:
    """Made, not booted: a QEMU guest launches its VM on the first view the host publishes."""
    assert isinstance(make_guest("qemu", "l", LinuxProfile(), tmp_path / "l"), QemuGuest)
    assert isinstance(make_guest("qemu", "w", WindowsProfile(), tmp_path / "w"), EmulatedGuest)
    assert isinstance(make_guest("process", "l", LinuxProfile(), tmp_path / "p"), EmulatedGuest)


def test_guest_paths_are_laid_out_alike() -> None:
    for path, parts in (
        ("C:\\app\\x.py", ["C", "app", "x.py"]),
        ("D:/data/y", ["D", "data", "y"]),
        ("rel/x", ["rel", "x"]),
        ("/opt/x", ["opt", "x"]),
    ):
        assert path_parts(path) == parts, path
    # A QEMU guest writes only below its scratch directory; its other paths are read-only.
    assert path_parts("/dmh/a/b", "/dmh") == ["a", "b"]
    assert path_parts("C:\\app", "/dmh") == ["C", "app"]
    with pytest.raises(GuestError, match="read-only") as caught:
        path_parts("/opt/x", "/dmh")
    assert caught.value.error_id == "ReadOnlyPath"
    for leaving in ("../x", "C:\\app\\..\\..\\x", "/dmh/../etc"):
        with pytest.raises(GuestError, match="leaves the guest's file system"):
            path_parts(leaving, "/dmh" if leaving.startswith("/") else "/")


def test_a_file_copied_in_keeps_its_name_and_mode_under_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "guest"
    source = tmp_path / "tool.sh"
    source.write_text("echo hi\n")
    source.chmod(0o755)

    def host_path(guest_path: str) -> Path:
        return root.joinpath(*path_parts(guest_path))

    for destination in ("C:\\tools\\", "/opt/bin/"):
        copied = copy_in(host_path, source, destination)
        assert copied == host_path(destination) / "tool.sh"
        assert copied.read_text() == "echo hi\n"
        assert os.access(copied, os.X_OK)
    assert copy_in(host_path, source, "C:\\x\\renamed.sh") == root / "C" / "x" / "renamed.sh"
    with pytest.raises(GuestError, match="does not exist"):
        copy_in(host_path, tmp_path / "missing", "C:\\x\\")


def test_a_read_resumes_where_the_last_one_ended_and_waits_for_a_cut_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.txt"
    assert read_from(path, 0) == ("", 0)  # not there yet
    path.write_bytes("größe".encode()[:-2])  # written so far: up to the middle of 'ß'
    text, offset = read_from(path, 0)
    assert (text, offset) == ("grö", len("grö".encode()))
    path.write_bytes("größe".encode())
    rest, end = read_from(path, offset)
    assert text + rest == "größe"
    assert end == len("größe".encode())
