"""WS-Management SOAP for the emulator: parse the requests pypsrp sends, build the answers it expects.

Only the shell subset PSRP uses is understood; everything else answers ActionNotSupported.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from harness.errors import HarnessError

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config"
NS_POWERSHELL = "http://schemas.microsoft.com/powershell"

_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTION_GET = _TRANSFER + "Get"
ACTION_CREATE = _TRANSFER + "Create"
ACTION_DELETE = _TRANSFER + "Delete"
ACTION_PUT = _TRANSFER + "Put"
ACTION_ENUMERATE = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
ACTION_PULL = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
ACTION_COMMAND = _SHELL + "Command"
ACTION_RECEIVE = _SHELL + "Receive"
ACTION_SEND = _SHELL + "Send"
ACTION_SIGNAL = _SHELL + "Signal"
ACTION_CONNECT = _SHELL + "Connect"
ACTION_DISCONNECT = _SHELL + "Disconnect"
ACTION_RECONNECT = _SHELL + "Reconnect"
ACTION_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

SIGNAL_TERMINATE = _SHELL + "signal/Terminate"
SIGNAL_CTRL_C = _SHELL + "signal/ctrl_c"
SIGNAL_PS_CTRL_C = "powershell/signal/ctrl_c"
COMMAND_STATE_DONE = _SHELL + "CommandState/Done"
CONFIG_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"

# WSManFault codes (winerror.h); pypsrp compares the numeric Code attribute.
ERROR_OPERATION_TIMEOUT = 0x80338029
ERROR_ACTION_NOT_SUPPORTED = 0x80338013
ERROR_INVALID_SELECTORS = 0x8033803D
# What WinRM answers for a ShellId it does not know; pypsrp's is_alive() treats it as "pool gone".
ERROR_UNEXPECTED_SELECTORS = 0x8033805B
ERROR_TARGET_ALREADY_EXISTS = 0x80338063
ERROR_INVALID_XML = 0x80338056
ERROR_PLUGIN_FAILED = 0x80338083

DEFAULT_MAX_ENVELOPE_SIZE = 153600
# Room for our own envelope around the base64 payload of a Receive answer.
_ENVELOPE_OVERHEAD = 2048

# Response MessageIDs only need to be unique: a random base plus a counter, because os.urandom
# (behind uuid4) can cost ~0.4 ms per call in sandboxed kernels, more than the rest of a reply.
_MESSAGE_IDS = itertools.count(int.from_bytes(os.urandom(15), "big") << 8)
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_Q = {
    "s": NS_SOAP,
    "a": NS_ADDRESSING,
    "w": NS_WSMAN,
    "rsp": NS_SHELL,
    "ps": NS_POWERSHELL,
}


class WSManFault(HarnessError):
    """A WS-Management fault to answer with (HTTP 500); never leaves the emulator."""

    def __init__(self, code: int, reason: str, *, subcode: str = "w:InternalError") -> None:
        self.code = code
        self.reason = reason
        self.subcode = subcode
        super().__init__(f"WSManFault 0x{code:08X} ({subcode}): {reason}")


def timeout_fault() -> WSManFault:
    return WSManFault(
        ERROR_OPERATION_TIMEOUT,
        "The WS-Management service cannot complete the operation within the time specified "
        "in OperationTimeout.",
        subcode="w:TimedOut",
    )


def action_not_supported(action: str) -> WSManFault:
    return WSManFault(
        ERROR_ACTION_NOT_SUPPORTED,
        f"The WS-Management service does not support the action {action!r} (the emulator "
        "implements Create, Command, Send, Receive, Signal, Delete and Get only).",
        subcode="a:ActionNotSupported",
    )


def unknown_shell(shell_id: str | None) -> WSManFault:
    return WSManFault(
        ERROR_UNEXPECTED_SELECTORS,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
        "shell was not found on the server. Possible causes are: the specified ShellId is "
        "incorrect or the shell no longer exists on the server.",
        subcode="w:InvalidSelectors",
    )


def bad_request(reason: str) -> WSManFault:
    return WSManFault(ERROR_INVALID_XML, reason, subcode="w:InvalidXMLValues")


@dataclass(frozen=True)
class Request:
    """The header fields of one WS-Management request plus its body element."""

    action: str
    message_id: str
    resource_uri: str
    selectors: Mapping[str, str]
    operation_timeout: float | None
    max_envelope_size: int
    body: ET.Element = field(repr=False, compare=False)

    @property
    def shell_id(self) -> str | None:
        return self.selectors.get("ShellId")

    @property
    def max_payload(self) -> int:
        """Raw bytes that fit base64-encoded in an answer to this request."""
        return max(1024, (self.max_envelope_size - _ENVELOPE_OVERHEAD) * 3 // 4)


@dataclass(frozen=True)
class CreateShell:
    shell_id: str | None
    input_streams: str
    output_streams: str
    creation_xml: bytes


@dataclass(frozen=True)
class CommandLine:
    command_id: str | None
    arguments: bytes


@dataclass(frozen=True)
class SendStream:
    name: str
    command_id: str | None
    data: bytes


@dataclass(frozen=True)
class ReceiveRequest:
    streams: tuple[str, ...]
    command_id: str | None


@dataclass(frozen=True)
class SignalRequest:
    command_id: str | None
    code: str


@dataclass(frozen=True)
class OutputStream:
    name: str
    command_id: str | None
    data: bytes


def parse_duration(text: str) -> float:
    """Seconds in an xs:duration such as PT20S, PT20.000S or P0DT0H1M0S."""
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groupdict().values()):
        raise bad_request(f"OperationTimeout {text!r} is not an xs:duration such as PT20S")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def parse_request(data: bytes) -> Request:
    """Parse a SOAP envelope; raises WSManFault when it is not one pypsrp would send."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise bad_request(f"the request is not well-formed XML: {err}") from None
    except (LookupError, ValueError) as err:
        # An encoding expat does not know ('bogus') or cannot read (UTF-32): a fault the
        # client can read, never a dropped connection.
        raise bad_request(f"the request's XML encoding is not supported: {err}") from None
    header = root.find("s:Header", _Q)
    body = root.find("s:Body", _Q)
    if header is None or body is None:
        raise bad_request("the request has no SOAP Header or Body")

    action = (header.findtext("a:Action", "", _Q) or "").strip()
    message_id = (header.findtext("a:MessageID", "", _Q) or "").strip()
    if not action or not message_id:
        raise bad_request("the request has no wsa:Action or wsa:MessageID")

    selectors = {
        sel.get("Name", ""): (sel.text or "").strip()
        for sel in header.iterfind("w:SelectorSet/w:Selector", _Q)
    }
    timeout_text = header.findtext("w:OperationTimeout", None, _Q)
    size_text = header.findtext("w:MaxEnvelopeSize", None, _Q)
    try:
        max_envelope = int(size_text) if size_text else DEFAULT_MAX_ENVELOPE_SIZE
    except ValueError:
        raise bad_request(f"MaxEnvelopeSize {size_text!r} is not an integer") from None

    return Request(
        action=action,
        message_id=message_id,
        resource_uri=(header.findtext("w:ResourceURI", "", _Q) or "").strip(),
        selectors=selectors,
        operation_timeout=parse_duration(timeout_text) if timeout_text else None,
        max_envelope_size=max_envelope,
        body=body,
    )


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not valid base64") from None


def _command_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        raise bad_request(f"CommandId {value!r} is not a GUID") from None
    return value


def parse_create(body: ET.Element) -> CreateShell:
    shell = body.find("rsp:Shell", _Q)
    if shell is None:
        raise bad_request("Create has no rsp:Shell element")
    creation = shell.find("ps:creationXml", _Q)
    if creation is None:
        creation = shell.find("creationXml")
    if creation is None:
        raise bad_request("Create has no creationXml: only PowerShell shells are emulated")
    return CreateShell(
        shell_id=shell.get("ShellId"),
        input_streams=(shell.findtext("rsp:InputStreams", "", _Q) or "stdin pr").strip(),
        output_streams=(shell.findtext("rsp:OutputStreams", "", _Q) or "stdout").strip(),
        creation_xml=_b64(creation.text, "creationXml"),
    )


def parse_command(body: ET.Element) -> CommandLine:
    line = body.find("rsp:CommandLine", _Q)
    if line is None:
        raise bad_request("Command has no rsp:CommandLine element")
    data = b"".join(_b64(arg.text, "Arguments") for arg in line.iterfind("rsp:Arguments", _Q))
    return CommandLine(command_id=_command_id(line.get("CommandId")), arguments=data)


def parse_send(body: ET.Element) -> list[SendStream]:
    send = body.find("rsp:Send", _Q)
    if send is None:
        raise bad_request("Send has no rsp:Send element")
    return [
        SendStream(
            name=stream.get("Name", "stdin"),
            command_id=_command_id(stream.get("CommandId")),
            data=_b64(stream.text, "Send stream"),
        )
        for stream in send.iterfind("rsp:Stream", _Q)
    ]


def parse_receive(body: ET.Element) -> ReceiveRequest:
    desired = body.find("rsp:Receive/rsp:DesiredStream", _Q)
    if desired is None:
        raise bad_request("Receive has no rsp:DesiredStream element")
    return ReceiveRequest(
        streams=tuple((desired.text or "stdout").split()),
        command_id=_command_id(desired.get("CommandId")),
    )


def parse_signal(body: ET.Element) -> SignalRequest:
    signal = body.find("rsp:Signal", _Q)
    if signal is None:
        raise bad_request("Signal has no rsp:Signal element")
    return SignalRequest(
        command_id=_command_id(signal.get("CommandId")),
        code=(signal.findtext("rsp:Code", "", _Q) or "").strip(),
    )


_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US" xmlns:s="' + NS_SOAP + '" xmlns:a="' + NS_ADDRESSING + '"'
    ' xmlns:x="' + NS_TRANSFER + '" xmlns:w="' + NS_WSMAN + '" xmlns:rsp="' + NS_SHELL + '"'
    ' xmlns:f="' + NS_FAULT + '" xmlns:cfg="' + NS_CONFIG + '">'
)


def envelope(action: str, relates_to: str | None, body: str) -> bytes:
    """A response envelope; RelatesTo must echo the request's MessageID or pypsrp raises."""
    relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
    return (
        f"{_ENVELOPE_OPEN}<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.UUID(int=next(_MESSAGE_IDS) % 2**128)).upper()}</a:MessageID>"
        f"<a:To>{_ANONYMOUS}</a:To>{relates}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_envelope(fault: WSManFault, relates_to: str | None, machine: str) -> bytes:
    sender = fault.subcode.startswith("a:") or fault.code in (
        ERROR_INVALID_XML,
        ERROR_INVALID_SELECTORS,
        ERROR_UNEXPECTED_SELECTORS,
    )
    reason = escape(fault.reason)
    body = (
        f"<s:Fault><s:Code><s:Value>{'s:Sender' if sender else 's:Receiver'}</s:Value>"
        f"<s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
        f"<s:Detail><f:WSManFault Code={quoteattr(str(fault.code))} Machine={quoteattr(machine)}>"
        f"<f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return envelope(ACTION_FAULT, relates_to, body)


def shell_xml(
    *,
    shell_id: str,
    resource_uri: str,
    owner: str,
    client_ip: str,
    input_streams: str,
    output_streams: str,
    run_time: float,
    inactivity: float,
    state: str | None = None,
) -> str:
    state_xml = f"<rsp:State>{escape(state)}</rsp:State>" if state else ""
    return (
        f"<rsp:Shell><rsp:ShellId>{escape(shell_id)}</rsp:ShellId>"
        f"<rsp:ResourceUri>{escape(resource_uri)}</rsp:ResourceUri>"
        f"<rsp:Owner>{escape(owner)}</rsp:Owner><rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
        f"<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        f"<rsp:InputStreams>{escape(input_streams)}</rsp:InputStreams>"
        f"<rsp:OutputStreams>{escape(output_streams)}</rsp:OutputStreams>{state_xml}"
        f"<rsp:ShellRunTime>{format_duration(run_time)}</rsp:ShellRunTime>"
        f"<rsp:ShellInactivity>{format_duration(inactivity)}</rsp:ShellInactivity></rsp:Shell>"
    )


def resource_created(address: str, resource_uri: str, shell_id: str, shell: str) -> str:
    return (
        f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{escape(resource_uri)}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{escape(shell_id)}</w:Selector></w:SelectorSet>'
        f"</a:ReferenceParameters></x:ResourceCreated>{shell}"
    )


def command_response(command_id: str) -> str:
    return f"<rsp:CommandResponse><rsp:CommandId>{escape(command_id)}</rsp:CommandId></rsp:CommandResponse>"


def receive_response(streams: Sequence[OutputStream], done_command_id: str | None) -> str:
    parts = ["<rsp:ReceiveResponse>"]
    for stream in streams:
        command = f" CommandId={quoteattr(stream.command_id)}" if stream.command_id else ""
        data = base64.b64encode(stream.data).decode()
        parts.append(f"<rsp:Stream Name={quoteattr(stream.name)}{command}>{data}</rsp:Stream>")
    if done_command_id:
        parts.append(
            f"<rsp:CommandState CommandId={quoteattr(done_command_id)} "
            f'State="{COMMAND_STATE_DONE}"/>'
        )
    parts.append("</rsp:ReceiveResponse>")
    return "".join(parts)


def config_response(max_envelope_size_kb: int) -> str:
    return (
        f"<cfg:Config><cfg:MaxEnvelopeSizekb>{max_envelope_size_kb}</cfg:MaxEnvelopeSizekb>"
        "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms><cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
        "</cfg:Config>"
    )


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def response_action(action: str) -> str:
    """The Action URI of the answer to `action` (Get -> GetResponse, ...)."""
    return action + "Response"
