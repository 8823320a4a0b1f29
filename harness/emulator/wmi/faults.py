"""WS-Man faults as WinRM's WMI plugin sends them: the WSManFault code and text from
wsmerror.h, the SOAP subcode, and for faults WMI itself raised a ProviderFault
("WMI Provider", WsmWmiPl.dll) whose __ExtendedStatus says what WMI saw. The emulator's
own explanation (which value broke which rule) goes into that Description.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from harness.emulator import wsman
from harness.errors import HarnessError

# wsmerror.h codes and texts
RESOURCE_NOT_FOUND = 0x80338000
UNEXPECTED_SELECTORS = 0x8033805B
INSUFFICIENT_SELECTORS = 0x8033805A
ACCESS_DENIED = 0x80338104  # ERROR_WSMAN_WMI_SVC_ACCESS_DENIED
CANNOT_PROCESS_FILTER = 0x8033801A  # ERROR_WSMAN_ENUMERATE_CANNOT_PROCESS_FILTER (wsen)
DIALECT_UNAVAILABLE = 0x80338019  # ERROR_WSMAN_ENUMERATE_FILTER_DIALECT_REQUESTED_UNAVAILABLE
INVALID_CONTEXT = 0x8033801B  # ERROR_WSMAN_ENUMERATE_INVALID_ENUMERATION_CONTEXT (wsen)
PROVIDER_INVALID_PARAMETER = 0x8033811E
ACTION_NOT_SUPPORTED = 0x80338013

_TEXT = {
    RESOURCE_NOT_FOUND: "The WS-Management service cannot process the request. The service"
    " cannot find the resource identified by the resource URI and selectors. ",
    UNEXPECTED_SELECTORS: "The WS-Management service cannot process the request because the"
    " request contained invalid selectors for the resource. ",
    INSUFFICIENT_SELECTORS: "The WS-Management service cannot process the request because the"
    " request did not contain all required selectors. ",
    ACCESS_DENIED: "The WS-Management service cannot process the request. The WMI service"
    " returned an 'access denied' error. ",
    CANNOT_PROCESS_FILTER: "The data source could not process the filter. The filter might be"
    " missing or it might be invalid. Change the filter and try the request again. ",
    DIALECT_UNAVAILABLE: "The filtering dialect requested is unavailable. ",
    INVALID_CONTEXT: "The WS-Enumeration context in the enumeration is not valid. Enumeration"
    " may have been completed or canceled. You cannot use this enumeration context anymore."
    " Start a new enumeration. ",
    PROVIDER_INVALID_PARAMETER: "The WS-Management service cannot process the request. The WMI"
    " provider returned an 'invalid parameter' error. ",
    ACTION_NOT_SUPPORTED: "The WS-Management service cannot process the request because the"
    " action is not supported for this resource. ",
}
_SUBCODE = {
    RESOURCE_NOT_FOUND: "a:DestinationUnreachable",
    UNEXPECTED_SELECTORS: "w:InvalidSelectors",
    INSUFFICIENT_SELECTORS: "w:InvalidSelectors",
    ACCESS_DENIED: "w:AccessDenied",
    CANNOT_PROCESS_FILTER: "n:CannotProcessFilter",
    DIALECT_UNAVAILABLE: "n:FilterDialectRequestedUnavailable",
    INVALID_CONTEXT: "n:InvalidEnumerationContext",
    PROVIDER_INVALID_PARAMETER: "w:InvalidParameter",
    ACTION_NOT_SUPPORTED: "a:ActionNotSupported",
}
# WMI's own status behind the fault (WBEM_E_*), shown in __ExtendedStatus
_WBEM = {
    RESOURCE_NOT_FOUND: 0x80041002,  # WBEM_E_NOT_FOUND / INVALID_CLASS look alike on the wire
    ACCESS_DENIED: 0x80041003,
    CANNOT_PROCESS_FILTER: 0x80041017,  # WBEM_E_INVALID_QUERY
    PROVIDER_INVALID_PARAMETER: 0x80041008,
}
_NS_ENUMERATION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"


class WmiFault(HarnessError):
    """A fault to answer a WMI request with. `detail` is the emulator's explanation (which
    class, selector or filter was wrong and why), carried in __ExtendedStatus."""

    def __init__(self, code: int, detail: str, *, operation: str = "", provider: bool = True):
        self.code = code
        self.detail = detail
        self.operation = operation
        self.provider = provider
        super().__init__(f"WSManFault 0x{code:08X}: {detail}")

    @property
    def text(self) -> str:
        return _TEXT[self.code]


def not_found(detail: str, operation: str = "GetObject") -> WmiFault:
    return WmiFault(RESOURCE_NOT_FOUND, detail, operation=operation)


def bad_selectors(detail: str, *, missing: bool = False) -> WmiFault:
    code = INSUFFICIENT_SELECTORS if missing else UNEXPECTED_SELECTORS
    return WmiFault(code, detail, operation="GetObject", provider=False)


def access_denied(detail: str, operation: str) -> WmiFault:
    return WmiFault(ACCESS_DENIED, detail, operation=operation)


def bad_filter(detail: str) -> WmiFault:
    return WmiFault(CANNOT_PROCESS_FILTER, detail, operation="ExecQuery")


def bad_dialect(dialect: str) -> WmiFault:
    return WmiFault(
        DIALECT_UNAVAILABLE,
        f"filter dialect {dialect!r} is not emulated; use the WQL or SelectorFilter dialect",
        provider=False,
    )


def bad_context(context: str) -> WmiFault:
    return WmiFault(
        INVALID_CONTEXT,
        f"enumeration context {context!r} is unknown, finished or expired",
        provider=False,
    )


def invalid_parameter(detail: str, operation: str) -> WmiFault:
    return WmiFault(PROVIDER_INVALID_PARAMETER, detail, operation=operation)


def unsupported_action(detail: str) -> WmiFault:
    return WmiFault(ACTION_NOT_SUPPORTED, detail, provider=False)


def fault_envelope(fault: WmiFault, relates_to: str, machine: str) -> bytes:
    """The SOAP fault WinRM sends (HTTP 500): Sender code, the subcode, and the WSManFault
    detail; WMI-raised faults nest a ProviderFault with the emulator's explanation."""
    subcode = _SUBCODE[fault.code]
    side = "s:Receiver" if fault.code == INVALID_CONTEXT else "s:Sender"
    text = escape(fault.text)
    inner = f"<f:Message>{text}</f:Message>"
    if fault.provider:
        status = _WBEM.get(fault.code, 0x80041001)
        inner = (
            '<f:Message><f:ProviderFault provider="WMI Provider"'
            ' path="%systemroot%\\system32\\WsmWmiPl.dll">'
            f"<f:WSManFault Code={quoteattr(str(fault.code))} Machine={quoteattr(machine)}>"
            f"<f:Message>{text}</f:Message></f:WSManFault><f:ExtendedError>"
            '<p:__ExtendedStatus xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/'
            'root/cimv2/__ExtendedStatus" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            ' xsi:type="p:__ExtendedStatus_Type">'
            f"<p:Description>{escape(fault.detail)}</p:Description>"
            f"<p:Operation>{escape(fault.operation or 'ExecMethod')}</p:Operation>"
            "<p:ProviderName>Microsoft:Hyper-V (DM Harness emulator)</p:ProviderName>"
            f"<p:StatusCode>{status}</p:StatusCode></p:__ExtendedStatus></f:ExtendedError>"
            "</f:ProviderFault></f:Message>"
        )
    else:
        inner = f"<f:Message>{text}{escape(fault.detail)}</f:Message>"
    body = (
        f"<s:Fault xmlns:n={quoteattr(_NS_ENUMERATION)}><s:Code><s:Value>{side}</s:Value>"
        f"<s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{text}</s:Text></s:Reason><s:Detail>'
        f"<f:WSManFault Code={quoteattr(str(fault.code))} Machine={quoteattr(machine)}>"
        f"{inner}</f:WSManFault></s:Detail></s:Fault>"
    )
    action = (
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"
        if subcode.startswith("a:")
        else wsman.ACTION_FAULT
    )
    return wsman.envelope(action, relates_to, body)
