"""WQL as the WMI provider receives it in a WS-Man Enumerate filter (dialect
http://schemas.microsoft.com/wbem/wsman/1/WQL): `SELECT * | props FROM Class [WHERE cond]`.

Conditions: = <> != < > <= >=, LIKE (% _ [set]), IS [NOT] NULL, AND, OR, NOT, parentheses;
literals 'text' "text" (backslash escapes, as WQL requires for '\\'), numbers, TRUE, FALSE,
NULL. `ASSOCIATORS OF {Class.Key="value",...} [WHERE ResultClass = C AssocClass = A
ResultRole = R Role = R]` is parsed by `parse_associators` (the provider walks the
associations); REFERENCES OF and ClassDefsOnly are refused with a clear error (not emulated).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness.errors import HarnessError

Value = str | int | float | bool | None | tuple[str | int | bool, ...]
Row = Mapping[str, Value]
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),*])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


class WqlError(HarnessError):
    """A WQL text the provider cannot run; `reason` says what and where."""

    def __init__(self, query: str, reason: str) -> None:
        self.query = query
        self.reason = reason
        super().__init__(f"WQL {query!r}: {reason}")


@dataclass(frozen=True)
class Query:
    """A parsed SELECT: the class, the properties asked for (None = all), the condition."""

    class_name: str
    properties: tuple[str, ...] | None
    where: Predicate

    def matches(self, row: Row) -> bool:
        return self.where(row)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise WqlError(text, f"unexpected character {text[pos:].lstrip()[:1]!r} at {pos}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.upper() in words:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise WqlError(self.text, f"expected {word} but found {self.peek()[1] or 'the end'!r}")

    def query(self) -> Query:
        if self.keyword("REFERENCES"):
            raise WqlError(
                self.text,
                "REFERENCES OF queries are not emulated; use ASSOCIATORS OF, or select the "
                "class and filter on its keys (InstanceID LIKE 'Microsoft:<VM GUID>%')",
            )
        self.expect_keyword("SELECT")
        selected: list[str] = []
        star = self.peek() == ("punct", "*")
        if star:
            self.take()
        else:
            while True:
                kind, name = self.take()
                if kind != "word":
                    raise WqlError(self.text, f"expected a property name, found {name!r}")
                selected.append(name)
                if self.peek() != ("punct", ","):
                    break
                self.take()
        self.expect_keyword("FROM")
        kind, class_name = self.take()
        if kind != "word":
            raise WqlError(self.text, f"expected a class name after FROM, found {class_name!r}")
        where: Predicate = _always
        if self.keyword("WHERE"):
            where = self.disjunction()
        if self.peek()[0] != "end":
            raise WqlError(self.text, f"unexpected {self.peek()[1]!r} after the query")
        return Query(class_name, None if star else tuple(selected), where)

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.keyword("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def negation(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.negation()
            return lambda row: not inner(row)
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.disjunction()
            if self.take() != ("punct", ")"):
                raise WqlError(self.text, "a '(' is not closed")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, name = self.take()
        if kind != "word":
            raise WqlError(self.text, f"expected a property name, found {name or 'the end'!r}")
        if self.keyword("IS"):
            negate = self.keyword("NOT")
            self.expect_keyword("NULL")
            return lambda row: (_get(row, name) is None) != negate
        if self.keyword("LIKE"):
            pattern = _like_regex(self.literal())
            return lambda row: isinstance(v := _get(row, name), str) and bool(pattern.match(v))
        op_kind, op = self.take()
        if op_kind != "op":
            raise WqlError(
                self.text, f"expected an operator after {name}, found {op or 'the end'!r}"
            )
        literal = self.literal()
        return lambda row: _compare(_get(row, name), op, literal)

    def literal(self) -> Value:
        kind, text = self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.upper() in ("TRUE", "FALSE"):
            return text.upper() == "TRUE"
        if kind == "word" and text.upper() == "NULL":
            return None
        raise WqlError(self.text, f"expected a literal, found {text or 'the end'!r}")


def _always(row: Row) -> bool:
    return True


def _get(row: Row, name: str) -> Value:
    folded = name.casefold()
    for key, value in row.items():
        if key.casefold() == folded:
            return value
    return None


def _like_regex(pattern: Value) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise WqlError(str(pattern), "LIKE needs a string pattern")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 1)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = "".join("\\" + c if c in "\\[]" else c for c in body.lstrip("^"))
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def _compare(value: Value, op: str, literal: Value) -> bool:
    if value is None or literal is None or isinstance(value, tuple) or isinstance(literal, tuple):
        return False  # WQL: NULL compares as nothing (use IS NULL); arrays do not compare
    left: str | float
    right: str | float
    if isinstance(value, str) and isinstance(literal, str):
        left, right = value.casefold(), literal.casefold()  # WQL compares text case-blind
    elif isinstance(value, bool) or isinstance(literal, bool):
        left, right = float(bool(value)), float(bool(literal))
    else:
        try:
            left, right = float(value), float(literal)
        except ValueError:
            return False
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == "<":
        return bool(left < right)  # type: ignore[operator]
    if op == ">":
        return bool(left > right)  # type: ignore[operator]
    if op == "<=":
        return bool(left <= right)  # type: ignore[operator]
    return bool(left >= right)  # type: ignore[operator]


def parse(text: str) -> Query:
    """Parse a WQL SELECT; raises WqlError naming the problem."""
    if not text.strip():
        raise WqlError(text, "the query is empty")
    return _Parser(text).query()


@dataclass(frozen=True)
class Associators:
    """A parsed `ASSOCIATORS OF {object path} WHERE ...`: the source instance's class and key
    values, and the filters (None: any)."""

    source_class: str
    keys: Mapping[str, str]
    result_class: str | None = None
    assoc_class: str | None = None
    result_role: str | None = None
    role: str | None = None


_ASSOC = re.compile(
    r"^\s*ASSOCIATORS\s+OF\s*\{(?P<path>[^}]*)\}\s*(?:WHERE\s+(?P<where>.*?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_PATH = re.compile(r"^\s*(?:\\\\[^:]*:)?(?P<cls>[A-Za-z_]\w*)\.(?P<keys>.+)$", re.DOTALL)
_KEY = re.compile(r"""\s*([A-Za-z_]\w*)\s*=\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^,]+)\s*,?""")
_WHERE = re.compile(r"([A-Za-z_]\w*)(?:\s*=\s*([A-Za-z_][\w:]*))?")
_ASSOC_FILTERS = {
    "resultclass": "result_class",
    "assocclass": "assoc_class",
    "resultrole": "result_role",
    "role": "role",
}


def parse_associators(text: str) -> Associators | None:
    """Parse an ASSOCIATORS OF query (None when `text` is not one); WqlError when it is one
    this emulator cannot run. Key values in quotes have WQL's backslash escapes."""
    match = _ASSOC.match(text)
    if match is None:
        if re.match(r"^\s*ASSOCIATORS\b", text, re.IGNORECASE):
            raise WqlError(text, "expected ASSOCIATORS OF {Class.Key='value'} [WHERE ...]")
        return None
    path = _PATH.match(match.group("path"))
    if path is None:
        raise WqlError(text, "the object path must be Class.Key='value'[,Key='value']")
    keys: dict[str, str] = {}
    rest = path.group("keys")
    pos = 0
    while pos < len(rest):
        key = _KEY.match(rest, pos)
        if key is None or key.end() == pos:
            raise WqlError(text, f"cannot read the key at {rest[pos:]!r}")
        raw = key.group(2).strip()
        if raw[:1] in ("'", '"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        keys[key.group(1)] = raw
        pos = key.end()
    filters: dict[str, str] = {}
    for name, value in _WHERE.findall(match.group("where") or ""):
        field = _ASSOC_FILTERS.get(name.casefold())
        if field is None or not value:
            raise WqlError(text, f"{name!r} is not an ASSOCIATORS OF filter this emulator runs")
        filters[field] = value
    return Associators(path.group("cls"), keys, **filters)
