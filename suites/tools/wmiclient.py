"""A small Hyper-V WMI client on pypsrp's own WS-Man client (`pypsrp.wsman.WSMan`): what a
management tool written in Python would do. Shared by the reference tools and the tests.

Connection from the tool contract's environment (README "Certify a management tool"):
DMH_WSMAN_URL (http[s]://host:port/wsman), DMH_HOST_USERNAME, DMH_HOST_PASSWORD, and
optionally DMH_HOST_AUTH (default negotiate) and DMH_HOST_CA (a CA file for HTTPS).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan

WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
_WSEN = NAMESPACES["wsen"]
_W = NAMESPACES["wsman"]
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
SERVICE = "Msvm_VirtualSystemManagementService"
Record = dict[str, Any]  # property → text, None (NULL) or list (array)


def connect_from_env(env: dict[str, str] | None = None) -> WSMan:
    """A WSMan client for the host the tool contract names."""
    env = dict(os.environ if env is None else env)
    url = env.get("DMH_WSMAN_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"DMH_WSMAN_URL {url!r} is not http(s)://host:port/wsman")
    tls = parts.scheme == "https"
    return WSMan(
        parts.hostname,
        port=parts.port or (5986 if tls else 5985),
        path=parts.path.strip("/") or "wsman",
        ssl=tls,
        auth=env.get("DMH_HOST_AUTH", "negotiate"),
        username=env.get("DMH_HOST_USERNAME"),
        password=env.get("DMH_HOST_PASSWORD"),
        cert_validation=env.get("DMH_HOST_CA") or True,
        encryption="auto" if tls or env.get("DMH_HOST_AUTH", "negotiate") != "basic" else "never",
        operation_timeout=20,
        read_timeout=30,
    )


def record(element: ET.Element) -> Record:
    """An instance element as {property: value}; repeated elements become lists."""
    out: Record = {}
    for child in element:
        name = child.tag.rsplit("}", 1)[-1]
        # A datetime comes wrapped: <p:Prop><cim:Datetime>ISO 8601</cim:Datetime></p:Prop>
        inner = child[0] if len(child) else child
        value = None if child.get(_XSI_NIL) == "true" else (inner.text or "")
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


class WmiClient:
    """Queries and method calls on one namespace (default root/virtualization/v2)."""

    def __init__(self, wsman: WSMan, namespace: str = "root/virtualization/v2") -> None:
        self.wsman = wsman
        self.namespace = namespace

    def uri(self, class_name: str) -> str:
        return f"{WMI}{self.namespace}/{class_name}"

    def query(self, wql: str) -> list[Record]:
        """Every instance a WQL SELECT returns (Enumerate with the filter on `/*`, then Pull)."""
        return self._enumerate(self.uri("*"), wql)

    def instances(self, class_name: str) -> list[Record]:
        return self._enumerate(self.uri(class_name), None)

    def _enumerate(self, uri: str, wql: str | None, batch: int = 50) -> list[Record]:
        body = ET.Element(f"{{{_WSEN}}}Enumerate")
        ET.SubElement(body, f"{{{_W}}}OptimizeEnumeration")
        ET.SubElement(body, f"{{{_W}}}MaxElements").text = str(batch)
        if wql is not None:
            ET.SubElement(body, f"{{{_W}}}Filter", Dialect=WQL).text = wql
        response = self.wsman.enumerate(uri, body)
        found = response.find("wsen:EnumerateResponse", NAMESPACES)
        if found is None:
            raise RuntimeError("Enumerate answered without an EnumerateResponse")
        items = [record(e) for e in found.findall("wsman:Items/*", NAMESPACES)]
        done = found.find("wsman:EndOfSequence", NAMESPACES) is not None
        context = found.findtext("wsen:EnumerationContext", "", NAMESPACES)
        while not done:
            pull = ET.Element(f"{{{_WSEN}}}Pull")
            ET.SubElement(pull, f"{{{_WSEN}}}EnumerationContext").text = context
            ET.SubElement(pull, f"{{{_WSEN}}}MaxElements").text = str(batch)
            answer = self.wsman.pull(uri, pull).find("wsen:PullResponse", NAMESPACES)
            if answer is None:
                raise RuntimeError("Pull answered without a PullResponse")
            items.extend(record(e) for e in answer.findall("wsen:Items/*", NAMESPACES))
            done = answer.find("wsen:EndOfSequence", NAMESPACES) is not None
            context = answer.findtext("wsen:EnumerationContext", context, NAMESPACES)
        return items

    def get(self, class_name: str, **keys: str) -> Record:
        selectors = SelectorSet()
        for name, value in keys.items():
            selectors.add_option(name, value)
        body = self.wsman.get(self.uri(class_name), selector_set=selectors)
        return record(body[0])

    def service_selectors(self) -> SelectorSet:
        service = self.instances(SERVICE)[0]
        selectors = SelectorSet()
        for key in ("CreationClassName", "Name", "SystemCreationClassName", "SystemName"):
            selectors.add_option(key, service[key])
        return selectors

    def invoke(
        self, method: str, params: Iterable[tuple[str, str | ET.Element]], class_name: str = SERVICE
    ) -> ET.Element:
        """Call a method; returns its <Method>_OUTPUT element."""
        uri = self.uri(class_name)
        body = ET.Element(f"{{{uri}}}{method}_INPUT")
        for name, value in params:
            if isinstance(value, ET.Element):
                holder = ET.SubElement(body, f"{{{uri}}}{name}")
                holder.extend(list(value))
            else:
                ET.SubElement(body, f"{{{uri}}}{name}").text = value
        selectors = self.service_selectors() if class_name == SERVICE else None
        envelope = self.wsman.invoke(f"{uri}/{method}", uri, body, selector_set=selectors)
        output = envelope.find(f"s:Body/{{{uri}}}{method}_OUTPUT", NAMESPACES)
        if output is None:
            raise RuntimeError(f"{method} answered without {method}_OUTPUT")
        return output

    def summaries(
        self, codes: Sequence[int], setting_ids: Sequence[str] = ()
    ) -> tuple[int, list[Record]]:
        """GetSummaryInformation: (ReturnValue, one record per VM)."""
        params: list[tuple[str, str | ET.Element]] = [
            ("SettingData", _reference(self.uri("Msvm_VirtualSystemSettingData"), i))
            for i in setting_ids
        ]
        params += [("RequestedInformation", str(code)) for code in codes]
        output = self.invoke("GetSummaryInformation", params)
        uri = self.uri(SERVICE)
        found = [record(e) for e in output.findall(f"{{{uri}}}SummaryInformation")]
        return int(output.findtext(f"{{{uri}}}ReturnValue", "-1")), found

    def modify(
        self, method: str, param: str, instance_texts: Sequence[str]
    ) -> tuple[int, str | None]:
        """ModifyResourceSettings (v2) or ModifyVirtualSystemResources (v1): (ReturnValue,
        the job's InstanceID when a job was started)."""
        output = self.invoke(method, [(param, text) for text in instance_texts])
        uri = self.uri(SERVICE)
        job = output.find(f"{{{uri}}}Job//{{{_W}}}Selector[@Name='InstanceID']")
        return int(
            output.findtext(f"{{{uri}}}ReturnValue", "-1")
        ), None if job is None else job.text


def _reference(class_uri: str, instance_id: str) -> ET.Element:
    """An endpoint reference (a SettingData[] item) to an instance by its InstanceID."""
    wsa = NAMESPACES["wsa"]
    holder = ET.Element("holder")
    ET.SubElement(
        holder, f"{{{wsa}}}Address"
    ).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    params = ET.SubElement(holder, f"{{{wsa}}}ReferenceParameters")
    ET.SubElement(params, f"{{{_W}}}ResourceURI").text = class_uri
    selectors = ET.SubElement(params, f"{{{_W}}}SelectorSet")
    ET.SubElement(selectors, f"{{{_W}}}Selector", Name="InstanceID").text = instance_id
    return holder


def embedded(class_name: str, properties: dict[str, Any]) -> str:
    """A CIM-XML embedded instance (what $obj.GetText(1) gives) from {property: value}."""
    from xml.sax.saxutils import escape, quoteattr

    parts = [f"<INSTANCE CLASSNAME={quoteattr(class_name)}>"]
    for name, value in properties.items():
        if value is None:
            parts.append(f'<PROPERTY NAME={quoteattr(name)} TYPE="string"/>')
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        kind = (
            "boolean"
            if isinstance(value, bool)
            else "uint64"
            if isinstance(value, int)
            else "string"
        )
        parts.append(
            f'<PROPERTY NAME={quoteattr(name)} TYPE="{kind}"><VALUE>{escape(text)}</VALUE></PROPERTY>'
        )
    parts.append("</INSTANCE>")
    return "".join(parts)
