"""Parameter binding as PowerShell does it before a cmdlet runs: by name (case-insensitive,
with aliases) or by position; failures are PowerShell's ParameterBindingException shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.emulator.errors import (
    MissingParameterError,
    NamedParameterError,
    ParameterConversionError,
    PositionalParameterError,
)
from harness.emulator.psrp import Command


@dataclass(frozen=True)
class Params:
    """A command's parameters bound by name (lower-case keys)."""

    values: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name.lower(), default)

    def has(self, name: str) -> bool:
        return name.lower() in self.values

    def switch(self, name: str) -> bool:
        return bool(self.values.get(name.lower(), False))

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name.lower())
        if value is None:
            if required:
                raise MissingParameterError(name)
            return None
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else value
        return str(value)

    def required(self, name: str) -> str:
        """A mandatory string parameter."""
        return self.text(name, required=True) or ""

    def int64(self, name: str) -> int | None:
        """An integer parameter (byte counts, Buffer, Priority, process ids), None if absent."""
        value = self.values.get(name.lower())
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterConversionError(name, value, "System.Int64")
        return int(value)


def bind(command: Command, spec: Sequence[str], aliases: Mapping[str, str] | None = None) -> Params:
    """Bind named and positional parameters to `spec` (names in positional order)."""
    known = {name.lower(): name for name in spec}
    alias = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
    values: dict[str, Any] = {}
    position = 0
    for name, value in command.parameters:
        if name is None:
            if position >= len(spec):
                raise PositionalParameterError(value)
            values[spec[position].lower()] = value
            position += 1
            continue
        key = name.lstrip("-").lower()
        key = alias.get(key, key)
        if key not in known:
            raise NamedParameterError(name)
        values[key] = value
    return Params(values)


def object_id(obj: Any) -> Any:
    """The Id of an object the client sent back (a VM or a checkpoint it received)."""
    if isinstance(obj, Mapping):
        return obj.get("Id")
    return getattr(obj, "id", None)
