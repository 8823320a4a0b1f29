"""Objects shaped like real Hyper-V output (type names, adapted properties, enums, Int64) and
the mapping between psrpcore values and plain Python used by the emulator's handlers.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import queue
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from psrpcore import types as pst

__all__ = [
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
