"""Field schemas: what a key of a packet map may hold, and how it is decoded, encoded and
shown in the JSON rendering (spec sections 2, 5 and 7).

A schema is a tuple of `Field`s; each field has a `Kind` that checks the encoded value (its
CBOR major type, its range or size, its pattern) and converts it to a Python value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import cbor

USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
SIP_ADDRESS = re.compile(
    r"(?=.{7,128}\Z)sip:[A-Za-z0-9\-_.!~*'()%&=+$,]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(?!5060\Z)(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
)
"""An address outside mqchat in its canonical form (section 2): `sip:user@host[:port]`,
lower-case host, no port 5060, no parameters, at most 128 bytes."""
CONV = re.compile(r"#?[a-z0-9][a-z0-9._-]{0,31}|" + SIP_ADDRESS.pattern)

MAX_SAFE = 2**53 - 1
MAX_UINT = 2**64 - 1


class InvalidError(ValueError):
    """A field has the wrong type or a value out of range, or a required field is missing."""


class Kind:
    """How one field's value is checked and converted. Subclasses override what differs."""

    def decode(self, raw: bytes) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def to_json(self, value: Any) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return value


def _expect_major(raw: bytes, major: int, what: str) -> None:
    if cbor.major_type(raw) != major:
        raise InvalidError(f"expected {what}")


@dataclass(frozen=True)
class UInt(Kind):
    """An unsigned integer (major type 0) in [low, high]."""

    low: int = 0
    high: int = MAX_UINT

    def check(self, value: Any) -> int:
        if type(value) is not int or not self.low <= value <= self.high:
            raise InvalidError(f"expected an integer in {self.low}..{self.high}, got {value!r}")
        return value

    def decode(self, raw: bytes) -> int:
        _expect_major(raw, cbor.MAJOR_UINT, "an unsigned integer")
        return self.check(cbor.decode_scalar(raw))

    def encode(self, value: Any) -> bytes:
        return cbor.encode_scalar(self.check(value))


@dataclass(frozen=True)
class Text(Kind):
    """A UTF-8 text string (major type 3) of `min_bytes` to `max_bytes` (if given), matching
    `pattern` if given."""

    max_bytes: int | None = None
    pattern: re.Pattern[str] | None = None
    min_bytes: int = 0

    def check(self, value: Any) -> str:
        if type(value) is not str:
            raise InvalidError(f"expected text, got {value!r}")
        size = len(value.encode())
        if size < self.min_bytes or (self.max_bytes is not None and size > self.max_bytes):
            raise InvalidError(f"text of {size} bytes, not {self.min_bytes}..{self.max_bytes}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise InvalidError(f"{value!r} does not match {self.pattern.pattern}")
        return value

    def decode(self, raw: bytes) -> str:
        _expect_major(raw, cbor.MAJOR_TEXT, "a text string")
        return self.check(cbor.decode_scalar(raw))

    def encode(self, value: Any) -> bytes:
        return cbor.encode_scalar(self.check(value))


class Bool(Kind):
    """true or false."""

    def decode(self, raw: bytes) -> bool:
        if raw not in (b"\xf4", b"\xf5"):
            raise InvalidError("expected a boolean")
        return raw == b"\xf5"

    def encode(self, value: Any) -> bytes:
        if type(value) is not bool:
            raise InvalidError(f"expected a boolean, got {value!r}")
        return cbor.encode_scalar(value)


@dataclass(frozen=True)
class Choice(Kind):
    """An enumeration: an unsigned integer on the wire, its name everywhere else."""

    names: tuple[str, ...]

    def decode(self, raw: bytes) -> str:
        return self.names[UInt(0, len(self.names) - 1).decode(raw)]

    def encode(self, value: Any) -> bytes:
        if value not in self.names:
            raise InvalidError(f"{value!r} is not one of {', '.join(self.names)}")
        return cbor.encode_scalar(self.names.index(value))


@dataclass(frozen=True)
class ListOf(Kind):
    """An array of values of one kind, at most `max_items` of them if given."""

    item: Kind
    max_items: int | None = None

    def _check_length(self, count: int) -> None:
        if self.max_items is not None and count > self.max_items:
            raise InvalidError(f"more than {self.max_items} items")

    def decode(self, raw: bytes) -> list[Any]:
        _expect_major(raw, cbor.MAJOR_ARRAY, "an array")
        items = cbor.split_array(raw)
        self._check_length(len(items))
        return [self.item.decode(item) for item in items]

    def encode(self, value: Any) -> bytes:
        if type(value) is not list:
            raise InvalidError(f"expected a list, got {value!r}")
        self._check_length(len(value))
        return cbor.encode_array([self.item.encode(item) for item in value])

    def to_json(self, value: list[Any]) -> list[Any]:
        return [self.item.to_json(item) for item in value]

    def from_json(self, value: list[Any]) -> list[Any]:
        return [self.item.from_json(item) for item in value]


@dataclass(frozen=True)
class Field:
    """One key of a map: its number, its name in the JSON rendering, its kind."""

    key: int
    name: str
    kind: Kind
    required: bool = False


Schema = tuple[Field, ...]

SEQ = UInt(1, MAX_SAFE)
COUNT = UInt(0, MAX_SAFE)
TIME = UInt()


def decode_fields(entries: dict[int, bytes], schema: Schema) -> tuple[dict[str, Any], dict[int, bytes]]:
    """Decodes the keys a schema knows (by name) and keeps the others as raw bytes."""
    by_key = {f.key: f for f in schema}
    values: dict[str, Any] = {}
    unknown: dict[int, bytes] = {}
    for key, raw in entries.items():
        f = by_key.get(key)
        if f is None:
            unknown[key] = raw
            continue
        try:
            values[f.name] = f.kind.decode(raw)
        except (InvalidError, cbor.MalformedError) as e:
            raise InvalidError(f"field {key} ({f.name}): {e}") from e
    check_required(values, schema)
    return values, unknown


def check_required(values: dict[str, Any], schema: Schema) -> None:
    for f in schema:
        if f.required and f.name not in values:
            raise InvalidError(f"field {f.key} ({f.name}): is required")


def encode_fields(values: dict[str, Any], schema: Schema) -> dict[int, bytes]:
    """Encodes named values to {key: bytes}; a name the schema does not know is an error."""
    by_name = {f.name: f for f in schema}
    out: dict[int, bytes] = {}
    for name, value in values.items():
        f = by_name.get(name)
        if f is None:
            raise InvalidError(f"no field named {name!r}")
        out[f.key] = f.kind.encode(value)
    check_required(values, schema)
    return out


def fields_to_json(values: dict[str, Any], schema: Schema) -> dict[str, Any]:
    return {f.name: f.kind.to_json(values[f.name]) for f in schema if f.name in values}


def fields_from_json(obj: dict[str, Any], schema: Schema) -> dict[str, Any]:
    by_name = {f.name: f for f in schema}
    return {name: by_name[name].kind.from_json(value) for name, value in obj.items() if name in by_name}


def unknown_to_json(unknown: dict[int, bytes]) -> dict[str, str]:
    return {str(key): unknown[key].hex() for key in sorted(unknown)}


def unknown_from_json(obj: dict[str, str]) -> dict[int, bytes]:
    return {int(key): bytes.fromhex(value) for key, value in obj.items()}


@dataclass
class Record:
    """A map that is not a packet (a sync-result conversation): named values plus kept keys."""

    values: dict[str, Any] = field(default_factory=dict)
    unknown: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordKind(Kind):
    """A nested map with its own schema."""

    schema: Schema

    def decode(self, raw: bytes) -> Record:
        _expect_major(raw, cbor.MAJOR_MAP, "a map")
        try:
            entries = cbor.split_map(raw)
        except cbor.MalformedError as e:
            raise InvalidError(str(e)) from e
        return Record(*decode_fields(entries, self.schema))

    def encode(self, value: Any) -> bytes:
        entries = encode_fields(value.values, self.schema)
        return cbor.encode_map(merge_unknown(entries, value.unknown))

    def to_json(self, value: Record) -> dict[str, Any]:
        out = fields_to_json(value.values, self.schema)
        if value.unknown:
            out["unknown"] = unknown_to_json(value.unknown)
        return out

    def from_json(self, value: dict[str, Any]) -> Record:
        check_names(value, self.schema, extra=("unknown",))
        return Record(fields_from_json(value, self.schema), unknown_from_json(value.get("unknown", {})))


def merge_unknown(entries: dict[int, bytes], unknown: dict[int, bytes]) -> dict[int, bytes]:
    """Adds kept keys to encoded known ones; a kept key may not shadow a known one."""
    clash = entries.keys() & unknown.keys()
    if clash:
        raise InvalidError(f"unknown keys {sorted(clash)} are known fields")
    return {**entries, **unknown}


def check_names(obj: dict[str, Any], schema: Schema, extra: tuple[str, ...]) -> None:
    """Refuses JSON names that are neither in the schema nor in `extra`."""
    allowed = {f.name for f in schema} | set(extra)
    stray = set(obj) - allowed
    if stray:
        raise InvalidError(f"unknown names {sorted(stray)}")
