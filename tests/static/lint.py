"""Checks of a script's text that catch what a real host fails on (issue 23), written over the
tree-sitter-powershell tree so they apply to any text: the shipped scripts (test_scripts.py)
and mutated copies of them (test_mutations.py). Each returns its findings, [] when clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import tree_sitter
import tree_sitter_powershell as tsp

from harness.hyperv.signatures import missing_before_2016
from tests.static.cim_schema import CLASSES

Node = tree_sitter.Node
PARSER = tree_sitter.Parser(tree_sitter.Language(tsp.language()))
_CLASS_SOURCE = re.compile(
    r"^(?:Get-DmhPerf\s+'(\w+)'|Get-CimInstance\s+-ClassName\s+'?(\w+)|Get-WmiObject\s+-Class\s+'?(\w+))",
    re.IGNORECASE,
)
_READ_SHARE_ONLY = frozenset({"openread", "readallbytes", "readalltext", "readalllines"})


def parse(source: bytes) -> Node:
    return PARSER.parse(source).root_node


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(source: bytes, node: Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8")


def _ancestors(node: Node) -> Iterator[Node]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _assignments(source: bytes, root: Node) -> Iterator[tuple[str, str]]:
    """(variable, right-hand text) of each `$v = ...`."""
    for node in walk(root):
        if node.type == "assignment_expression" and len(node.children) >= 3:
            target = text(source, node.children[0]).strip()
            if re.fullmatch(r"\$\w+", target):
                yield target[1:].casefold(), text(source, node.children[-1]).strip()


def _loop_values(source: bytes, access: Node, variable: str) -> list[str]:
    """The string literals a `foreach ($variable in 'A', 'B')` around `access` iterates."""
    for outer in _ancestors(access):
        if outer.type != "foreach_statement":
            continue
        loop_var = next((c for c in outer.children if c.type == "variable"), None)
        if loop_var is None or text(source, loop_var).casefold() != variable.casefold():
            continue
        body_start = next(c.start_byte for c in outer.children if c.type == "statement_block")
        return [
            text(source, n).strip("'\"")
            for n in walk(outer)
            if n.type == "string_literal" and n.end_byte <= body_start
        ]
    return []


def cim_property_reads(source: bytes) -> list[str]:
    """Every property read from a variable holding a CIM instance (Get-DmhPerf, Get-CimInstance,
    Get-WmiObject) must exist in that class (cim_schema.CLASSES)."""
    root = parse(source)
    classes: dict[str, str] = {}
    for variable, value in _assignments(source, root):
        match = _CLASS_SOURCE.match(value)
        if match:
            classes[variable] = next(g for g in match.groups() if g)
    found = []
    for node in walk(root):
        if node.type != "member_access" or len(node.children) < 2:
            continue
        owner, member = node.children[0], node.children[-1]
        cls = classes.get(text(source, owner).lstrip("$").casefold())
        if owner.type != "variable" or cls is None:
            continue
        if cls not in CLASSES:
            found.append(f"{cls}: no schema for this class (add it to cim_schema with its origin)")
            continue
        name = text(source, member)
        names = _loop_values(source, node, name) if name.startswith("$") else [name]
        known = {p.casefold() for p in CLASSES[cls]}
        found += [f"{cls}.{n}" for n in names if n.casefold() not in known]
    return found


def first_handle_read(source: bytes) -> list[str]:
    """A process's `.Handle` read outside a try: it throws once the program has exited."""
    root = parse(source)
    return [
        text(source, node)
        for node in walk(root)
        if node.type == "member_access"
        and text(source, node.children[-1]).casefold() == "handle"
        and not any(a.type == "try_statement" for a in _ancestors(node))
    ]


def file_share_modes(source: bytes) -> list[str]:
    """Files another process may hold open for writing (redirect files, files a child
    inherited) are read with ReadWrite sharing: no [IO.File] helper that asks FileShare.Read,
    and [IO.File]::Open with its share argument given as ReadWrite."""
    root = parse(source)
    found = []
    for node in walk(root):
        if node.type != "invokation_expression":
            continue
        call = text(source, node)
        if not call.casefold().startswith("[io.file]::"):
            continue
        method = call.split("::", 1)[1].split("(", 1)[0].casefold()
        if method in _READ_SHARE_ONLY:
            found.append(call)
        elif method == "open":
            args = call.split("(", 1)[1].rsplit(")", 1)[0].split(",")
            mode = args[2].strip().strip("'\"").casefold() if len(args) > 2 else ""
            share = args[3].strip().strip("'\"").casefold() if len(args) > 3 else ""
            if mode == "read" and share != "readwrite":
                found.append(call)
    return found


def unbounded_payloads(source: bytes) -> list[str]:
    """A payload parameter a script decodes ([Convert]::FromBase64String) comes in chunks: the
    same switch clause (operation) takes an Offset and seeks to it. One parameter over 10 MB
    is refused by the endpoint (real-host facts, "10 MB per received object")."""
    root = parse(source)
    found = []
    for node in walk(root):
        if node.type != "invokation_expression" or "frombase64string" not in (
            text(source, node).casefold()
        ):
            continue
        clause = next((a for a in _ancestors(node) if a.type == "switch_clause"), root)
        body = text(source, clause)
        if not (re.search(r"\$Arguments\.Offset", body) and ".Seek(" in body):
            found.append(f"{text(source, node)} without an Offset (chunks)")
    return found


def perf_instances(source: bytes) -> list[str]:
    """A VM's perf instance is named after it with ( ) # / \\ replaced: looked up by the
    escaped name, never by `$vm.Name` (real-host facts, "Perf-counter instance names")."""
    script = source.decode("utf-8")
    return re.findall(r"Get-DmhPerf\s+'\w*HyperVDynamicMemoryVM'\s+\$\w+\.Name\b", script)


def id_parameters(source: bytes) -> list[str]:
    """An -Id/-VMId argument reads an id (`$vm.Id`, `$id`), never a name."""
    root = parse(source)
    found = []
    for node in walk(root):
        if node.type != "command_parameter":
            continue
        name = text(source, node).lstrip("-").rstrip(":").casefold()
        if name not in ("vmid", "id"):
            continue
        value = node.next_named_sibling
        while value is not None and value.type == "command_argument_sep":
            value = value.next_named_sibling
        shown = "" if value is None else text(source, value)
        if not re.search(r"id\b", shown, re.IGNORECASE):
            found.append(f"-{name} {shown}")
    return found


def host_versions(source: bytes, calls: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """The host versions a script runs on, from the parameters its commands use: '2012R2'
    only when none of them came with 2016."""
    if any(missing_before_2016(name, set(params)) for name, params in calls):
        return ["2016", "2019", "2022"]
    return ["2012R2", "2016", "2019", "2022"]


CHECKS = {
    "cim property": cim_property_reads,
    "first Handle read": first_handle_read,
    "file share mode": file_share_modes,
    "unbounded payload": unbounded_payloads,
    "id parameter": id_parameters,
    "perf instance": perf_instances,
}


def findings(source: bytes) -> dict[str, list[str]]:
    return {name: found for name, check in CHECKS.items() if (found := check(source))}
