"""Objects shaped like real Hyper-V output (type names, adapted properties, enums, Int64) and
the mapping between psrpcore values and plain Python used by the emulator's handlers; for
objects written by the hundred (Get-VM), a precompiled `ObjectShape` that writes their CLIXML
directly.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import queue
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from psrpcore import types as pst

# psrpcore's own encoders for strings (the _xHHHH_ escapes), DateTime and TimeSpan, so an
# ObjectShape writes exactly what psrpcore's serializer writes (psrpcore is pinned).
from psrpcore.types._serializer import (
    _serialize_datetime,
    _serialize_duration,
    _serialize_enum_to_string,
    _serialize_string,
)

__all__ = [
    "ObjectShape",
    "Serialized",
    "enum_type",
    "from_ps",
    "int32",
    "int64",
    "make_enum",
    "make_object",
    "to_ps",
    "uint64",
]

_OBJECT = "System.Object"


def int64(value: int) -> pst.PSInt64:
    """An Int64, as Hyper-V sends every byte count (a plain int below 2 GiB would go as Int32)."""
    return pst.PSInt64(value)


def uint64(value: int) -> pst.PSUInt64:
    return pst.PSUInt64(value)


def int32(value: int) -> pst.PSInt:
    return pst.PSInt(value)


@functools.lru_cache(maxsize=256)
def _enum_class(type_name: str, members: tuple[tuple[str, int], ...]) -> type[pst.PSEnumBase]:
    short = type_name.rsplit(".", 1)[-1]
    # The functional Enum API goes through psrpcore's PSEnumMeta, so values become PSInt and the
    # serializer writes <ToString>Name</ToString><I32>n</I32> like a real .NET enum.
    cls = cast("type[pst.PSEnumBase]", pst.PSEnumBase(short, dict(members)))  # type: ignore[arg-type]
    # rehydrate=False: these classes must not hijack psrpcore's deserialization of client input.
    return pst.PSType([type_name], rehydrate=False)(cls)


def enum_type(type_name: str, members: Mapping[str, int]) -> type[pst.PSEnumBase]:
    """A .NET enum type (e.g. Microsoft.HyperV.PowerShell.VMState) with the given members.

    Classes are cached, so calling this again with the same arguments returns the same class.
    """
    if not members:
        raise ValueError(f"enum {type_name}: at least one member is required")
    for name in members:
        if not name.isidentifier():
            raise ValueError(f"enum {type_name}: member name {name!r} is not an identifier")
    return _enum_class(type_name, tuple(sorted(members.items(), key=lambda kv: kv[1])))


def make_enum(type_name: str, name: str, value: int) -> pst.PSEnumBase:
    """One enum value: prints as `name` on the client and carries the Int32 `value`.

    pypsrp shows it as an object whose str() is `name` and whose property_sets[0] is `value`.
    """
    return enum_type(type_name, {name: value})[name]


def make_object(
    type_names: Sequence[str],
    props: Mapping[str, Any],
    to_string: str | None = None,
    *,
    extended: Mapping[str, Any] | None = None,
) -> pst.PSObject:
    """A .NET-looking object: `props` become adapted properties (<Props>), as real cmdlets send.

    `type_names` lists the type and its bases, most derived first; System.Object is appended
    when missing. Values go through `to_ps` (float -> Double); pass `int64(n)` for Int64
    properties, `make_enum(...)` for enums, `make_object(...)` for nested objects. A real host
    serializes nested objects only to depth 1 by default (deeper ones arrive as strings), so
    nest only what the real cmdlet's type data serializes deeper. `extended` adds note
    properties (<MS>), which pypsrp shows in `extended_properties`.
    """
    if not type_names:
        raise ValueError("make_object needs at least one type name")
    obj = pst.PSObject()
    names = list(type_names)
    if names[-1] != _OBJECT:
        names.append(_OBJECT)
    obj.PSObject.type_names = names
    for name, value in props.items():
        obj.PSObject.adapted_properties.append(pst.PSNoteProperty(name, to_ps(value)))
    for name, value in (extended or {}).items():
        obj.PSObject.extended_properties.append(pst.PSNoteProperty(name, to_ps(value)))
    if to_string is not None:
        obj.PSObject.to_string = to_string
    return obj


_PASS_THROUGH = (
    str,
    bool,
    int,
    bytes,
    uuid.UUID,
    datetime.datetime,
    datetime.timedelta,
    decimal.Decimal,
    enum.Enum,
)


def to_ps(value: Any) -> Any:
    """A value psrpcore serializes the way PowerShell would send it.

    Python floats become Double (psrpcore would pick Single); dicts become Hashtables and
    lists/tuples ArrayLists, converted recursively. Raises TypeError for anything else that is
    not already a psrpcore object.
    """
    if value is None or isinstance(value, pst.PSObject):
        return value
    if isinstance(value, float):
        return pst.PSDouble(value)
    if isinstance(value, _PASS_THROUGH):
        return value
    if isinstance(value, Mapping):
        return {to_ps(k): to_ps(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_ps(v) for v in value]
    raise TypeError(
        f"cannot send a {type(value).__name__} to a PowerShell client: use str, int, float, "
        "bool, None, bytes, UUID, datetime, timedelta, list, dict or a psobjects helper"
    )


def from_ps(value: Any) -> Any:
    """Plain Python for a value psrpcore received: int, float, str, bool, None, list, dict, ...

    Hashtables become dicts, lists become lists, other objects become a dict of their
    properties (adapted and extended, by name). UUID, datetime, timedelta, bytes and Decimal
    stay as such; a SecureString stays a psrpcore PSSecureString so it is never printed by
    accident.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, pst.PSSecureString):
        return value
    if isinstance(value, enum.Enum):
        return int(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int)
    if isinstance(value, (datetime.datetime, datetime.timedelta)):
        return value
    if isinstance(value, dict):
        return {from_ps(k): from_ps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_ps(v) for v in value]
    if isinstance(value, queue.Queue):
        items: list[Any] = []
        while not value.empty():
            items.append(from_ps(value.get_nowait()))
        return items
    if isinstance(value, pst.PSObject):
        meta = value.PSObject
        props = [*meta.adapted_properties, *meta.extended_properties]
        if props:
            return {p.name: from_ps(p.get_value(value)) for p in props}
        return meta.to_string if meta.to_string is not None else str(value)
    return value


# -- precompiled shapes --------------------------------------------------------------------


@dataclass(frozen=True)
class Serialized:
    """One object already written as CLIXML (a complete <Obj>, RefIds numbered from 0), sent
    to the client as it is."""

    clixml: bytes


def _escape(text: str) -> str:
    """Element text as ElementTree writes it."""
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def _text(value: str) -> str:
    """A string value as psrpcore writes it: its _xHHHH_ escapes, then ElementTree's."""
    return _escape(_serialize_string(value))


def _attribute(value: str) -> str:
    """A property name (N="...") as psrpcore and ElementTree write it."""
    text = _serialize_string(value).replace("&", "&amp;").replace("<", "&lt;")
    text = text.replace(">", "&gt;").replace('"', "&quot;").replace("\r", "&#13;")
    return text.replace("\n", "&#10;").replace("\t", "&#09;")


class _Refs:
    """RefIds of one message: objects in order, type-name lists by their first name."""

    def __init__(self, first_type: str) -> None:
        self.objects = 1
        self.types = [first_type]
        self.enums: dict[int, int] = {}  # by id(), as psrpcore refers to an enum seen before

    def next_object(self) -> int:
        self.objects += 1
        return self.objects - 1

    def type_names(self, names: Sequence[str]) -> str:
        if names[0] in self.types:
            return f'<TNRef RefId="{self.types.index(names[0])}" />'
        self.types.append(names[0])
        return f'<TN RefId="{len(self.types) - 1}">{_type_list(names)}</TN>'


_ARRAY_LIST = ("System.Collections.ArrayList", _OBJECT)


def _type_list(names: Sequence[str]) -> str:
    return "".join(f"<T>{_escape(n)}</T>" for n in names)


def _to_string(text: str | None) -> str:
    # psrpcore writes <ToString> only for a non-empty text, and without the _xHHHH_ escapes
    return f"<ToString>{_escape(text)}</ToString>" if text else ""


_INT32_MAX = 2**31 - 1


def _element(tag: str, attrs: str, text: str) -> str:
    return f"<{tag}{attrs}>{text}</{tag}>" if text else f"<{tag}{attrs} />"


# What an enum value writes besides its RefId and name, by id() (the entry holds the value, so
# the id stays its own); psrpcore's enums are slow to read (their PSObject machinery).
_ENUM_PARTS: dict[int, tuple[pst.PSEnumBase, str, tuple[str, ...], str]] = {}


def _enum_parts(value: pst.PSEnumBase) -> tuple[str, tuple[str, ...], str]:
    cached = _ENUM_PARTS.get(id(value))
    if cached is None:
        inner = f"<I32>{int(value.value)}</I32>"
        names = tuple(value.PSObject.type_names)
        cached = (value, inner, names, _to_string(_serialize_enum_to_string(value)))
        _ENUM_PARTS[id(value)] = cached
    return cached[1:]


def _render(value: Any, attrs: str, refs: _Refs) -> str:
    """One value as psrpcore serializes it, `attrs` being its attributes (e.g. ' N="Name"').

    Dispatch is on type(), not isinstance(): psrpcore values answer isinstance slowly.
    """
    kind = type(value)
    if kind is str:
        return _element("S", attrs, _text(value))
    if kind is pst.PSInt64:
        return f"<I64{attrs}>{int(value)}</I64>"
    if value is None:
        return f"<Nil{attrs} />"
    if kind is bool:
        return f"<B{attrs}>{'true' if value else 'false'}</B>"
    if kind is int:
        tag = "I64" if value > _INT32_MAX else "I32"
        return f"<{tag}{attrs}>{value}</{tag}>"
    if issubclass(kind, pst.PSEnumBase):
        seen = refs.enums.get(id(value))
        if seen is not None:
            return f'<Ref RefId="{seen}"{attrs} />'
        refs.enums[id(value)] = refs.objects
        inner, names, to_string = _enum_parts(value)
        obj = f'<Obj RefId="{refs.next_object()}"{attrs}>'
        return f"{obj}{inner}{refs.type_names(names)}{to_string}</Obj>"
    if kind is uuid.UUID:
        return f"<G{attrs}>{value}</G>"
    if kind is datetime.datetime:
        return f"<DT{attrs}>{_serialize_datetime(value)}</DT>"
    if kind is datetime.timedelta:
        return f"<TS{attrs}>{_serialize_duration(value)}</TS>"
    if type(value) is list:
        obj = f'<Obj RefId="{refs.next_object()}"{attrs}>{refs.type_names(_ARRAY_LIST)}'
        items = "".join(_render(item, "", refs) for item in value)
        return f"{obj}{_element('LST', '', items)}</Obj>"
    raise TypeError(
        f"an ObjectShape cannot write a {type(value).__name__}: use make_object for this object"
    )


class ObjectShape:
    """A .NET type written many times: its type names, and each property name the first time
    it is seen, are laid out once, so an object costs one pass over its values instead of
    building a psrpcore PSObject and serializing it (Get-VM of many VMs,
    benchmarks/psrp_roundtrip.py).

    `render(props, to_string)` writes what `make_object(type_names, props, to_string)` would
    send, byte for byte (tests/emulator hold it to that); values may be None, bool, str, int
    or `int64(...)`, UUID, datetime, timedelta, `make_enum(...)` and lists of those.
    """

    def __init__(self, type_names: Sequence[str]) -> None:
        if not type_names:
            raise ValueError("an ObjectShape needs at least one type name")
        names = list(type_names)
        if names[-1] != _OBJECT:
            names.append(_OBJECT)
        self.type_names = tuple(names)
        self._head = f'<Obj RefId="0"><TN RefId="0">{_type_list(names)}</TN>'
        self._attrs: dict[str, str] = {}

    def render(self, props: Mapping[str, Any], to_string: str | None = None) -> Serialized:
        """The object with these adapted properties (in their order)."""
        refs = _Refs(self.type_names[0])
        attrs = self._attrs
        parts = [self._head, "<Props>" if props else ""]
        for name, value in props.items():
            attr = attrs.get(name)
            if attr is None:
                attr = attrs.setdefault(name, f' N="{_attribute(name)}"')
            parts.append(_render(value, attr, refs))
        parts.append(f"{'</Props>' if props else ''}{_to_string(to_string)}</Obj>")
        return Serialized("".join(parts).encode())
