"""Delivered and read markers (spec sections 7.3 and 9) in both directions: Python and Node
with each other, Python and Rust. Markers are forwarded to the peer without `from`, and a
read marker also to the reader's own devices with `from` and `device`; a private read marker
only to the reader's own devices.

The Rust command line sends delivered markers by itself while it listens, but read markers
only from the interactive `mqchat chat`, so Rust's read markers are not checked here."""

from __future__ import annotations

from harness import ABSENT, World, stamped
from mqchat_py import packet_to_json


def test_receipts_between_python_and_node(world: World) -> None:
    world.users("pia", "noah")
    pia, noah = world.python("pia"), world.node("noah")

    for text in ("one", "two"):
        pia.wait_sent(pia.send_message("noah", text))
    noah.wait("durable", {"type": "message", "seq": 2})
    noah.call("delivered", conv="pia", upTo=2)
    noah.call("read", conv="pia", upTo=1)

    assert stamped(packet_to_json(pia.wait_for("durable", "delivered"))) == {
        "type": "delivered",
        "conv": "noah",
        "up-to": 2,
    }
    assert stamped(packet_to_json(pia.wait_for("durable", "read"))) == {"type": "read", "conv": "noah", "up-to": 1}
    assert stamped(noah.wait("durable", {"type": "read"})) == {
        "type": "read",
        "conv": "pia",
        "from": "noah",
        "device": "node",
        "up-to": 1,
    }

    sent = noah.call("sent", id=noah.call("message", conv="pia", text="three")["id"])
    assert sent["seq"] == 3
    pia.wait_for("durable", "message", seq=3)
    pia.send_delivered("noah", 3)
    pia.send_read("noah", 3)

    assert stamped(noah.wait("durable", {"type": "delivered"})) == {"type": "delivered", "conv": "pia", "up-to": 3}
    assert stamped(noah.wait("durable", {"type": "read", "from": ABSENT})) == {
        "type": "read",
        "conv": "pia",
        "up-to": 3,
    }
    assert stamped(packet_to_json(pia.wait_for("durable", "read", from_="pia"))) == {
        "type": "read",
        "conv": "noah",
        "from": "pia",
        "device": "py",
        "up-to": 3,
    }

    # A private read marker reaches the reader's own devices only. Pia's inbox is in order,
    # so once the next message arrives, the marker would have arrived before it.
    noah.call("read", conv="pia", upTo=3, private=True)
    assert stamped(noah.wait("durable", {"type": "read", "from": "noah", "up-to": 3})) == {
        "type": "read",
        "conv": "pia",
        "from": "noah",
        "device": "node",
        "up-to": 3,
        "private": True,
    }
    noah.call("sent", id=noah.call("message", conv="pia", text="four")["id"])
    pia.wait_for("durable", "message", seq=4)
    reads = [
        i.packet.body["up-to"]
        for i in pia.received.snapshot()
        if i.is_packet("durable", "read") and i.packet.from_ is None
    ]
    assert reads == [1], "pia learnt of noah's private read marker"


def test_receipts_between_python_and_rust(world: World) -> None:
    world.users("pia", "rusty")
    listener = world.rust_listen("rusty")
    pia = world.python("pia")

    # Rust to Python: the listening Rust device acknowledges delivery by itself.
    pia.wait_sent(pia.send_message("rusty", "ping"))
    listener.wait({"event": "message", "seq": 1, "text": "ping"})
    assert stamped(packet_to_json(pia.wait_for("durable", "delivered"))) == {
        "type": "delivered",
        "conv": "rusty",
        "up-to": 1,
    }

    # Python to Rust.
    world.rust("rusty").run("send", "pia", "pong")
    pia.wait_for("durable", "message", seq=2)
    pia.send_delivered("rusty", 2)
    pia.send_read("rusty", 2)
    assert listener.wait({"event": "delivered", "up-to": 2}) == {
        "event": "delivered",
        "conv": "pia",
        "by": "pia",
        "up-to": 2,
    }
    assert listener.wait({"event": "read"}) == {"event": "read", "conv": "pia", "by": "pia", "up-to": 2, "own": False}
