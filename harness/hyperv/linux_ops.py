"""The guest operations for Linux guests (the guest-ops names: StartProcess, ProcessStats,
ProcessResult, StopProcess, WriteFile, Counters) over an SSH channel, each one of the POSIX sh
scripts in scripts/linux, and what the `sample` script reports in the shapes the client reads.
"""

from __future__ import annotations

import base64
import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import SettingError
from harness.units import MB

if TYPE_CHECKING:
    from harness.hyperv.ssh import Report, SSHChannel

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PAGE = 4096  # hv_balloon's counts are 4 KiB pages (reference §5.1)


@dataclass(frozen=True)
class LinuxSample:
    """One `sample` report: the guest's memory and, given an app, its tree and new output."""

    values: Mapping[str, str]
    output: str
    offset: int
    next_offset: int
    read_to: int  # the offset the report's bytes reach (next_offset stops before a cut character)

    @classmethod
    def parse(cls, report: Report, offset: int) -> LinuxSample:
        # A character cut by the end of what is written so far waits for the next read.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(report.data)
        consumed = len(report.data) - len(decoder.getstate()[0])
        return cls(report.values, text, offset, offset + consumed, offset + len(report.data))

    def kb(self, key: str) -> int:
        value = self.values.get(key, "")
        return int(value) if value.isdigit() else 0

    def counters(self) -> dict[str, Any]:
        """The guest's memory in the Counters operation's shape (the GuestSample fields)."""
        max_pages = self.kb("balloon.max_dynamic_page_count")
        return {
            "TotalPhysicalMemory": self.kb("MemTotal") * 1024,
            "AvailableMBytes": self.kb("MemAvailable") // 1024,
            "CommittedBytes": self.kb("Committed_AS") * 1024,
            "MaximumMemoryMBytes": max_pages * _PAGE // MB,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "Running": self.values.get("running") == "1",
            "WorkingSet": self.kb("rss_kb") * 1024,
            "PrivateBytes": self.kb("anon_kb") * 1024,
        }

    def result(self) -> dict[str, Any]:
        code = self.values.get("exit", "")
        if self.read_to < self.kb("size"):
            code = ""  # more output to read: the exit is reported with the last of it
        victim = self.values.get("oom") if code else None  # worded as the PSRP guest path does
        return {
            "Running": self.values.get("running") == "1" and not code,
            "ExitCode": int(code) if code.lstrip("-").isdigit() else None,
            "Output": self.output,
            "NextOffset": self.next_offset,
            "MemoryEvent": f"the guest OOM-killed {victim}" if victim else None,
        }


# -- operations: the guest-ops names, in POSIX sh --------------------------------------------
def _start_process(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    program = str(args.get("FilePath") or "")
    if not program or "=" in program:
        raise SettingError("program", program, "must be given and contain no '='")
    environment = dict(args.get("Environment") or {})
    for name in environment:
        if not _ENV_NAME.match(str(name)):
            raise SettingError(
                "environment variable", name, "names are letters, digits and _, not a digit first"
            )
    assignments = [f"{name}={value}" for name, value in environment.items()]
    arguments = [str(a) for a in (args.get("ArgumentList") or [])]
    workdir = str(args.get("WorkingDirectory") or "")
    report = channel.script("start-process", workdir, *assignments, program, *arguments)
    return {
        "Key": report.values.get("key", ""),
        "ProcessId": report.int("pid"),
        "OutputPath": report.values.get("output", ""),
    }


def _key(args: Mapping[str, Any]) -> str:
    key = str(args.get("Key") or "")
    if not key.startswith("/"):
        raise SettingError("Key", key, "must be the key StartProcess returned")
    return key


def _process_stats(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    return channel.sample(_key(args)).stats()


def _process_result(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    return channel.sample(_key(args), int(args.get("Offset") or 0)).result()


def _stop_process(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    report = channel.script("stop-process", _key(args))
    code = report.values.get("exit", "")
    return {"ExitCode": int(code) if code.lstrip("-").isdigit() else None}


def _write_file(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    path = str(args.get("Path") or "")
    content = base64.b64decode(str(args.get("ContentBase64") or ""))
    report = channel.script("write-file", path, stdin=content)
    return {"Path": path, "Length": report.int("length")}


def _counters(channel: SSHChannel, args: Mapping[str, Any]) -> dict[str, Any]:
    return channel.sample().counters()


OPERATIONS = {
    "StartProcess": _start_process,
    "ProcessStats": _process_stats,
    "ProcessResult": _process_result,
    "StopProcess": _stop_process,
    "WriteFile": _write_file,
    "Counters": _counters,
}
