"""Qdrant-style JSON filters: one validator, two translators (qdrant-client models and Qdrant Edge).

Users of Qdrant already know its filter JSON, so the API accepts exactly that shape. Parsing it once
into a small tree and rendering that tree per engine (`render_filter` with the engine's `FilterBuilder`) keeps both engines' semantics identical and
lets every malformed filter fail the same way, with `InvalidFilter` (HTTP 422) and an example.

Supported (a subset of Qdrant's filter language that both engines evaluate the same way)::

    filter     := {"must": [cond...], "should": [cond...], "must_not": [cond...],
                   "min_should": {"conditions": [cond...], "min_count": int}}   (all optional)
    cond       := {"key": k, "match": {"value": str | int | bool}}
                | {"key": k, "match": {"any": [str...] | [int...]}}
                | {"key": k, "match": {"except": [str...] | [int...]}}
                | {"key": k, "range": {"gte"|"gt"|"lte"|"lt": number, ...}}
                | {"is_empty": {"key": k}} | {"is_null": {"key": k}}
                | {"has_id": [string ids as given to the API]}
                | {"nested": {"key": k, "filter": filter}}
                | filter                                   (a nested boolean group)

Keys may be dotted paths into nested objects (`meta.color`) or array paths (`items[].sku`). A single
condition object where Qdrant allows a list is accepted too. Keys starting with `_omnivec` are
reserved for the store's bookkeeping; filter by id with `has_id` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, Union

from .errors import InvalidFilter
from .store import RESERVED_PREFIX, point_uuid

__all__ = [
    "FilterBuilder",
    "FilterNode",
    "PAYLOAD_PATH_PATTERN",
    "PAYLOAD_PATH_RULE",
    "is_payload_path",
    "parse_filter",
    "render_filter",
    "restrict_to_ids",
]

MAX_DEPTH = 16


@dataclass(frozen=True)
class MatchValue:
    key: str
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple


@dataclass(frozen=True)
class MatchExcept:
    key: str
    values: tuple


@dataclass(frozen=True)
class Range:
    key: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class IsEmpty:
    key: str


@dataclass(frozen=True)
class IsNull:
    key: str


@dataclass(frozen=True)
class HasId:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Nested:
    key: str
    filter: "FilterNode"


@dataclass(frozen=True)
class MinShould:
    conditions: tuple
    min_count: int


@dataclass(frozen=True)
class FilterNode:
    must: tuple = ()
    should: tuple = ()
    must_not: tuple = ()
    min_should: MinShould | None = None


Condition = Union[MatchValue, MatchAny, MatchExcept, Range, IsEmpty, IsNull, HasId, Nested, FilterNode]

_CLAUSES = ("must", "should", "must_not")
_FILTER_KEYS = set(_CLAUSES) | {"min_should"}
_RANGE_KEYS = ("gte", "gt", "lte", "lt")


# ---------------------------------------------------------------------------------------------
# Parsing / validation
# ---------------------------------------------------------------------------------------------


def parse_filter(obj: Mapping[str, Any] | FilterNode | None) -> FilterNode | None:
    """Validate a Qdrant-style filter dict; None or {} means "no filter". A filter parsed already
    (the services combine the user's with their own) is taken as is: each request parses once."""
    if obj is None or isinstance(obj, FilterNode):
        return obj
    if not isinstance(obj, Mapping):
        raise InvalidFilter(f"a filter must be a JSON object, got {type(obj).__name__}")
    if not obj:
        return None
    return _parse_filter(obj, "filter", 0)


def _parse_filter(obj: Mapping[str, Any], where: str, depth: int) -> FilterNode:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"{where}: filters nest deeper than {MAX_DEPTH} levels")
    unknown = set(obj) - _FILTER_KEYS
    if unknown:
        raise InvalidFilter(
            f"{where}: unknown filter clause(s) {sorted(unknown)}; a filter has only "
            f"'must', 'should', 'must_not' and 'min_should'"
        )
    parts: dict[str, tuple] = {}
    for clause in _CLAUSES:
        raw = obj.get(clause)
        if raw is None:
            parts[clause] = ()
            continue
        parts[clause] = _parse_cond_list(raw, f"{where}.{clause}", depth)
    min_should = None
    if obj.get("min_should") is not None:
        ms = obj["min_should"]
        w = f"{where}.min_should"
        if not isinstance(ms, Mapping) or set(ms) != {"conditions", "min_count"}:
            raise InvalidFilter(f"{w} must be {{\"conditions\": [...], \"min_count\": n}}")
        n = ms["min_count"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidFilter(f"{w}.min_count must be a non-negative integer, got {n!r}")
        min_should = MinShould(_parse_cond_list(ms["conditions"], f"{w}.conditions", depth), n)
    return FilterNode(parts["must"], parts["should"], parts["must_not"], min_should)


def _parse_cond_list(raw: Any, where: str, depth: int) -> tuple:
    if isinstance(raw, Mapping):  # Qdrant accepts a single condition where a list is expected
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise InvalidFilter(f"{where} must be a list of conditions, got {type(raw).__name__}")
    return tuple(_parse_condition(c, f"{where}[{i}]", depth) for i, c in enumerate(raw))


# Qdrant's payload path syntax (both engines refuse anything else with a bare ValueError, which reached
# clients as 503): keys of letters, digits, '_' and '-', or "quoted", joined by dots, each optionally
# followed by [] or [n] (n below 10^9: the engines parse it into a machine integer).
PAYLOAD_PATH_PATTERN = r'^(?:[\w-]+|"[^"]*")(?:\[\d{0,9}\])*(?:\.(?:[\w-]+|"[^"]*")(?:\[\d{0,9}\])*)*$'
PAYLOAD_PATH_RULE = "letters, digits, '_' and '-' (or a \"quoted key\"), dots between nested keys, [] or [n] after arrays"
_PAYLOAD_PATH_RE = re.compile(PAYLOAD_PATH_PATTERN.replace("$", r"\Z"))


def is_payload_path(key: str) -> bool:
    return bool(_PAYLOAD_PATH_RE.match(key))


def _key(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFilter(f"{where}: 'key' must be a non-empty string such as \"tags\" or \"meta.color\"")
    if not is_payload_path(value):
        raise InvalidFilter(f"{where}: key {value!r} is not a payload path; use {PAYLOAD_PATH_RULE}, e.g. \"meta.color\" or \"items[].sku\"")
    if value.startswith(RESERVED_PREFIX):
        raise InvalidFilter(
            f"{where}: key {value!r} is reserved for the store's bookkeeping; filter on ids with "
            '{"has_id": ["id-1", "id-2"]}'
        )
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _value_list(raw: Any, where: str) -> tuple:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InvalidFilter(f"{where} must be a non-empty list of strings or of integers")
    if all(isinstance(v, str) for v in raw) or all(_is_int(v) for v in raw):
        return tuple(raw)
    raise InvalidFilter(f"{where} must hold only strings or only integers, got {list(raw)!r}")


def _parse_condition(c: Any, where: str, depth: int) -> Condition:
    if not isinstance(c, Mapping):
        raise InvalidFilter(f"{where}: a condition must be a JSON object, got {type(c).__name__}")
    keys = set(c)
    if keys and keys <= _FILTER_KEYS:
        return _parse_filter(c, where, depth + 1)
    if "key" in keys:
        key = _key(c["key"], where)
        rest = keys - {"key"}
        if rest == {"match"}:
            return _parse_match(key, c["match"], f"{where}.match")
        if rest == {"range"}:
            return _parse_range(key, c["range"], f"{where}.range")
        raise InvalidFilter(
            f"{where}: a field condition has 'key' plus exactly one of 'match' or 'range', got "
            f"{sorted(rest)}"
        )
    if keys == {"has_id"}:
        ids = c["has_id"]
        if not isinstance(ids, (list, tuple)) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise InvalidFilter(f"{where}.has_id must be a non-empty list of string point ids")
        return HasId(tuple(ids))
    if keys in ({"is_empty"}, {"is_null"}):
        kind = next(iter(keys))
        inner = c[kind]
        if not isinstance(inner, Mapping) or set(inner) != {"key"}:
            raise InvalidFilter(f"{where}.{kind} must be {{\"key\": \"field\"}}")
        key = _key(inner["key"], f"{where}.{kind}")
        return IsEmpty(key) if kind == "is_empty" else IsNull(key)
    if keys == {"nested"}:
        inner = c["nested"]
        if not isinstance(inner, Mapping) or set(inner) != {"key", "filter"} or not isinstance(
            inner.get("filter"), Mapping
        ):
            raise InvalidFilter(f"{where}.nested must be {{\"key\": \"array_field\", \"filter\": {{...}}}}")
        key = _key(inner["key"], f"{where}.nested")
        return Nested(key, _parse_filter(inner["filter"], f"{where}.nested.filter", depth + 1))
    raise InvalidFilter(
        f"{where}: unsupported condition {dict(c)!r}; supported: key+match(value|any|except), "
        "key+range, has_id, is_empty, is_null, nested, or a nested must/should/must_not group"
    )


def _parse_match(key: str, m: Any, where: str) -> Condition:
    if not isinstance(m, Mapping) or len(m) != 1:
        raise InvalidFilter(f"{where} must have exactly one of 'value', 'any' or 'except'")
    (kind, val), = m.items()
    if kind == "value":
        if isinstance(val, str) or isinstance(val, bool) or _is_int(val):
            return MatchValue(key, val)
        raise InvalidFilter(
            f"{where}.value must be a string, integer or boolean, got {val!r}; use 'range' for floats"
        )
    if kind == "any":
        return MatchAny(key, _value_list(val, f"{where}.any"))
    if kind == "except":
        return MatchExcept(key, _value_list(val, f"{where}.except"))
    raise InvalidFilter(f"{where}: unsupported match kind {kind!r}; use 'value', 'any' or 'except'")


def _parse_range(key: str, r: Any, where: str) -> Range:
    if not isinstance(r, Mapping) or not r:
        raise InvalidFilter(f"{where} must be an object with at least one of {list(_RANGE_KEYS)}")
    unknown = set(r) - set(_RANGE_KEYS)
    if unknown:
        raise InvalidFilter(f"{where}: unknown bound(s) {sorted(unknown)}; use {list(_RANGE_KEYS)}")
    bounds = {}
    for k, v in r.items():
        if v is None:
            continue
        if not _is_number(v):
            raise InvalidFilter(f"{where}.{k} must be a number, got {v!r}")
        bounds[k] = float(v)
    if not bounds:
        raise InvalidFilter(f"{where} must set at least one bound")
    return Range(key, **bounds)


def restrict_to_ids(node: FilterNode | None, ids: Sequence[str]) -> FilterNode:
    """`node AND has_id(ids)`: used to delete "these ids, but only if they match"."""
    has = HasId(tuple(ids))
    return FilterNode(must=(has,) if node is None else (has, node))


# ---------------------------------------------------------------------------------------------
# Rendering: one tree walk; each engine supplies the constructors of its own filter objects
# ---------------------------------------------------------------------------------------------


class FilterBuilder(Protocol):
    """How one engine spells each filter part (ids are already the stored UUIDs)."""

    def match_value(self, key: str, value: str | int | bool) -> Any: ...
    def match_any(self, key: str, values: list) -> Any: ...
    def match_except(self, key: str, values: list) -> Any: ...
    def range(self, key: str, gte: float | None, gt: float | None, lte: float | None, lt: float | None) -> Any: ...
    def is_empty(self, key: str) -> Any: ...
    def is_null(self, key: str) -> Any: ...
    def has_id(self, uuids: list[str]) -> Any: ...
    def nested(self, key: str, filter: Any) -> Any: ...
    def min_should(self, conditions: list, min_count: int) -> Any: ...
    def filter(self, must: list | None, should: list | None, must_not: list | None, min_should: Any) -> Any: ...


def render_filter(node: FilterNode | None, builder: FilterBuilder) -> Any:
    """The engine's filter object for a parsed filter (None for no filter)."""
    if node is None:
        return None

    def cond(c: Condition) -> Any:
        if isinstance(c, FilterNode):
            return filt(c)
        if isinstance(c, MatchValue):
            return builder.match_value(c.key, c.value)
        if isinstance(c, MatchAny):
            return builder.match_any(c.key, list(c.values))
        if isinstance(c, MatchExcept):
            return builder.match_except(c.key, list(c.values))
        if isinstance(c, Range):
            return builder.range(c.key, c.gte, c.gt, c.lte, c.lt)
        if isinstance(c, IsEmpty):
            return builder.is_empty(c.key)
        if isinstance(c, IsNull):
            return builder.is_null(c.key)
        if isinstance(c, HasId):
            return builder.has_id(list(dict.fromkeys(point_uuid(i) for i in c.ids)))
        if isinstance(c, Nested):
            return builder.nested(c.key, filt(c.filter))
        raise TypeError(c)  # pragma: no cover - parse_filter only builds the types above

    def filt(n: FilterNode) -> Any:
        minimum = n.min_should
        return builder.filter(
            [cond(c) for c in n.must] or None,
            [cond(c) for c in n.should] or None,
            [cond(c) for c in n.must_not] or None,
            builder.min_should([cond(c) for c in minimum.conditions], minimum.min_count) if minimum is not None else None,
        )

    return filt(node)
