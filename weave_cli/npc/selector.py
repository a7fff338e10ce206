"""Labels and label selectors, and the defensive JSON reading every API object parse shares.

The API server is trusted to validate what it stores, but the controller reads whatever arrives
on the wire, so nothing here assumes a field has the type or size the API promises. Every check
that fails raises ``ModelError`` naming the object and the field (``Pod x/a: metadata.labels:
...``); the caller skips that object and logs the message. Every list and map accepted is bounded.

Representation:

* ``Labels`` is an immutable, hashable ``Mapping[str, str]`` kept in key order, so two equal
  label maps compare, hash and print the same whatever order the JSON listed them in.
* ``Selector`` is a ``metav1.LabelSelector``: ``match_labels`` and ``match_expressions`` are
  ANDed; the empty selector matches every label map. ``Requirement.values`` is sorted and free
  of duplicates, and ``match_expressions`` is sorted, so equal selectors are equal values (the
  compiler caches selections by selector).

Label keys are ``[prefix/]name`` (prefix a DNS subdomain of at most 253 bytes, name at most 63
bytes of ``[A-Za-z0-9._-]`` that starts and ends alphanumeric); values are empty or a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

# Bounds far above anything the API server admits (an object is at most about 1.5 MiB, and
# the informer refuses events over 4 MiB, which is what really bounds memory): a valid object
# must never be refused, since a refused policy becomes a deny-all and a refused pod is closed.
MAX_LABELS = 65536
MAX_EXPRESSIONS = 65536
MAX_VALUES = 65536

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class ModelError(ValueError):
    """An API object that cannot be parsed; the message names the object and the field."""


# -- JSON reading ----------------------------------------------------------------------------


def show(value: object) -> str:
    """A short description of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_object(value: object, where: str) -> Mapping[object, object]:
    """A JSON object; null (or absent) reads as the empty object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError(f"{where}: expected an object, got {show(value)}")
    return cast(Mapping[object, object], value)


def as_list(value: object, where: str, limit: int) -> list[object]:
    """A JSON array of at most ``limit`` items; null (or absent) reads as the empty array."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelError(f"{where}: expected an array, got {show(value)}")
    if len(value) > limit:
        raise ModelError(f"{where}: {len(value)} items, more than the {limit} accepted")
    return value


def as_str(value: object, where: str, limit: int, default: str | None = None) -> str:
    """A string of at most ``limit`` characters; null reads as ``default`` when one is given."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ModelError(f"{where}: expected a string, got {show(value)}")
    if len(value) > limit:
        raise ModelError(f"{where}: {len(value)} characters, more than {limit}")
    return value


def as_int(value: object, where: str, low: int, high: int) -> int:
    """An integer in ``low..high`` (JSON booleans and floats are not integers)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"{where}: expected an integer, got {show(value)}")
    if not low <= value <= high:
        raise ModelError(f"{where}: {value} is outside {low}..{high}")
    return value


def dns_label(value: object, where: str) -> str:
    """An RFC 1123 label (a namespace name)."""
    text = as_str(value, where, 63)
    if not _DNS_LABEL.fullmatch(text):
        raise ModelError(f"{where}: {show(text)} is not a DNS label")
    return text


def dns_subdomain(value: object, where: str) -> str:
    """An RFC 1123 subdomain (a pod or policy name)."""
    text = as_str(value, where, 253)
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise ModelError(f"{where}: {show(text)} is not a DNS subdomain")
    return text


# -- labels ----------------------------------------------------------------------------------


def label_key(value: object, where: str) -> str:
    key = as_str(value, where, 253 + 1 + 63)
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ModelError(f"{where}: bad prefix in label key {show(key)}")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise ModelError(f"{where}: bad label key {show(key)}")
    return key


def label_value(value: object, where: str) -> str:
    text = as_str(value, where, 63)
    if text and not _NAME.fullmatch(text):
        raise ModelError(f"{where}: bad label value {show(text)}")
    return text


class Labels(Mapping[str, str]):
    """An immutable, hashable label map, iterated in key order."""

    __slots__ = ("_map", "_pairs")

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = dict(pairs.items()) if isinstance(pairs, Mapping) else dict(pairs)
        self._pairs: tuple[tuple[str, str], ...] = tuple(sorted(items.items()))
        self._map: dict[str, str] = dict(self._pairs)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._pairs

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def get(self, key: str, default: Any = None) -> Any:  # the dict's, not Mapping's (speed)
        return self._map.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return self._map == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({dict(self._pairs)!r})"


def parse_labels(value: object, where: str) -> Labels:
    """A ``metadata.labels`` or ``matchLabels`` map."""
    raw = as_object(value, where)
    if len(raw) > MAX_LABELS:
        raise ModelError(f"{where}: {len(raw)} labels, more than the {MAX_LABELS} accepted")
    return Labels((label_key(k, where), label_value(v, f"{where}[{show(k)}]"))
                  for k, v in raw.items())


# -- selectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry; ``values`` sorted, without duplicates."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        return value is None


@dataclass(frozen=True)
class Selector:
    """A label selector; the empty one matches everything."""

    match_labels: Labels = Labels()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.pairs:
            if labels.get(key) != value:
                return False
        for requirement in self.match_expressions:
            if not requirement.matches(labels):
                return False
        return True


EVERYTHING = Selector()


def parse_requirement(value: object, where: str) -> Requirement:
    raw = as_object(value, where)
    key = label_key(raw.get("key"), f"{where}.key")
    operator = as_str(raw.get("operator"), f"{where}.operator", 16)
    if operator not in OPERATORS:
        raise ModelError(f"{where}.operator: unknown operator {show(operator)}")
    values = tuple(sorted({label_value(v, f"{where}.values[{i}]") for i, v in
                           enumerate(as_list(raw.get("values"), f"{where}.values", MAX_VALUES))}))
    if operator in ("In", "NotIn") and not values:
        raise ModelError(f"{where}.values: operator {operator} needs values")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ModelError(f"{where}.values: operator {operator} takes no values")
    return Requirement(key, operator, values)


def parse_selector(value: object, where: str) -> Selector:
    """A ``metav1.LabelSelector``; null reads as the empty selector (the caller decides
    whether an absent selector means "everything" or "not given")."""
    raw = as_object(value, where)
    labels = parse_labels(raw.get("matchLabels"), f"{where}.matchLabels")
    expressions = as_list(raw.get("matchExpressions"), f"{where}.matchExpressions",
                          MAX_EXPRESSIONS)
    requirements = {parse_requirement(e, f"{where}.matchExpressions[{i}]")
                    for i, e in enumerate(expressions)}
    return Selector(labels, tuple(sorted(requirements,
                                         key=lambda r: (r.key, r.operator, r.values))))
