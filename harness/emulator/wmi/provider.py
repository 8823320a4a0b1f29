"""The Hyper-V WMI provider over WS-Management, on the PSRP endpoint's URL and credentials
(as a real host serves both through WinRM): Get, Enumerate/Pull/Release (plain, WQL,
SelectorFilter; objects, EPRs or both) and Invoke of the management service's methods.

Resource URIs: http://schemas.microsoft.com/wbem/wsman/1/wmi/<namespace>/<Class>, and
<namespace>/* with a WQL filter (reference "On the wire").
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from harness.emulator import wsman
from harness.emulator.host import EmulatedHost
from harness.emulator.wmi import classes, faults, methods
from harness.emulator.wmi.cim import WMI_URI, Instance, epr_xml, instance_xml
from harness.emulator.wmi.wql import Associators, WqlError, parse, parse_associators

log = logging.getLogger(__name__)

WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
SELECTOR_DIALECT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter"
ACTION_RELEASE = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release"
NS_ENUM = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
_W = "{http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd}"
_N = "{" + NS_ENUM + "}"
_CONTEXT_TTL = 600.0  # seconds an unfinished enumeration is kept
_MAX_CONTEXTS = 512


class WmiAccess(enum.Enum):
    """What a user may do in the Hyper-V namespaces (WMI namespace security)."""

    FULL = "full"  # Hyper-V Administrators: read and execute methods
    READ = "read"  # Enable Account + Remote Enable: read, but no Execute Methods
    NONE = "none"  # not granted the namespace at all


@dataclass
class _Enumeration:
    items: deque[str]
    expires: float


class WmiProvider:
    """Answers WS-Man requests on WMI resource URIs from an EmulatedHost."""

    def __init__(self, host: EmulatedHost, access: Mapping[str, WmiAccess] | None = None) -> None:
        self.host = host
        self.jobs = methods.Jobs()
        self._access = dict(access or {})
        self._contexts: OrderedDict[str, _Enumeration] = OrderedDict()
        self._lock = threading.Lock()

    def grant(self, user: str, access: WmiAccess | str) -> None:
        """Set a user's rights on the Hyper-V namespaces (default: FULL for every user the
        endpoint authenticates, as for a Hyper-V administrator)."""
        self._access[user] = WmiAccess(access)

    # -- the hook -----------------------------------------------------------------------
    def serves(self, resource_uri: str) -> bool:
        return resource_uri.startswith(WMI_URI)

    def answer(self, request: wsman.Request, *, user: str, machine: str) -> tuple[int, bytes]:
        """(HTTP status, envelope) for one request on a WMI resource URI."""
        try:
            body = self._dispatch(request, user)
        except faults.WmiFault as fault:
            log.debug("WMI fault for %s: %s", request.action.rsplit("/", 1)[-1], fault)
            return 500, faults.fault_envelope(fault, request.message_id, machine)
        return 200, wsman.envelope(wsman.response_action(request.action), request.message_id, body)

    # -- dispatch ---------------------------------------------------------------------
    def _dispatch(self, req: wsman.Request, user: str) -> str:
        namespace, class_name = self._resolve(req.resource_uri)
        access = self._access.get(user, WmiAccess.FULL)
        action = req.action
        if access is WmiAccess.NONE:
            raise faults.access_denied(
                f"user {user!r} has no access to namespace {namespace}", _operation(action)
            )
        if action == wsman.ACTION_ENUMERATE:
            return self._enumerate(req, namespace, class_name)
        if action == wsman.ACTION_PULL:
            return self._pull(req)
        if action == ACTION_RELEASE:
            self._release(req)
            return ""
        if action == wsman.ACTION_GET:
            if class_name == "*":
                raise faults.bad_selectors("Get needs a class resource URI, not /*")
            return instance_xml(self._one(namespace, class_name, req.selectors))
        if class_name != "*" and action.startswith(req.resource_uri.rstrip("/") + "/"):
            if access is not WmiAccess.FULL:
                raise faults.access_denied(
                    f"user {user!r} may read namespace {namespace} but not execute methods",
                    "ExecMethod",
                )
            return self._invoke(req, namespace, class_name, action.rsplit("/", 1)[-1])
        raise faults.unsupported_action(
            f"action {action!r} is not served for WMI resources (Get, Enumerate, Pull, Release"
            " and Invoke of class methods are)"
        )

    def _resolve(self, uri: str) -> tuple[str, str]:
        """(namespace, class or '*') of a WMI resource URI; faults for what the host lacks."""
        path = uri[len(WMI_URI) :].strip("/")
        namespace, _, class_name = path.rpartition("/")
        if namespace not in classes.namespaces(self.host.version):
            raise faults.not_found(
                f"namespace {namespace or path!r} does not exist on a Hyper-V "
                f"{self.host.version.value} host (it has {', '.join(classes.namespaces(self.host.version))})"
            )
        if class_name == "*":
            return namespace, class_name
        canonical = classes.canonical_class(namespace, class_name)
        if canonical is None:
            raise faults.not_found(f"class {class_name!r} does not exist in namespace {namespace}")
        return namespace, canonical

    def _instances(self, namespace: str, class_name: str) -> list[Instance]:
        if class_name == "Msvm_ConcreteJob":
            return self.jobs.instances(namespace)
        snap = classes.Snapshot.take(self.host, with_counters=classes.needs_counters(class_name))
        return classes.build(snap, namespace, class_name)

    def _one(self, namespace: str, class_name: str, selectors: Mapping[str, str]) -> Instance:
        keys = dict(selectors)
        cim_ns = keys.pop("__cimnamespace", None)
        if cim_ns is not None and cim_ns.strip("/").replace("\\", "/") != namespace:
            raise faults.bad_selectors(f"__cimnamespace {cim_ns!r} is not {namespace}")
        instances = self._instances(namespace, class_name)
        key_names = instances[0].keys if instances else ()
        for name in keys:
            if key_names and name.casefold() not in {k.casefold() for k in key_names}:
                raise faults.bad_selectors(
                    f"{name!r} is not a key of {class_name} (keys: {', '.join(key_names)})"
                )
        if not keys:
            raise faults.bad_selectors(
                f"{class_name} needs its key selectors ({', '.join(key_names) or 'none known'})",
                missing=True,
            )
        found = [i for i in instances if i.has_keys(keys)]
        if not found:
            shown = ", ".join(f"{k}={v}" for k, v in keys.items())
            raise faults.not_found(f"no {class_name} instance with {shown}")
        if len(found) > 1:
            raise faults.bad_selectors(
                f"the selectors name {len(found)} {class_name} instances; give every key "
                f"({', '.join(key_names)})",
                missing=True,
            )
        return found[0]

    # -- enumeration --------------------------------------------------------------------
    def _enumerate(self, req: wsman.Request, namespace: str, class_name: str) -> str:
        enum_el = req.body.find(_N + "Enumerate")
        if enum_el is None:
            raise faults.invalid_parameter("Enumerate has no wsen:Enumerate body", "ExecQuery")
        filter_el = enum_el.find(_W + "Filter")
        if filter_el is None:
            filter_el = enum_el.find(_N + "Filter")
        properties: tuple[str, ...] | None = None
        if filter_el is None:
            if class_name == "*":
                raise faults.bad_filter(
                    f"{req.resource_uri} enumerates a namespace: it needs a WQL filter"
                )
            instances = self._instances(namespace, class_name)
        else:
            dialect = filter_el.get("Dialect", WQL_DIALECT)
            if dialect == WQL_DIALECT:
                instances, properties = self._wql(namespace, class_name, filter_el.text or "")
            elif dialect == SELECTOR_DIALECT and class_name != "*":
                wanted = {
                    s.get("Name", ""): (s.text or "").strip()
                    for s in filter_el.iter(_W + "Selector")
                }
                instances = [
                    i for i in self._instances(namespace, class_name) if i.has_keys(wanted)
                ]
            else:
                raise faults.bad_dialect(dialect)
        mode = (enum_el.findtext(_W + "EnumerationMode") or "").strip()
        items = deque(_item(i, mode, properties) for i in instances)
        optimize = enum_el.find(_W + "OptimizeEnumeration") is not None
        max_elements = _count(enum_el.findtext(_W + "MaxElements"), default=20)
        context = "uuid:" + str(uuid.uuid4()).upper()
        parts = [f'<n:EnumerateResponse xmlns:n="{NS_ENUM}">']
        batch = _take(items, max_elements) if optimize else []
        if items:
            self._keep(context, items)
        parts.append(f"<n:EnumerationContext>{context}</n:EnumerationContext>")
        if optimize:
            parts.append(f"<w:Items>{''.join(batch)}</w:Items>")
            if not items:
                parts.append("<w:EndOfSequence/>")
        elif not items:
            self._keep(context, items)  # an empty result still needs one Pull to end
        parts.append("</n:EnumerateResponse>")
        return "".join(parts)

    def _wql(
        self, namespace: str, class_name: str, text: str
    ) -> tuple[list[Instance], tuple[str, ...] | None]:
        if class_name != "*":
            raise faults.bad_filter(
                f"a WQL filter needs the resource URI {WMI_URI}{namespace}/*, not a class URI"
            )
        try:
            assoc = parse_associators(text)
            if assoc is not None:
                return self._associators(namespace, assoc), None
            query = parse(text)
        except WqlError as exc:
            raise faults.bad_filter(str(exc)) from None
        canonical = classes.canonical_class(namespace, query.class_name)
        if canonical is None:
            raise faults.bad_filter(
                f"class {query.class_name!r} does not exist in namespace {namespace}"
            )
        found = [i for i in self._instances(namespace, canonical) if query.matches(i.properties)]
        return found, query.properties

    def _associators(self, namespace: str, assoc: Associators) -> list[Instance]:
        """ASSOCIATORS OF {source} [WHERE ResultClass/AssocClass]: the instances the source
        is linked to (classes.associated), in class order; an unknown source is WMI's
        not-found fault."""
        source_class = classes.canonical_class(namespace, assoc.source_class)
        if source_class is None:
            raise faults.bad_filter(
                f"class {assoc.source_class!r} does not exist in namespace {namespace}"
            )
        source = self._one(namespace, source_class, assoc.keys)
        wanted = None
        if assoc.result_class is not None:
            wanted = classes.canonical_class(namespace, assoc.result_class)
            if wanted is None:
                raise faults.bad_filter(
                    f"class {assoc.result_class!r} does not exist in namespace {namespace}"
                )
        found = []
        for class_name in classes.class_names(namespace):
            if (wanted and class_name != wanted) or class_name == "Msvm_ConcreteJob":
                continue
            for instance in self._instances(namespace, class_name):
                link = classes.associated(source, instance)
                if link and (
                    assoc.assoc_class is None or link.casefold() == assoc.assoc_class.casefold()
                ):
                    found.append(instance)
        return found

    def _keep(self, context: str, items: deque[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, e in self._contexts.items() if e.expires < now]:
                del self._contexts[key]
            self._contexts[context] = _Enumeration(items, now + _CONTEXT_TTL)
            while len(self._contexts) > _MAX_CONTEXTS:
                self._contexts.popitem(last=False)

    def _pull(self, req: wsman.Request) -> str:
        pull = req.body.find(_N + "Pull")
        context = (
            (pull.findtext(_N + "EnumerationContext") or "").strip() if pull is not None else ""
        )
        with self._lock:
            entry = self._contexts.get(context)
            if entry is None:
                raise faults.bad_context(context)
            max_elements = _count(
                pull.findtext(_N + "MaxElements") if pull is not None else None, 1
            )
            batch = _take(entry.items, max_elements)
            done = not entry.items
            if done:
                del self._contexts[context]
            else:
                entry.expires = time.monotonic() + _CONTEXT_TTL
        parts = [f'<n:PullResponse xmlns:n="{NS_ENUM}">']
        if not done:
            parts.append(f"<n:EnumerationContext>{escape(context)}</n:EnumerationContext>")
        parts.append(f"<n:Items>{''.join(batch)}</n:Items>")
        if done:
            parts.append("<n:EndOfSequence/>")
        parts.append("</n:PullResponse>")
        return "".join(parts)

    def _release(self, req: wsman.Request) -> None:
        context = (req.body.findtext(f"{_N}Release/{_N}EnumerationContext") or "").strip()
        with self._lock:
            if self._contexts.pop(context, None) is None:
                raise faults.bad_context(context)

    # -- methods ------------------------------------------------------------------------
    def _invoke(self, req: wsman.Request, namespace: str, class_name: str, method: str) -> str:
        service = "Msvm_VirtualSystemManagementService"
        v1 = namespace == classes.V1
        known = {
            "GetSummaryInformation",
            "ModifyVirtualSystemResources" if v1 else "ModifyResourceSettings",
        }
        if class_name != service or method not in known:
            raise faults.not_found(
                f"method {method!r} of {class_name} is not in namespace {namespace} (emulated: "
                f"{service}.{', '.join(sorted(known))})",
                "ExecMethod",
            )
        self._one(namespace, class_name, req.selectors)
        uri = req.resource_uri.rstrip("/")
        body = req.body.find(f"{{{uri}}}{method}_INPUT")
        if body is None:
            raise faults.invalid_parameter(
                f"the body has no p:{method}_INPUT element", "ExecMethod"
            )
        if method == "GetSummaryInformation":
            return self._summary(body, uri, namespace)
        texts = [
            (n.text or "")
            for n in body.iterfind(
                f"{{{uri}}}{'ResourceSettingData' if v1 else 'ResourceSettings'}"
            )
        ]
        outcome = methods.modify_memory(self.host, self.jobs, namespace, texts)
        if outcome.detail:
            log.debug("%s refused (%d): %s", method, outcome.code, outcome.detail)
        code = methods.V1_CODES[outcome.code] if v1 else outcome.code
        parts = [f'<p:{method}_OUTPUT xmlns:p="{uri}">']
        if outcome.job is not None:
            parts.append(epr_xml(outcome.job, "p:Job"))
        if not v1:
            parts.extend(epr_xml(i, "p:ResultingResourceSettings") for i in outcome.resulting)
        parts.append(f"<p:ReturnValue>{code}</p:ReturnValue></p:{method}_OUTPUT>")
        return "".join(parts)

    def _summary(self, body: ET.Element, uri: str, namespace: str) -> str:
        try:
            codes = methods.requested_codes(body, uri)
            ids = methods.setting_data_ids(body, uri)
        except ValueError as exc:
            raise faults.invalid_parameter(str(exc), "ExecMethod") from None
        code, found = methods.summary_information(
            self.host, namespace, ids, codes or sorted(classes.SUMMARY_CODES)
        )
        parts = [f'<p:GetSummaryInformation_OUTPUT xmlns:p="{uri}">']
        for inst, wanted in found:
            parts.append(instance_xml(inst, wanted, element="SummaryInformation", outer="p"))
        parts.append(f"<p:ReturnValue>{code}</p:ReturnValue></p:GetSummaryInformation_OUTPUT>")
        return "".join(parts)


def _item(instance: Instance, mode: str, properties: Sequence[str] | None) -> str:
    if mode == "EnumerateEPR":
        return epr_xml(instance)
    if mode == "EnumerateObjectAndEPR":
        return f"<w:Item>{instance_xml(instance, properties)}{epr_xml(instance)}</w:Item>"
    return instance_xml(instance, properties)


def _take(items: deque[str], count: int) -> list[str]:
    return [items.popleft() for _ in range(min(count, len(items)))]


def _count(text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise faults.invalid_parameter(
            f"MaxElements {text!r} is not a number", "ExecQuery"
        ) from None
    if value < 1:
        raise faults.invalid_parameter(f"MaxElements {value} must be at least 1", "ExecQuery")
    return value


def _operation(action: str) -> str:
    return {wsman.ACTION_GET: "GetObject", wsman.ACTION_ENUMERATE: "ExecQuery"}.get(
        action, "ExecMethod"
    )
