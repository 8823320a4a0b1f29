"""Recorded transcripts (issue 23): `dmh doctor --smoke --record DIR` saves the session's WS-Man
and PSRP exchanges, scrubbed; a replay feeds the recorded output to the client's parsers, and a
shape check compares the emulator's output for the same commands with a recording.

Every recording in tests/recordings/ (contributed from lab runs, see the README) is checked the
same way; none from a real host ships yet (no public capture of the Hyper-V cmdlets' remote
output was found), so those checks run on a recording made here, against the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.hyperv.host import HyperVHost, prop, text, version_from_build
from harness.hyperv.record import Recorder, Scrubber, Transcript, load, pipelines
from harness.settings import HostVersion

from .support import Emulator, memory, running_vm
from .test_smoke import doctor

RECORDINGS = sorted((Path(__file__).parent.parent / "recordings").glob("*.json"))


@pytest.fixture(scope="module")
def recorded(http_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A doctor --smoke run against the emulator, recorded."""
    directory = tmp_path_factory.mktemp("transcript")
    with pytest.MonkeyPatch.context() as monkeypatch:
        template = http_emulator.emu.template_path("windows")
        argv = doctor(
            http_emulator, monkeypatch, "--template", template, "--record", str(directory)
        )
        assert main(argv) == 0
    yield directory / "transcript.json"


def test_the_transcript_is_scrubbed(http_emulator: Emulator, recorded: Path) -> None:
    emu = http_emulator.emu
    saved = recorded.read_text("utf-8")
    assert emu.password not in saved and emu.guest_password not in saved
    assert "127.0.0.1" not in saved and "192.0.2.1" in saved  # the host's address, replaced
    assert f'<S N="V">{emu.guest_username}<' not in saved  # the guest user, as sent
    assert "[the harness's script]" in saved  # its own text is not kept
    assert "[secret]" in saved  # the guest password sent as a parameter
    document = json.loads(saved)
    assert document["format"] == "dmh-transcript/1"
    assert document["host"]["os_version"] == "10.0.20348"
    actions = {e["action"] for e in document["exchanges"]}
    assert {"Create", "Command", "Receive", "Delete"} <= actions


def test_a_replay_feeds_the_recorded_output_to_the_clients_parsers(recorded: Path) -> None:
    transcript = load(recorded)
    ran = pipelines(transcript)
    names = [p.command for p in ran]
    for needed in ("host-facts", "new-vm-from-template", "sample-vm", "vm-invoke", "remove-vm"):
        assert needed in names
    [facts] = next(p for p in ran if p.command == "host-facts").output
    assert version_from_build(text(prop(facts, "OSVersion"))) is HostVersion.V2022
    assert text(prop(facts, "ComputerName")) == "HYPERV-HOST"  # scrubbed, still parsed
    vms = [o for p in ran if p.command == "Get-VM" for o in p.output]
    assert vms and all(isinstance(prop(vm, "State"), str) for vm in vms)  # depth-1 strings
    [removed] = next(p for p in ran if p.command == "remove-vm").output
    assert prop(removed, "LeftDisks") == [] and int(prop(removed, "RemovedDisks")) >= 1


def shape(obj: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What a client sees of an object's shape: type names, adapted and extended properties."""
    return (
        tuple(getattr(obj, "types", ()) or ()),
        tuple(sorted(getattr(obj, "adapted_properties", {}) or {})),
        tuple(sorted(getattr(obj, "extended_properties", {}) or {})),
    )


def shape_differences(transcript: Transcript, http_emulator: Emulator, vm_name: str) -> list[str]:
    """The Get-VM and Get-VMMemory objects the emulator writes now against the recording's."""
    recorded = {p.command: p.output[0] for p in pipelines(transcript) if p.output}
    found = []
    with (
        http_emulator.session() as session,
        running_vm(HyperVHost(session), vm_name, http_emulator, memory()),
    ):
        for command, parameter in (("Get-VM", "Name"), ("Get-VMMemory", "VMName")):
            if command not in recorded:
                continue
            [live] = session.cmdlet(command, **{parameter: vm_name})
            if shape(live) != shape(recorded[command]):
                found.append(f"{command}: recorded {shape(recorded[command])}, now {shape(live)}")
    return found


def test_the_emulators_shapes_match_the_recording(
    recorded: Path, http_emulator: Emulator, vm_name: str
) -> None:
    assert shape_differences(load(recorded), http_emulator, vm_name) == []


def test_the_shape_check_sees_a_difference(
    recorded: Path, http_emulator: Emulator, vm_name: str, tmp_path: Path
) -> None:
    document = json.loads(recorded.read_text("utf-8"))
    for exchange in document["exchanges"]:
        for message in exchange["messages"]:
            message["clixml"] = message["clixml"].replace('N="MemoryDemand"', 'N="Demand"')
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document), "utf-8")
    [difference] = shape_differences(load(changed), http_emulator, vm_name)
    assert difference.startswith("Get-VM:") and "Demand" in difference


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_each_contributed_recording(path: Path, http_emulator: Emulator, vm_name: str) -> None:
    transcript = load(path)
    assert pipelines(transcript), f"{path.name}: no pipelines"
    assert shape_differences(transcript, http_emulator, vm_name) == []


def test_the_scrubber() -> None:
    scrub = Scrubber(secrets=("hunter2",), names={"hyperv01.lab": "host.example", "qa": "user"})
    text_in = (
        "qa@HYPERV01.lab 10.1.2.3 fe80::1c2d S-1-5-21-1111-2222-3333-500 hunter2 qaz "
        '<S N="N">GuestPassword</S><S N="V">other</S> Version=4.0.0.0 01:40:00'
    )
    assert scrub(text_in) == (
        "user@host.example 192.0.2.1 2001:db8::1 S-1-5-21-0-0-0-1000 [secret] qaz "
        '<S N="N">GuestPassword</S><S N="V">[secret]</S> Version=4.0.0.0 01:40:00'
    )


def test_a_recorder_without_exchanges_saves_an_empty_transcript(tmp_path: Path) -> None:
    path = Recorder().save(tmp_path, Scrubber(), {"os_version": "10.0.17763"})
    assert load(path).exchanges == () and pipelines(load(path)) == []
