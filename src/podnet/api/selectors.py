"""Label selectors as Kubernetes defines them (k8s.io/apimachinery/pkg/labels).

Three ways in, one Selector out:

* `parse(text)`: the string form kubectl's `-l` takes (`app=web,tier in (a,b),!canary`);
* `from_label_selector(sel)`: the API form (`matchLabels` / `matchExpressions`) used by
  Deployments, NetworkPolicies, ...; a nil selector matches nothing, `{}` everything;
* `from_map(d)`: a Service's `spec.selector` map; an empty map matches everything.

`str(selector)` gives the canonical string form Kubernetes prints (requirements sorted
by key, set values sorted), so `parse(str(s))` round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Operator",
    "Requirement",
    "Selector",
    "everything",
    "from_label_selector",
    "from_map",
    "nothing",
    "parse",
]


class Operator(StrEnum):
    """The operators of k8s.io/apimachinery/pkg/selection."""

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


# The order Kubernetes lists them in its "expected: ..." parse error.
_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_HINT = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def _key_errors(key: str) -> list[str]:
    """Why `key` is not a qualified name (validation.IsQualifiedName), or []."""
    parts = key.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return ["a qualified name must consist of an optional DNS subdomain prefix and a name, 'prefix/name'"]
    errs: list[str] = []
    if prefix:
        if len(prefix) > 253:
            errs.append("prefix part must be no more than 253 characters")
        if not _DNS1123_SUBDOMAIN_RE.match(prefix):
            errs.append(
                "prefix part must be a lowercase RFC 1123 subdomain: lowercase alphanumeric "
                "characters, '-' or '.', starting and ending with an alphanumeric character"
            )
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _NAME_RE.match(name):
            errs.append(f"name part {_NAME_HINT}")
    return errs


def _value_errors(value: str) -> list[str]:
    """Why `value` is not a valid label value (validation.IsValidLabelValue), or []."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if value and not _NAME_RE.match(value):
        errs.append(f"a valid label {_NAME_HINT}")
    return errs


def _is_int64(text: str) -> bool:
    # Go's strconv.ParseInt(s, 10, 64): optional sign, decimal digits, nothing else.
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return False
    return -(2**63) <= int(text) < 2**63


@dataclass(frozen=True)
class Requirement:
    """One `key op values` term of a selector. Build through `Requirement.new`
    (which validates) unless the input is known good."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """Validate as labels.NewRequirement does; ValueError on any violation."""
        vals = tuple(values)
        errs = [f'invalid label key "{key}": {e}' for e in _key_errors(key)]
        if operator in (Operator.IN, Operator.NOT_IN):
            if not vals:
                errs.append("for 'in', 'notin' operators, values set can't be empty")
        elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                errs.append("exact-match compatibility requires one single value")
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                errs.append("values set must be empty for exists and does not exist")
        elif operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if len(vals) != 1:
                errs.append("for 'Gt', 'Lt' operators, exactly one value is required")
            errs.extend(
                f"for 'Gt', 'Lt' operators, the value must be an integer, not \"{v}\""
                for v in vals
                if not _is_int64(v)
            )
        errs.extend(f'invalid label value "{v}" for key "{key}": {e}' for v in vals for e in _value_errors(v))
        if errs:
            raise ValueError("; ".join(errs))
        return cls(key, operator, vals)

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            # An absent key is "not equal" to anything: Kubernetes semantics.
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        # Gt/Lt: both sides must parse as integers, else no match.
        if self.key not in labels or len(self.values) != 1:
            return False
        have, want = labels[self.key], self.values[0]
        if not (_is_int64(have) and _is_int64(want)):
            return False
        if op is Operator.GREATER_THAN:
            return int(have) > int(want)
        return int(have) < int(want)

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        # Set values print sorted so equal selectors print equally.
        vals = ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({vals})"
        sym = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{sym}{vals}"


@dataclass(frozen=True)
class Selector:
    """An AND of requirements, kept sorted by key (stable) as Kubernetes keeps them.
    `matches_nothing` is labels.Nothing(): what a nil LabelSelector becomes."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = field(default=False)

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> Selector:
        return cls(tuple(sorted(requirements, key=lambda r: r.key)))

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.matches_nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def everything() -> Selector:
    return Selector()


def nothing() -> Selector:
    return Selector(matches_nothing=True)


# --- the string form ---------------------------------------------------------

_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_SYMBOLS = {
    ")": "CLOSE",
    ",": "COMMA",
    "!": "NOT",
    "==": "DEQ",
    "=": "EQ",
    ">": "GT",
    "<": "LT",
    "!=": "NEQ",
    "(": "OPEN",
}
_KEYWORDS = {"in": "IN", "notin": "NOTIN"}
_OPERATOR_OF_TOKEN = {
    "IN": Operator.IN,
    "NOTIN": Operator.NOT_IN,
    "EQ": Operator.EQUALS,
    "DEQ": Operator.DOUBLE_EQUALS,
    "NEQ": Operator.NOT_EQUALS,
    "GT": Operator.GREATER_THAN,
    "LT": Operator.LESS_THAN,
}


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as the apimachinery lexer makes them: (kind, literal), ending with ("END", "")."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append(("END", ""))
            return out
        if text[i] in _SPECIAL:
            # Longest run of special characters that is still an operator ("!=" over "!").
            j, best = i, None
            while j < n and text[j] in _SPECIAL:
                if text[i : j + 1] in _SYMBOLS:
                    best = j + 1
                elif best is not None:
                    break
                j += 1
            if best is None:
                raise ValueError(f"error expected: keyword found '{text[i:j]}'")
            out.append((_SYMBOLS[text[i:best]], text[i:best]))
            i = best
        else:
            j = i
            while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
                j += 1
            word = text[i:j]
            out.append((_KEYWORDS.get(word, "ID"), word))
            i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    # In value position `in` and `notin` are plain identifiers (`x in (in)` is legal).
    def peek(self, values: bool = True) -> tuple[str, str]:
        kind, lit = self.tokens[self.pos]
        return ("ID" if values and kind in ("IN", "NOTIN") else kind), lit

    def take(self, values: bool = True) -> tuple[str, str]:
        tok = self.peek(values)
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, lit = self.peek()
            if kind == "END":
                return reqs
            if kind not in ("ID", "NOT"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except ValueError as e:
                raise ValueError(f"unable to parse requirement: {e}") from None
            kind, lit = self.take()
            if kind == "END":
                return reqs
            if kind != "COMMA":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in ("ID", "NOT"):
                raise ValueError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        kind, key = self.take()
        negated = kind == "NOT"
        if negated:
            kind, key = self.take()
        if kind != "ID":
            raise ValueError(f"found '{key}', expected: identifier")
        if errs := _key_errors(key):
            raise ValueError(f'invalid label key "{key}": {"; ".join(errs)}')
        # `!key` takes no operator; whatever follows it is the caller's syntax error.
        if negated:
            return Requirement.new(key, Operator.DOES_NOT_EXIST)
        if self.peek()[0] in ("END", "COMMA"):
            return Requirement.new(key, Operator.EXISTS)
        kind, lit = self.take(values=False)
        op = _OPERATOR_OF_TOKEN.get(kind)
        if op is None:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self.set_values() if op in (Operator.IN, Operator.NOT_IN) else self.exact_value()
        return Requirement.new(key, op, sorted(values))

    def set_values(self) -> set[str]:
        kind, lit = self.take()
        if kind != "OPEN":
            raise ValueError(f"found '{lit}' expected: '('")
        kind, lit = self.peek()
        if kind == "CLOSE":  # "()" is the set holding the empty string
            self.take()
            return {""}
        if kind not in ("ID", "COMMA"):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, lit = self.take()
            if kind == "ID":
                values.add(lit)
                nxt, nlit = self.peek()
                if nxt == "CLOSE":
                    break
                if nxt != "COMMA":
                    raise ValueError(f"found '{nlit}', expected: ',' or ')'")
            elif kind == "COMMA":
                # Empty items between commas are empty-string values: "(a,,b)", "(,a)", "(a,)".
                if not values:
                    values.add("")
                nxt, _ = self.peek()
                if nxt == "CLOSE":
                    values.add("")
                    break
                if nxt == "COMMA":
                    values.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")
        self.take()  # the ")"
        return values

    def exact_value(self) -> set[str]:
        kind, _ = self.peek()
        if kind in ("END", "COMMA"):  # "a=" selects the empty value
            return {""}
        kind, lit = self.take()
        if kind != "ID":
            raise ValueError(f"found '{lit}', expected: identifier")
        return {lit}


def parse(text: str) -> Selector:
    """Parse kubectl's `-l` syntax. An empty string selects everything."""
    return Selector.of(_Parser(text).parse())


# --- the API forms -------------------------------------------------------------

_API_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def from_label_selector(sel: Mapping[str, Any] | None) -> Selector:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} matches everything."""
    if sel is None:
        return nothing()
    match_labels: Mapping[str, str] = sel.get("matchLabels") or {}
    expressions: list[Mapping[str, Any]] = sel.get("matchExpressions") or []
    reqs = [Requirement.new(k, Operator.EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        op = _API_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            raise ValueError(f'"{expr.get("operator", "")}" is not a valid label selector operator')
        reqs.append(Requirement.new(expr.get("key", ""), op, expr.get("values") or []))
    return Selector.of(reqs)


def from_map(d: Mapping[str, str] | None) -> Selector:
    """labels.SelectorFromSet: exact matches on every pair; empty matches everything.
    Not validated, as in Kubernetes: the API server validated the object already."""
    return Selector.of(Requirement(k, Operator.EQUALS, (v,)) for k, v in (d or {}).items())
