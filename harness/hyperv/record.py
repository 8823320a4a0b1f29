"""Recorded transcripts of a host session (`dmh doctor --smoke --record DIR`): every WS-Man
exchange as plain SOAP (pypsrp's transport hands over the text before any message
encryption), with the PSRP messages inside its base64 payloads decoded to their CLIXML,
scrubbed of host names, users, SIDs, addresses and secrets, beside the host's build. Replay
tests feed the recorded output to the client's parsers and compare the emulator's shapes with
it (tests/client/test_transcripts.py); a lab user contributes one by sending the file.

Format "dmh-transcript/1", one JSON file: {"format", "host": {"os_caption", "os_version",
"hyperv"}, "exchanges": [{"action", "request", "response", "messages": [{"direction",
"type", "pipeline", "clixml"}]}]}; SOAP payloads read "[psrp: N bytes]".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pypsrp.powershell import Fragment
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

from harness.errors import ConfigError

FORMAT = "dmh-transcript/1"
CREATE_PIPELINE = 0x00021006
PIPELINE_OUTPUT = 0x00041004
_PAYLOAD = re.compile(
    r"(<(?:\w+:)?(?:Stream|Arguments|creationXml)\b[^>]*>)([A-Za-z0-9+/=\s]{8,})(</)"
)
_ACTION = re.compile(r"<(?:\w+:)?Action\b[^>]*>([^<]+)</")
_SID = re.compile(r"\bS-1-5-21(?:-\d+){3,4}\b")
# Addresses; not a version such as "Version=4.0.0.0" nor a time such as 01:40:00.
_IPV4 = re.compile(r"(?<![\w=.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:)+:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?![\w:])"
)
# The harness's own script text (a pipeline's script, guest-ops as a parameter): known, so kept
# out (the scrubber would otherwise rewrite its words that look like names).
_OWN_SCRIPT = re.compile(r"(<S(?: N=\"\w+\")?>)[^<]*?#\s*dmh-script:\s*([a-z0-9-]+)[^<]*(</S>)")
# A parameter whose name says it holds a secret: its value goes whatever it is.
_SECRET_PARAMETER = re.compile(
    r'(<S N="N">[^<]*(?:Password|Secret|Token|Key)</S>\s*<\w+ N="V">)([^<]*)(<)', re.IGNORECASE
)


@dataclass(frozen=True)
class PsrpMessage:
    direction: str  # "sent" or "received"
    type: int  # [MS-PSRP] 2.2.1 message type
    pipeline: str  # the pipeline id ("" for the pool's)
    clixml: str


@dataclass(frozen=True)
class Exchange:
    action: str  # the WS-Man action's last part: Create, Command, Send, Receive, Signal, Delete
    request: str
    response: str
    messages: tuple[PsrpMessage, ...] = ()


@dataclass(frozen=True)
class Scrubber:
    """What may not leave the lab: `secrets` (exact values, e.g. passwords) become [secret],
    `names` (host, computer and user names) their stand-ins; SIDs, IPv4 and IPv6 addresses
    become documentation values (RFC 5737, RFC 3849); any parameter named *Password*,
    *Secret*, *Token* or *Key* loses its value."""

    secrets: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, text: str) -> str:
        for secret in sorted(filter(None, self.secrets), key=len, reverse=True):
            text = text.replace(secret, "[secret]")
        text = _SECRET_PARAMETER.sub(r"\1[secret]\3", text)
        for name, stand_in in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            if name:
                pattern = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
                text = re.sub(pattern, stand_in, text, flags=re.IGNORECASE)
        text = _SID.sub("S-1-5-21-0-0-0-1000", text)
        text = _IPV4.sub("192.0.2.1", text)
        return _IPV6.sub("2001:db8::1", text)


class Recorder:
    """Keeps every exchange of the WSMan objects it is attached to (thread-safe)."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._partial: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def attach(self, wsman: WSMan) -> None:
        transport = wsman.transport
        send = transport.send

        def recorded(message: bytes, **kwargs: Any) -> bytes:
            response = send(message, **kwargs)
            self._record(message.decode("utf-8"), response.decode("utf-8"))
            return response

        transport.send = recorded  # type: ignore[method-assign]

    def _record(self, request: str, response: str) -> None:
        with self._lock:
            messages: list[PsrpMessage] = []
            request = self._decode(request, "sent", messages)
            response = self._decode(response, "received", messages)
            action = _ACTION.search(request)
            name = "" if action is None else action.group(1).rstrip("/").rsplit("/", 1)[-1]
            self.exchanges.append(Exchange(name, request, response, tuple(messages)))

    def _decode(self, soap: str, direction: str, out: list[PsrpMessage]) -> str:
        def payload(match: re.Match[str]) -> str:
            try:
                data = base64.b64decode(match.group(2), validate=False)
            except (binascii.Error, ValueError):
                return match.group(0)
            out.extend(self._messages(data, direction))
            return f"{match.group(1)}[psrp: {len(data)} bytes]{match.group(3)}"

        return _PAYLOAD.sub(payload, soap)

    def _messages(self, data: bytes, direction: str) -> Iterable[PsrpMessage]:
        while len(data) >= 21:
            fragment, data = Fragment.unpack(data)
            key = (direction, fragment.object_id)
            whole = (b"" if fragment.start else self._partial.get(key, b"")) + fragment.data
            if not fragment.end:
                self._partial[key] = whole
                continue
            self._partial.pop(key, None)
            if len(whole) >= 40:
                kind = struct.unpack("<I", whole[4:8])[0]
                pid = uuid.UUID(bytes_le=whole[24:40])
                body = whole[40:].removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
                body = _OWN_SCRIPT.sub(r"\1# dmh-script: \2 [the harness's script]\3", body)
                yield PsrpMessage(direction, kind, "" if pid.int == 0 else str(pid), body)

    def save(self, directory: str | Path, scrubber: Scrubber, host: Mapping[str, str]) -> Path:
        """Write the transcript, scrubbed, to `directory`/transcript.json."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        with self._lock:
            exchanges = [
                {
                    "action": e.action,
                    "request": scrubber(e.request),
                    "response": scrubber(e.response),
                    "messages": [{**asdict(m), "clixml": scrubber(m.clixml)} for m in e.messages],
                }
                for e in self.exchanges
            ]
        document = {"format": FORMAT, "host": {k: scrubber(v) for k, v in host.items()}}
        path = target / "transcript.json"
        path.write_text(json.dumps({**document, "exchanges": exchanges}, indent=1), "utf-8")
        return path


@dataclass(frozen=True)
class Transcript:
    host: Mapping[str, str]
    exchanges: tuple[Exchange, ...]


@dataclass(frozen=True)
class RecordedPipeline:
    """One pipeline as recorded: what ran (a cmdlet's name, or a script's `dmh-script` name)
    and its output objects, deserialized as the client deserializes them."""

    command: str
    output: tuple[Any, ...]


def load(path: str | Path) -> Transcript:
    raw = json.loads(Path(path).read_text("utf-8"))
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a {FORMAT} transcript (format {raw.get('format')!r})")
    exchanges = tuple(
        Exchange(
            e["action"],
            e["request"],
            e["response"],
            tuple(PsrpMessage(**m) for m in e["messages"]),
        )
        for e in raw["exchanges"]
    )
    return Transcript(dict(raw["host"]), exchanges)


_COMMAND = re.compile(r'<S N="Cmd">(.*?)</S>', re.DOTALL)
_SCRIPT = re.compile(r"#\s*dmh-script:\s*([a-z0-9-]+)")


def pipelines(transcript: Transcript) -> list[RecordedPipeline]:
    """The recorded pipelines in order, each with its output."""
    serializer = Serializer()
    names: dict[str, str] = {}
    outputs: dict[str, list[Any]] = {}
    order: list[str] = []
    for exchange in transcript.exchanges:
        for message in exchange.messages:
            if message.type == CREATE_PIPELINE:
                found = _COMMAND.search(message.clixml)
                text = "" if found is None else found.group(1)
                script = _SCRIPT.search(text)
                names[message.pipeline] = script.group(1) if script else text.strip()
                outputs[message.pipeline] = []
                order.append(message.pipeline)
            elif message.type == PIPELINE_OUTPUT and message.pipeline in outputs:
                outputs[message.pipeline].append(serializer.deserialize(message.clixml))
    return [RecordedPipeline(names[p], tuple(outputs[p])) for p in order]
