"""CIM instances as WMI serves them over WS-Man: one element per property (alphabetical,
arrays repeated, NULL as xsi:nil), endpoint references with their key selectors, and the
CIM-XML embedded instances that methods such as ModifyResourceSettings take as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from harness.emulator.wmi.wql import Value
from harness.errors import HarnessError

WMI_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"


def class_uri(namespace: str, class_name: str) -> str:
    """http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/<Class>."""
    return f"{WMI_URI}{namespace}/{class_name}"


@dataclass(frozen=True)
class Instance:
    """One CIM instance: its namespace (root/virtualization/v2), class, key property names
    and properties (name → value; None is NULL, a tuple is an array)."""

    namespace: str
    class_name: str
    keys: tuple[str, ...]
    properties: Mapping[str, Value]

    @property
    def uri(self) -> str:
        return class_uri(self.namespace, self.class_name)

    def selectors(self) -> dict[str, str]:
        return {key: format_value(self.properties.get(key)) for key in self.keys}

    def has_keys(self, selectors: Mapping[str, str]) -> bool:
        """True if every key selector names this instance (key values compare case-blind,
        as WMI's object paths do)."""
        mine = {k.casefold(): v.casefold() for k, v in self.selectors().items()}
        return all(mine.get(k.casefold()) == v.casefold() for k, v in selectors.items())


def format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def instance_xml(
    instance: Instance,
    properties: Iterable[str] | None = None,
    element: str | None = None,
    outer: str | None = None,
) -> str:
    """The instance as WinRM's WMI plugin writes it; `properties` limits which are filled
    (the rest are nil, as a WQL SELECT of some properties returns them). With `outer`, the
    element is `<outer:element>` (a method's output parameter) and the properties stay in
    the class's own namespace."""
    uri = instance.uri
    prefix = "c" if outer else "p"
    tag = f"{outer or prefix}:{element or instance.class_name}"
    wanted = None if properties is None else {p.casefold() for p in properties}
    parts = [
        f"<{tag} xmlns:{prefix}={quoteattr(uri)} xmlns:cim={quoteattr(NS_CIM)}"
        f' xmlns:xsi={quoteattr(NS_XSI)} xsi:type="{prefix}:{instance.class_name}_Type">'
    ]
    for prop in sorted(instance.properties, key=str.casefold):
        value = instance.properties[prop]
        if wanted is not None and prop.casefold() not in wanted and prop not in instance.keys:
            value = None
        parts.append(property_xml(prefix, prop, value))
    parts.append(f"</{tag}>")
    return "".join(parts)


class CimDatetime(str):
    """A CIM datetime property's value (ISO 8601, UTC). WinRM's WMI plugin writes a datetime
    as `<p:Prop><cim:Datetime>2024-05-01T10:00:00.500000Z</cim:Datetime></p:Prop>` (DSP0230, the
    WS-CIM mapping: xs:dateTime in cim:Datetime), not as the DMTF string WMI itself holds;
    a str, so WQL compares it as text."""

    @classmethod
    def of(cls, when: datetime) -> CimDatetime:
        utc = when.astimezone(timezone.utc)
        return cls(utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def property_xml(prefix: str, name: str, value: Value) -> str:
    if value is None:
        return f'<{prefix}:{name} xsi:nil="true"/>'
    if isinstance(value, CimDatetime):
        return f"<{prefix}:{name}><cim:Datetime>{escape(value)}</cim:Datetime></{prefix}:{name}>"
    if isinstance(value, tuple):
        return "".join(
            f"<{prefix}:{name}>{escape(format_value(item))}</{prefix}:{name}>" for item in value
        )
    return f"<{prefix}:{name}>{escape(format_value(value))}</{prefix}:{name}>"


def epr_xml(instance: Instance, element: str = "a:EndpointReference") -> str:
    """An endpoint reference to the instance: its class URI and key selectors, plus the
    __cimnamespace selector WinRM adds."""
    selectors = "".join(
        f"<w:Selector Name={quoteattr(k)}>{escape(v)}</w:Selector>"
        for k, v in instance.selectors().items()
    )
    return (
        f'<{element} xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
        f' xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">'
        f"<a:Address>{ANONYMOUS}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{escape(instance.uri)}</w:ResourceURI><w:SelectorSet>{selectors}"
        f'<w:Selector Name="__cimnamespace">{escape(instance.namespace)}</w:Selector>'
        f"</w:SelectorSet></a:ReferenceParameters></{element.split(' ')[0]}>"
    )


class EmbeddedInstanceError(HarnessError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"embedded instance: {reason}")


@dataclass(frozen=True)
class EmbeddedInstance:
    """A CIM-XML <INSTANCE> given as a method's string parameter (DTD 2.0)."""

    class_name: str
    properties: Mapping[str, str | tuple[str, ...] | None]

    def get(self, name: str) -> str | tuple[str, ...] | None:
        folded = name.casefold()
        return next((v for k, v in self.properties.items() if k.casefold() == folded), None)

    def has(self, name: str) -> bool:
        return any(k.casefold() == name.casefold() for k in self.properties)


def parse_embedded(text: str) -> EmbeddedInstance:
    """Parse `<INSTANCE CLASSNAME=..><PROPERTY NAME TYPE><VALUE>..` text."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as err:
        raise EmbeddedInstanceError(f"not well-formed CIM-XML ({err})") from None
    if root.tag != "INSTANCE" or not root.get("CLASSNAME"):
        raise EmbeddedInstanceError(f"expected <INSTANCE CLASSNAME=...>, found <{root.tag}>")
    values: dict[str, str | tuple[str, ...] | None] = {}
    for prop in root:
        name = prop.get("NAME")
        if not name:
            raise EmbeddedInstanceError(f"a <{prop.tag}> has no NAME")
        if prop.tag == "PROPERTY":
            node = prop.find("VALUE")
            values[name] = None if node is None else (node.text or "")
        elif prop.tag == "PROPERTY.ARRAY":
            array = prop.find("VALUE.ARRAY")
            values[name] = (
                None if array is None else tuple(v.text or "" for v in array.iter("VALUE"))
            )
        elif prop.tag != "QUALIFIER":
            raise EmbeddedInstanceError(f"unexpected <{prop.tag}> in the instance")
    return EmbeddedInstance(str(root.get("CLASSNAME")), values)
