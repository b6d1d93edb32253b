"""Packets: the envelope (keys 0-7), the packet types of spec section 7 with their body
schemas, and the codec between packets, CBOR payloads and the JSON rendering of section 5.

Decoding validates what a receiver can check alone: the CBOR shape (error `malformed`) and
every known field's type, range and presence, plus the rules that tie fields together
(error `invalid`). Unknown body keys and the bodies of unknown types are kept as raw CBOR
and encoded back byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .ids import MAX_ID, id_from_text, id_to_text
from .schema import (
    CONV,
    COUNT,
    DEVICE_ID,
    SEQ,
    TIME,
    USER_ID,
    Bool,
    Choice,
    Field,
    InvalidError,
    Kind,
    ListOf,
    RecordKind,
    Schema,
    Text,
    UInt,
    check_names,
    decode_fields,
    encode_fields,
    fields_from_json,
    fields_to_json,
    merge_unknown,
    unknown_from_json,
    unknown_to_json,
)


class PacketError(ValueError):
    """A payload refused with an error code name of spec section 14."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


ERROR_NAMES = {
    1: "malformed",
    2: "invalid",
    3: "too-large",
    4: "wrong-topic",
    5: "unsupported",
    6: "no-such-user",
    7: "forbidden",
    8: "not-found",
    9: "conflict",
    10: "rate-limited",
    11: "internal",
    32: "group-full",
    80: "not-delivered",
}
"""Error codes (section 14); a receiver shows an unknown code as `internal`."""


@dataclass
class Packet:
    """One packet: its type number, envelope, known body fields by name, and kept keys."""

    type: int
    id: int | None = None
    conv: str | None = None
    seq: int | None = None
    ts: int | None = None
    from_: str | None = None
    device: str | None = None
    ephemeral: bool = False
    body: dict[str, Any] = field(default_factory=dict)
    unknown: dict[int, bytes] = field(default_factory=dict)


class MessageIdKind(UInt):
    """A client message id: an integer on the wire, its text form in JSON."""

    def __init__(self) -> None:
        super().__init__(1, MAX_ID)

    def to_json(self, value: int) -> str:
        return id_to_text(value)

    def from_json(self, value: str) -> int:
        return id_from_text(value)


class PacketKind(Kind):
    """A packet nested in another (a conversation's last event, history events)."""

    def decode(self, raw: bytes) -> Packet:
        try:
            return decode_packet(raw)
        except PacketError as e:
            raise InvalidError(e.detail) from e

    def encode(self, value: Any) -> bytes:
        return encode_packet(value)

    def to_json(self, value: Packet) -> dict[str, Any]:
        return packet_to_json(value)

    def from_json(self, value: dict[str, Any]) -> Packet:
        return packet_from_json(value)


# The envelope, with the Packet attribute each key is stored in.
ENVELOPE: tuple[tuple[Field, str], ...] = (
    (Field(1, "id", MessageIdKind()), "id"),
    (Field(2, "conv", Text(pattern=CONV)), "conv"),
    (Field(3, "seq", SEQ), "seq"),
    (Field(4, "ts", TIME), "ts"),
    (Field(5, "from", Text(pattern=USER_ID)), "from_"),
    (Field(6, "device", Text(pattern=DEVICE_ID)), "device"),
    (Field(7, "ephemeral", Bool()), "ephemeral"),
)

Rule = Callable[[Packet], "str | None"]


@dataclass(frozen=True)
class PacketType:
    """A known packet type: number, name, route (section 7), body schema, extra rules."""

    number: int
    name: str
    route: str
    body: Schema
    needs: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


ROUTE_NEEDS = {"event": ("id", "conv"), "marker": ("conv",), "signal": ("conv",), "request": ("id",), "sip": ()}
"""What the envelope of an upstream packet needs for its route (section 7)."""


def _one_of(*names: str) -> Rule:
    def rule(p: Packet) -> str | None:
        present = [n for n in names if n in p.body]
        return f"{' and '.join(present)} exclude each other" if len(present) > 1 else None

    return rule


def _only_with_newest_first(p: Packet) -> str | None:
    newest_first = p.body.get("newest-first", False)
    if "after" in p.body and newest_first:
        return "after is only for oldest-first"
    if "before" in p.body and not newest_first:
        return "before is only for newest-first"
    return None


def _direct_conv(p: Packet) -> str | None:
    if p.conv is not None and not USER_ID.fullmatch(p.conv):
        return "a contact conversation is between two users"
    return None


def _group_conv(p: Packet) -> str | None:
    if p.conv is not None and not p.conv.startswith("#"):
        return "needs a group conversation"
    return None


def _admin_fields(p: Packet) -> str | None:
    action = p.body["action"]
    if action in ("invite", "cancel", "remove", "role", "transfer") and "user" not in p.body:
        return f"{action} needs a user"
    if action == "role" and p.body.get("role") not in ("member", "admin"):
        return "role needs the role member or admin"
    return None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*=*")


def _base64url_of(text: str, size: int) -> bool:
    unpadded = text.rstrip("=")
    return _BASE64URL.fullmatch(text) is not None and len(unpadded) == -(-size * 4 // 3)


def _push_target(p: Packet) -> str | None:
    provider, address = p.body["provider"], p.body["address"]
    if provider == "web-push":
        rest = address.removeprefix("https://")
        if rest == address or not rest or rest.startswith("/"):
            return "address must be an https URL"
    elif provider == "unified-push":
        rest = address.removeprefix("https://").removeprefix("http://")
        if rest == address or not rest or rest.startswith("/"):
            return "address must be an http(s) URL"
    elif not address or any(c.isspace() or ord(c) < 0x20 for c in address):
        return "address must be a token without spaces"
    if provider == "web-push":
        if not _base64url_of(p.body.get("p256dh", ""), 65):
            return "p256dh must be a P-256 public key (65 bytes, base64url)"
        if not _base64url_of(p.body.get("auth", ""), 16):
            return "auth must be a 16-byte secret (base64url)"
    for name, allowed in (("topic", "apns"), ("sandbox", "apns"), ("p256dh", "web-push"), ("auth", "web-push")):
        if name in p.body and provider != allowed:
            return f"{name} does not apply to {provider}"
    return None


def _sip_message(p: Packet) -> str | None:
    return "the SIP message must not be empty" if p.body["message"] == "" else None


def _needs_conv(p: Packet) -> str | None:
    return "conv is required" if p.conv is None else None


STATE = Choice(("active", "composing", "paused", "inactive", "gone"))
ACTION = Choice(("request", "accept", "decline", "cancel", "remove"))
AVAILABILITY = Choice(("offline", "available", "away", "busy"))
CONTACT_STATE = Choice(("none", "outgoing", "incoming", "accepted"))
LIMIT = UInt(1, 500)
USER = Text(pattern=USER_ID)
ROLE = Choice(("member", "admin", "owner"))
HISTORY_SETTING = Choice(("joined", "all"))
GROUP_NAME = Text(128, min_bytes=1)
GROUP_EVENT_ACTION = Choice(
    tuple("created invited joined declined cancelled left removed role updated deleted owner".split())
)
GROUP_ADMIN_ACTION = Choice(("invite", "cancel", "remove", "role", "transfer", "update", "delete"))
GROUP_JOIN_ACTION = Choice(("accept", "decline", "leave"))

# Body schemas (section 7), with the nested maps of results.

MESSAGE: Schema = (
    Field(8, "text", Text(16384), required=True),
    Field(9, "reply-to", SEQ),
    Field(10, "mentions", ListOf(USER, 64)),
)
CHAT_STATE: Schema = (Field(8, "state", STATE, required=True),)
DELIVERED: Schema = (Field(8, "up-to", SEQ, required=True),)
READ: Schema = (Field(8, "up-to", SEQ, required=True), Field(9, "private", Bool()))
CONTACT: Schema = (Field(8, "action", ACTION, required=True), Field(9, "note", Text(512)))
PRESENCE: Schema = (
    Field(8, "availability", AVAILABILITY, required=True),
    Field(9, "status", Text(256)),
    Field(10, "last-active", TIME),
)
PROFILE: Schema = (Field(8, "name", Text(128)), Field(9, "avatar", Text(512)), Field(10, "status", Text(256)))
ACK: Schema = (Field(8, "duplicate", Bool()),)
ERROR: Schema = (
    Field(8, "code", UInt(1, 65535), required=True),
    Field(9, "detail", Text(512)),
    Field(10, "about", UInt()),
)
SYNC: Schema = (
    Field(8, "after", COUNT),
    Field(9, "before", COUNT),
    Field(10, "limit", LIMIT),
    Field(11, "newest-first", Bool()),
)
CONVERSATION: Schema = (
    Field(2, "conv", Text(pattern=CONV), required=True),
    Field(3, "last-seq", COUNT),
    Field(4, "last-ts", TIME),
    Field(8, "change", COUNT, required=True),
    Field(9, "last", PacketKind()),
    Field(10, "unread", COUNT),
    Field(11, "delivered", COUNT),
    Field(12, "read", COUNT),
    Field(13, "peer-delivered", COUNT),
    Field(14, "peer-read", COUNT),
    Field(15, "first-seq", COUNT),
    Field(16, "contact", CONTACT_STATE),
    Field(17, "muted-until", COUNT),
)
SYNC_RESULT: Schema = (
    Field(8, "conversations", ListOf(RecordKind(CONVERSATION), 500), required=True),
    Field(9, "more", Bool()),
    Field(10, "token", COUNT, required=True),
)
HISTORY: Schema = (
    Field(8, "after", COUNT),
    Field(9, "before", SEQ),
    Field(10, "limit", LIMIT),
    Field(11, "since", TIME),
)
HISTORY_RESULT: Schema = (
    Field(8, "events", ListOf(PacketKind(), 500), required=True),
    Field(9, "more", Bool()),
    Field(10, "first-seq", COUNT),
    Field(11, "last-seq", COUNT),
    Field(12, "truncated", Bool()),
)
GROUP_CREATE: Schema = (
    Field(8, "name", GROUP_NAME, required=True),
    Field(9, "avatar", Text(512)),
    Field(10, "description", Text(1024)),
    Field(11, "invite", ListOf(USER, 256)),
    Field(12, "history", HISTORY_SETTING),
)
GROUP_CHANGES: Schema = (
    Field(9, "user", USER),
    Field(10, "role", ROLE),
    Field(11, "name", GROUP_NAME),
    Field(12, "avatar", Text(512)),
    Field(13, "description", Text(1024)),
    Field(14, "history", HISTORY_SETTING),
)
GROUP_EVENT: Schema = (Field(8, "action", GROUP_EVENT_ACTION, required=True), *GROUP_CHANGES)
GROUP_ADMIN: Schema = (Field(8, "action", GROUP_ADMIN_ACTION, required=True), *GROUP_CHANGES)
GROUP_JOIN: Schema = (Field(8, "action", GROUP_JOIN_ACTION, required=True),)
MEMBER: Schema = (
    Field(9, "user", USER, required=True),
    Field(10, "role", ROLE, required=True),
    Field(11, "invited", Bool()),
    Field(12, "since", COUNT),
    Field(13, "delivered", COUNT),
    Field(14, "read", COUNT),
)
GROUP_INFO_RESULT: Schema = (
    Field(8, "name", Text(), required=True),
    Field(9, "avatar", Text()),
    Field(10, "description", Text()),
    Field(11, "history", HISTORY_SETTING),
    Field(12, "members", ListOf(RecordKind(MEMBER)), required=True),
)
DEVICE: Schema = (
    Field(8, "device-id", Text(pattern=DEVICE_ID), required=True),
    Field(9, "created", TIME, required=True),
    Field(10, "last-login", TIME),
    Field(11, "token", Bool()),
)
DEVICE_LIST_RESULT: Schema = (Field(8, "devices", ListOf(RecordKind(DEVICE), 256), required=True),)
DEVICE_REVOKE: Schema = (Field(8, "device-id", Text(pattern=DEVICE_ID), required=True),)
PUSH_REGISTER: Schema = (
    Field(8, "provider", Choice(("fcm", "apns", "web-push", "unified-push")), required=True),
    Field(9, "address", Text(4096), required=True),
    Field(10, "topic", Text(256)),
    Field(11, "sandbox", Bool()),
    Field(12, "p256dh", Text(128)),
    Field(13, "auth", Text(64)),
    Field(14, "preview", Bool()),
)

SIP: Schema = (
    Field(8, "message", Text(32768), required=True),
    Field(9, "peer", Text(64)),
    Field(10, "source", Text(128)),
    Field(11, "destination", Text(128)),
)
SIP_GATEWAY_FIELDS = ("peer", "source", "destination")
"""Fields of a `sip` packet that only the hub's gateway link sets (section 7.14)."""
CALL: Schema = (
    Field(8, "call-id", Text(256), required=True),
    Field(9, "outcome", Choice(("answered", "missed", "declined", "busy", "cancelled", "failed")), required=True),
    Field(10, "started", TIME, required=True),
    Field(11, "answered", TIME),
    Field(12, "ended", TIME, required=True),
    Field(13, "duration", TIME),
    Field(14, "answered-by", Text(pattern=DEVICE_ID)),
    Field(15, "media", ListOf(Text(32), 8)),
)

GROUP = ("conv",)
TYPES: dict[int, PacketType] = {
    t.number: t
    for t in (
        PacketType(1, "message", "event", MESSAGE),
        PacketType(2, "chat-state", "signal", CHAT_STATE),
        PacketType(3, "delivered", "marker", DELIVERED),
        PacketType(4, "read", "marker", READ),
        PacketType(5, "contact", "event", CONTACT, rules=(_direct_conv,)),
        PacketType(6, "presence", "presence", PRESENCE),
        PacketType(7, "profile", "request", PROFILE),
        PacketType(8, "ack", "reply", ACK),
        PacketType(9, "error", "reply", ERROR),
        PacketType(10, "sync", "request", SYNC, rules=(_only_with_newest_first,)),
        PacketType(11, "sync-result", "reply", SYNC_RESULT),
        PacketType(12, "history", "request", HISTORY, needs=("conv",), rules=(_one_of("after", "before", "since"),)),
        PacketType(13, "history-result", "reply", HISTORY_RESULT),
        PacketType(32, "group-create", "request", GROUP_CREATE),
        PacketType(33, "group-event", "hub", GROUP_EVENT, rules=(_group_conv,)),
        PacketType(34, "group-admin", "request", GROUP_ADMIN, needs=GROUP, rules=(_group_conv, _admin_fields)),
        PacketType(35, "group-join", "request", GROUP_JOIN, needs=GROUP, rules=(_group_conv,)),
        PacketType(36, "group-info", "request", (), needs=GROUP, rules=(_group_conv,)),
        PacketType(37, "group-info-result", "reply", GROUP_INFO_RESULT, rules=(_group_conv,)),
        PacketType(64, "device-list", "request", ()),
        PacketType(65, "device-list-result", "reply", DEVICE_LIST_RESULT),
        PacketType(66, "device-revoke", "request", DEVICE_REVOKE),
        PacketType(67, "client-state", "request", (Field(8, "active", Bool(), required=True),)),
        PacketType(68, "push-register", "request", PUSH_REGISTER, rules=(_push_target,)),
        PacketType(69, "push-unregister", "request", ()),
        PacketType(70, "mute", "request", (Field(8, "until", TIME, required=True),), rules=(_needs_conv,)),
        PacketType(80, "sip", "sip", SIP, rules=(_sip_message,)),
        PacketType(81, "call", "hub", CALL),
    )
}
"""The known packet types by number. Route `hub`: made by the hub only, never upstream."""
TYPE_NUMBERS = {t.name: t.number for t in TYPES.values()}
TYPE_KIND = UInt()


def _body_schema(type_number: int) -> Schema:
    known = TYPES.get(type_number)
    return known.body if known else ()


def _check_rules(p: Packet) -> None:
    known = TYPES.get(p.type)
    for rule in known.rules if known else ():
        problem = rule(p)
        if problem:
            raise InvalidError(problem)


def decode_packet(payload: bytes) -> Packet:
    """Decodes and validates a payload; raises PacketError (`malformed` or `invalid`)."""
    try:
        entries = cbor.split_map(payload)
    except cbor.MalformedError as e:
        raise PacketError("malformed", str(e)) from e
    if 0 not in entries:
        raise PacketError("malformed", "no type (key 0)")
    try:
        p = Packet(TYPE_KIND.decode(entries.pop(0)))
        for f, attr in ENVELOPE:
            if f.key in entries:
                setattr(p, attr, f.kind.decode(entries.pop(f.key)))
        p.body, p.unknown = decode_fields(entries, _body_schema(p.type))
        _check_rules(p)
    except InvalidError as e:
        raise PacketError("invalid", str(e)) from e
    except cbor.MalformedError as e:  # e.g. text that is not UTF-8
        raise PacketError("malformed", str(e)) from e
    return p


def encode_packet(p: Packet) -> bytes:
    """Encodes a packet deterministically; raises InvalidError if a field is out of range."""
    entries = {0: TYPE_KIND.encode(p.type)}
    for f, attr in ENVELOPE:
        value = getattr(p, attr)
        if value is not None and value is not False:  # ephemeral is encoded only when true
            entries[f.key] = f.kind.encode(value)
    if any(key < 8 for key in p.unknown):
        raise InvalidError("keys 0-7 are the envelope, never unknown")
    body = encode_fields(p.body, _body_schema(p.type))
    _check_rules(p)
    return cbor.encode_map({**entries, **merge_unknown(body, p.unknown)})


def type_name(type_number: int) -> str | int:
    known = TYPES.get(type_number)
    return known.name if known else type_number


def packet_to_json(p: Packet) -> dict[str, Any]:
    """The JSON rendering: names for the envelope, body and choices, raw hex for unknowns."""
    out: dict[str, Any] = {"type": type_name(p.type)}
    for f, attr in ENVELOPE:
        value = getattr(p, attr)
        if value is not None and value is not False:
            out[f.name] = f.kind.to_json(value)
    out.update(fields_to_json(p.body, _body_schema(p.type)))
    if p.unknown:
        out["unknown"] = unknown_to_json(p.unknown)
    return out


def packet_from_json(obj: dict[str, Any]) -> Packet:
    """The packet a JSON rendering stands for."""
    type_ = obj["type"]
    p = Packet(TYPE_NUMBERS[type_] if isinstance(type_, str) else type_)
    schema = _body_schema(p.type)
    check_names(obj, schema, extra=("type", "unknown", *(f.name for f, _ in ENVELOPE)))
    for f, attr in ENVELOPE:
        if f.name in obj:
            setattr(p, attr, f.kind.from_json(obj[f.name]))
    p.body = fields_from_json(obj, schema)
    p.unknown = unknown_from_json(obj.get("unknown", {}))
    return p
