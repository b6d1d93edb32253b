"""The invalid test vectors against the real hub: published as they are by a device of alice
(the vectors' sender), each must be refused on her reply topic with the vector's error code,
as the clients' own edge check (mqchat_py.hub_check) predicts. All but one: the broker lets
no device publish on an inbox topic (`not-upstream-topic`), so only the hub-side check of the
clients covers it."""

from __future__ import annotations

import json

import pytest

from harness import REPO, TIMEOUT, World
from mqchat_py import Device, Packet, encode_packet, packet_to_json
from mqchat_py.packet import ERROR_NAMES

VECTORS = REPO / "crates" / "proto" / "tests" / "vectors" / "invalid"
UNREACHABLE = "not-upstream-topic"  # a device can only publish on its own upstream topic


def refusal(device: Device, payload: bytes) -> dict:
    """Publishes a payload upstream and returns the next error on the reply topic, as JSON."""
    start = len(device.received)
    device.publish_upstream(payload)
    found = device.received.wait_for(lambda i: i.is_packet("reply", "error"), TIMEOUT, "error reply", start)
    return packet_to_json(found.packet)


def vectors(max_payload: int | None) -> list[tuple[str, dict]]:
    """The invalid vectors a device can send, with this `max-payload` (None: the default)."""
    found = [(path.stem, json.loads(path.read_text())) for path in sorted(VECTORS.glob("*.json"))]
    assert UNREACHABLE in dict(found)
    return [(name, v) for name, v in found if name != UNREACHABLE and v.get("max-payload") == max_payload]


# What the error reply says of the refused packet (section 14: id, conv and type whenever
# they could be read), for vectors refused as a whole or for another envelope field.
ENVELOPE = {
    "duplicate-key": {"id": "0a03zkqvpmqsw", "about": 1},
    "trailing-bytes": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
    "conv-upper-case": {"id": "0a03zkqvpmqsw", "about": 1},
    "text-not-utf8": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
    "nested-duplicate-key": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
    "too-deep": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
    "too-deep-unknown-type": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 5000},
    "too-deep-hostile": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
    "too-large": {"id": "0a03zkqvpmqsw", "conv": "bob", "about": 1},
}


def check_refusals(world: World, cases: list[tuple[str, dict]]) -> None:
    world.users("alice", "bob")
    alice = world.python("alice", "phone")
    assert cases
    for name, vector in cases:
        assert vector["topic"] == "mq/up/alice/phone", name
        error = refusal(alice, bytes.fromhex("".join(vector["cbor"].split())))
        assert ERROR_NAMES[error["code"]] == vector["error"], f"{name}: {error}"
        if name in ENVELOPE:
            said = {k: error[k] for k in ("id", "conv", "about") if k in error}
            assert said == ENVELOPE[name], f"{name}: {error}"


def test_each_invalid_vector_is_refused_with_its_error(world: World) -> None:
    check_refusals(world, vectors(None))


@pytest.mark.serve_args("--max-payload", "16")
def test_the_too_large_vector_with_its_maximum(world: World) -> None:
    check_refusals(world, vectors(16))


def test_a_payload_over_the_default_maximum_is_too_large(world: World) -> None:
    world.users("alice", "bob")
    alice = world.python("alice", "phone")
    padding = b"\x5a" + (70_000).to_bytes(4, "big") + bytes(70_000)  # a 70,000-byte byte string
    packet = Packet(1, id=alice.ids.next(), conv="bob", body={"text": "x"}, unknown={99: padding})
    assert ERROR_NAMES[refusal(alice, encode_packet(packet))["code"]] == "too-large"
