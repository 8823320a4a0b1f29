"""Just enough YAML to read the example pipelines in docs/ci/ (PyYAML is no dependency of
the harness): block mappings and sequences, `|` block scalars, plain and double-quoted
scalars, flow lists of scalars and `{}`. Full-line comments only. Anything else raises."""

from __future__ import annotations

import json
from typing import Any


def load(text: str) -> Any:
    lines = [
        (len(line) - len(line.lstrip(" ")), line.strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    value, end = _block(lines, 0, lines[0][0] if lines else 0)
    if end != len(lines):
        raise ValueError(f"unparsed from line {lines[end][1]!r}")
    return value


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            rest = lines[i][1][1:].strip()
            if not rest:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            elif _is_key(rest):
                # "- key: value" starts a mapping whose other keys sit at indent + 2
                lines[i] = (indent + 2, rest)
                value, i = _block(lines, i, indent + 2)
            else:
                value, i = _scalar(rest), i + 1
            items.append(value)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        key, _, rest = lines[i][1].partition(":")
        if not _is_key(lines[i][1]):
            raise ValueError(f"not a mapping entry: {lines[i][1]!r}")
        rest = rest.strip()
        key = key.strip().strip('"')
        if rest == "|":
            block: list[str] = []
            i += 1
            while i < len(lines) and lines[i][0] > indent:
                block.append(lines[i][1])
                i += 1
            mapping[key] = "\n".join(block) + "\n"
        elif rest:
            mapping[key], i = _scalar(rest), i + 1
        elif i + 1 < len(lines) and lines[i + 1][0] > indent:
            mapping[key], i = _block(lines, i + 1, lines[i + 1][0])
        elif i + 1 < len(lines) and lines[i + 1][0] == indent and lines[i + 1][1].startswith("-"):
            mapping[key], i = _block(lines, i + 1, indent)
        else:
            mapping[key], i = None, i + 1
    return mapping, i


def _is_key(text: str) -> bool:
    head, colon, rest = text.partition(":")
    return bool(colon) and (not rest or rest.startswith(" ")) and '"' not in head


def _scalar(text: str) -> Any:
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("["):
        inner = text[1:-1].strip()
        return [_scalar(part.strip()) for part in inner.split(",")] if inner else []
    if text == "{}":
        return {}
    if text.startswith(("{", "'", "&", "*", "!")):
        raise ValueError(f"unsupported YAML: {text!r}")
    return text
