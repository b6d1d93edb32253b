"""The hub's edge check of an upstream PUBLISH (spec section 8, steps 1-2), as far as it
depends on the packet alone: topic, size, decoding, schema, route and envelope.

Clients use it to know what the hub will refuse; the test vectors' `invalid/` files name
the error this check must produce.
"""

from __future__ import annotations

from . import cbor
from .packet import ROUTE_NEEDS, SIP_GATEWAY_FIELDS, TYPES, Packet, PacketError, decode_packet
from .topics import Topics

DEFAULT_MAX_PAYLOAD = 65536
# Packet types below this number are the protocol's own; an unknown one is reserved.
FIRST_EXTENSION = 128


def check_upstream(
    topics: Topics, topic: str, payload: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> tuple[Packet, str]:
    """Returns the packet and its route (`event`, `marker`, `signal`, `request`, `sip`), or raises
    PacketError with the code the hub answers."""
    place = topics.parse(topic)
    if place is None or place.kind != "upstream":
        raise PacketError("wrong-topic", f"{topic} is not an upstream topic")
    if len(payload) > max_payload:
        raise PacketError("too-large", f"{len(payload)} bytes, the maximum is {max_payload}")
    try:  # the hub walks every value: nesting, a key twice in any map (section 5)
        for value in cbor.split_map(payload).values():
            cbor.deterministic(value, cbor.MAX_NESTING)
    except cbor.MalformedError as e:
        raise PacketError("malformed", str(e)) from e
    packet = decode_packet(payload)
    known = TYPES.get(packet.type)
    if known is not None:
        if known.route not in ROUTE_NEEDS:
            raise PacketError("wrong-topic", f"{known.name} cannot be sent upstream")
        route, needs = known.route, ROUTE_NEEDS[known.route] + known.needs
    else:
        if packet.type < FIRST_EXTENSION:  # the protocol's own numbers (spec 15)
            raise PacketError("unsupported", f"type {packet.type} is reserved")
        if packet.conv is None:
            raise PacketError("unsupported", f"unknown type {packet.type} without a conversation")
        route = "signal" if packet.ephemeral else "event"
        needs = ROUTE_NEEDS[route]
    missing = [name for name in needs if getattr(packet, name) is None]
    if missing:
        raise PacketError("invalid", f"a {route} needs {' and '.join(missing)}")
    forged = [name for name in SIP_GATEWAY_FIELDS if route == "sip" and name in packet.body]
    if forged:
        raise PacketError("invalid", f"{' and '.join(forged)} of a sip packet are set by the gateway only")
    return packet, route
