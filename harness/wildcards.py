"""PowerShell wildcard patterns (the `-like` operator and -Name parameters): `*`, `?`, `[set]`,
`[a-z]`, with a backtick escaping the next character; case-insensitive, as PowerShell's.

Pure and shared: the client (which must send a VM name that matches only that VM) and the
emulator (which matches names as the Hyper-V module does) read the same rules from here.
"""

from __future__ import annotations

import re

__all__ = ["has_wildcards", "like", "literal", "name_matches", "wildcard_regex"]


def has_wildcards(pattern: str) -> bool:
    """True if PowerShell would treat `pattern` as a wildcard pattern: it holds `*`, `?` or `[`
    not escaped by a backtick (WildcardPattern.ContainsWildcardCharacters)."""
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "`":
            escaped = True
        elif char in "*?[":
            return True
    return False


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """PowerShell -like semantics, case-insensitive: * ? [set] [a-z], ` escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = "".join("\\" + c if c in "\\^[]" else c for c in pattern[i + 1 : end])
            out.append(f"[{body}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def like(name: str, pattern: str) -> bool:
    return wildcard_regex(pattern).match(name) is not None


def name_matches(name: str, text: str) -> bool:
    """How the Hyper-V module matches a -Name/-VMName value (real-host facts, "VM name
    matching"): as a wildcard pattern only when it holds an unescaped wildcard, else compared
    exactly, case-insensitively, backticks included (``vm`[1`]`` is not the VM ``vm[1]``)."""
    if has_wildcards(text):
        return like(name, text)
    return name.casefold() == text.casefold()


def literal(name: str) -> str:
    """A VM or checkpoint name as a -Name/-VMName value that matches only that name.

    The Hyper-V module compares the value exactly unless it holds an unescaped wildcard
    (real-host facts, "VM name matching"), so a name without one goes as it is (a backtick
    too: ``vm`1`` matches the VM ``vm`1``), and escaping would break it: ``vm`[1`]`` holds no
    unescaped wildcard, so it is compared exactly and never matches ``vm[1]``. A name that
    Hyper-V would take as a pattern becomes a pattern that matches only that name: each
    wildcard character in a one-character set (``[[]``, ``[*]``, ``[?]``), ``]`` and the
    backtick escaped."""
    if not has_wildcards(name):
        return name
    out = []
    for char in name:
        if char in "*?[":
            out.append(f"[{char}]")
        elif char in "]`":
            out.append(f"`{char}")
        else:
            out.append(char)
    return "".join(out)
