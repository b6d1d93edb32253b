"""The shared test vectors (crates/proto/tests/vectors, spec section 18), both ways.

valid/: the payload decodes to the JSON rendering given, the JSON rendering encodes to
exactly the payload (its `canonical` form, when given), re-encoding each value as a hub does
yields that form, and an upstream payload gets the route given. invalid/: the hub's
edge check refuses the payload with the error given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqchat_py import cbor
from mqchat_py.hub_check import DEFAULT_MAX_PAYLOAD, check_upstream
from mqchat_py.packet import PacketError, decode_packet, encode_packet, packet_from_json, packet_to_json
from mqchat_py.topics import Topics

VECTORS = Path(__file__).resolve().parents[3] / "crates" / "proto" / "tests" / "vectors"
TOPICS = Topics("mq")


def load(kind: str) -> list[tuple[str, dict]]:
    files = sorted((VECTORS / kind).glob("*.json"))
    assert files, f"no vectors under {VECTORS / kind}"
    return [(f.stem, json.loads(f.read_text())) for f in files]


def payload(vector: dict, field: str = "cbor") -> bytes:
    return bytes.fromhex("".join(vector[field].split()))


def deterministic(vector: dict) -> bytes:
    """The deterministic encoding: `canonical` when `cbor` is in another one."""
    return payload(vector, "canonical" if "canonical" in vector else "cbor")


def with_deterministic_unknowns(packet: dict) -> dict:
    """This client keeps unknown values as received; a hub forwards them re-encoded."""
    unknown = {k: cbor.deterministic(bytes.fromhex(v)).hex() for k, v in packet.get("unknown", {}).items()}
    return {**packet, "unknown": unknown} if unknown else packet


@pytest.mark.parametrize("name,vector", load("valid"), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_decodes_to_its_json(name: str, vector: dict) -> None:
    assert packet_to_json(decode_packet(deterministic(vector))) == vector["packet"]
    decoded = packet_to_json(decode_packet(payload(vector)))
    assert with_deterministic_unknowns(decoded) == vector["packet"]


@pytest.mark.parametrize("name,vector", load("valid"), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_encodes_to_its_bytes(name: str, vector: dict) -> None:
    assert encode_packet(packet_from_json(vector["packet"])).hex() == deterministic(vector).hex()


@pytest.mark.parametrize("name,vector", load("valid"), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_values_are_deterministic_as_the_hub_forwards_them(name: str, vector: dict) -> None:
    entries = cbor.split_map(payload(vector))
    forwarded = cbor.encode_map({k: cbor.deterministic(v, cbor.MAX_NESTING) for k, v in entries.items()})
    assert forwarded.hex() == deterministic(vector).hex()


@pytest.mark.parametrize("name,vector", load("valid"), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_upstream_has_its_route(name: str, vector: dict) -> None:
    place = TOPICS.parse(vector["topic"])
    assert place is not None, vector["topic"]
    if place.kind != "upstream":
        assert "route" not in vector
        return
    _, route = check_upstream(TOPICS, vector["topic"], payload(vector))
    assert route == vector["route"]


@pytest.mark.parametrize("name,vector", load("invalid"), ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_is_refused_with_its_error(name: str, vector: dict) -> None:
    max_payload = vector.get("max-payload", DEFAULT_MAX_PAYLOAD)
    with pytest.raises(PacketError) as refused:
        check_upstream(TOPICS, vector["topic"], payload(vector), max_payload)
    assert refused.value.code == vector["error"], refused.value.detail
