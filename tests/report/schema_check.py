"""A checker for the subset of JSON Schema 2020-12 that reports/*.schema.json use.

Unknown keywords are refused rather than ignored, so the schema cannot silently outgrow it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def errors(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every violation, as 'path: problem'; empty when the instance is valid."""
    found: list[str] = []
    _check(instance, schema, schema, "$", found)
    return found


def _check(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str, found: list[str]
) -> None:
    for keyword, rule in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "$ref":
            assert rule.startswith("#/$defs/"), rule
            _check(value, root["$defs"][rule.removeprefix("#/$defs/")], root, path, found)
        elif keyword == "type":
            kinds = [rule] if isinstance(rule, str) else rule
            if not any(_TYPES[k](value) for k in kinds):
                found.append(f"{path}: {value!r} is not of type {kinds}")
        elif keyword == "enum":
            if value not in rule:
                found.append(f"{path}: {value!r} not in {rule}")
        elif keyword == "const":
            if value != rule or type(value) is not type(rule):
                found.append(f"{path}: {value!r} is not {rule!r}")
        elif keyword == "required":
            if isinstance(value, dict):
                found.extend(f"{path}: missing {k!r}" for k in rule if k not in value)
        elif keyword == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        _check(value[name], sub, root, f"{path}.{name}", found)
        elif keyword == "additionalProperties":
            if isinstance(value, dict):
                extra = [k for k in value if k not in schema.get("properties", {})]
                for name in extra:
                    if rule is False:
                        found.append(f"{path}: unexpected property {name!r}")
                    elif isinstance(rule, dict):
                        _check(value[name], rule, root, f"{path}.{name}", found)
        elif keyword == "items":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    _check(item, rule, root, f"{path}[{index}]", found)
        elif keyword in ("minimum", "maximum"):
            if _TYPES["number"](value):
                bad = value < rule if keyword == "minimum" else value > rule
                if bad:
                    found.append(f"{path}: {value!r} breaks {keyword} {rule}")
        elif keyword in ("minItems", "maxItems"):
            if isinstance(value, list):
                bad = len(value) < rule if keyword == "minItems" else len(value) > rule
                if bad:
                    found.append(f"{path}: {len(value)} items breaks {keyword} {rule}")
        elif keyword == "minLength":
            if isinstance(value, str) and len(value) < rule:
                found.append(f"{path}: {value!r} shorter than {rule}")
        elif keyword == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                found.append(f"{path}: {value!r} does not match {rule}")
        elif keyword == "format":
            assert rule == "date-time", rule
            if isinstance(value, str):
                try:
                    datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    found.append(f"{path}: {value!r} is not a date-time")
        else:
            raise AssertionError(f"schema keyword {keyword!r} at {path} is not supported")
