"""One-to-one messages between the three implementations: Rust to Python, Python to Node,
Node to Rust. Every side checks what it received: text, sequence number, the conversation
named from its own side (spec section 2), and `from`/`id`/`device` only on its own copies."""

from __future__ import annotations

import pytest

from harness import NodeDevice, World, stamped
from mqchat_py import Device, Packet, id_to_text, packet_to_json


def test_rust_to_python(world: World) -> None:
    world.users("rusty", "pia")
    pia = world.python("pia")

    [sent] = world.rust("rusty").run("send", "pia", "Hello from Rust")
    assert (sent["conv"], sent["seq"], sent["duplicate"]) == ("pia", 1, False)

    got = pia.wait_for("durable", "message", conv="rusty")
    assert stamped(packet_to_json(got)) == {"type": "message", "conv": "rusty", "seq": 1, "text": "Hello from Rust"}


def test_python_to_node(world: World) -> None:
    world.users("pia", "noah")
    noah = world.node("noah")  # MQTT 3.1.1
    pia = world.python("pia")  # MQTT 5
    text = "Ça va, @noah? 👋"

    first = pia.send_message("noah", text, mentions=["noah"], unknown={99: bytes.fromhex("a1617801")})
    assert stamped(packet_to_json(pia.wait_sent(first))) == {
        "type": "message",
        "id": id_to_text(first),
        "conv": "noah",
        "seq": 1,
        "from": "pia",
        "device": "py",
        "text": text,
        "mentions": ["noah"],
        "unknown": {"99": "a1617801"},
    }
    assert stamped(noah.wait("durable", {"type": "message", "seq": 1})) == {
        "type": "message",
        "conv": "pia",
        "seq": 1,
        "text": text,
        "mentions": ["noah"],
        "unknown": {"99": "a1617801"},
    }

    reply = noah.call("message", conv="pia", text="Got it", replyTo=1)["id"]
    assert stamped(noah.call("sent", id=reply)) == {
        "type": "message",
        "id": reply,
        "conv": "pia",
        "seq": 2,
        "from": "noah",
        "device": "node",
        "text": "Got it",
        "reply-to": 1,
    }
    got = pia.wait_for("durable", "message", seq=2)
    assert stamped(packet_to_json(got)) == {
        "type": "message",
        "conv": "noah",
        "seq": 2,
        "text": "Got it",
        "reply-to": 1,
    }

    # A resend with the same id is stored once: the sender gets an ack marked duplicate.
    pia.send(Packet(1, id=first, conv="noah", body={"text": text}))
    ack = pia.wait_for("reply", "ack", id=first)
    assert stamped(packet_to_json(ack)) == {
        "type": "ack",
        "id": id_to_text(first),
        "conv": "noah",
        "seq": 1,
        "duplicate": True,
    }
    pia.wait_sent(pia.send_message("noah", "after the resend"))
    noah.wait("durable", {"type": "message", "seq": 3, "text": "after the resend"})
    seqs = [e["packet"]["seq"] for e in noah.received() if e["kind"] == "durable" and e["packet"]["type"] == "message"]
    assert seqs == [1, 2, 3], "the resend was not delivered again"


def test_node_to_rust(world: World) -> None:
    world.users("noah", "rusty")
    listener = world.rust_listen("rusty")
    noah = world.node("noah")

    sent = noah.call("sent", id=noah.call("message", conv="rusty", text="Hello from Node")["id"])
    assert (sent["conv"], sent["seq"], sent["from"], sent["device"]) == ("rusty", 1, "noah", "node")
    got = listener.wait({"event": "message", "seq": 1})
    assert stamped(got) == {
        "event": "message",
        "conv": "noah",
        "seq": 1,
        "from": "noah",
        "own": False,
        "text": "Hello from Node",
    }

    world.rust("rusty").run("send", "noah", "Hello back from Rust")
    got = noah.wait("durable", {"type": "message", "seq": 2})
    assert stamped(got) == {"type": "message", "conv": "rusty", "seq": 2, "text": "Hello back from Rust"}
    # The listening Rust device sees what its user sent from another device as its own.
    own = listener.wait({"event": "message", "seq": 2})
    assert (own["conv"], own["from"], own["own"], own["text"]) == ("noah", "rusty", True, "Hello back from Rust")


@pytest.mark.parametrize("mqtt_version", [4, 5])
def test_a_wrong_password_is_refused(world: World, mqtt_version: int) -> None:
    world.users("pia")
    device = Device(world.server.tcp_url, "pia", "py", "not-her-password", mqtt_version=mqtt_version)
    with pytest.raises(ConnectionRefusedError):
        device.connect()
    with pytest.raises(ConnectionRefusedError):
        NodeDevice(world.server.tcp_url, "pia", "node", mqtt_version, password="not-her-password")
