"""MQTT.js over WebSocket (the ws:// address `mqchat serve` prints), MQTT 5, with a Python
device over TCP."""

from __future__ import annotations

from harness import World, stamped
from mqchat_py import packet_to_json


def test_node_over_websocket(world: World) -> None:
    world.users("pia", "wendy")
    wendy = world.node("wendy", "browser", mqtt_version=5, websocket=True)
    pia = world.python("pia")

    pia.wait_sent(pia.send_message("wendy", "over TCP"))
    assert stamped(wendy.wait("durable", {"type": "message"})) == {
        "type": "message",
        "conv": "pia",
        "seq": 1,
        "text": "over TCP",
    }
    wendy.call("delivered", conv="pia", upTo=1)
    assert stamped(packet_to_json(pia.wait_for("durable", "delivered"))) == {
        "type": "delivered",
        "conv": "wendy",
        "up-to": 1,
    }

    sent = wendy.call("sent", id=wendy.call("message", conv="pia", text="over WebSocket", replyTo=1)["id"])
    assert (sent["seq"], sent["from"], sent["device"]) == (2, "wendy", "browser")
    got = packet_to_json(pia.wait_for("durable", "message", seq=2))
    assert stamped(got) == {"type": "message", "conv": "wendy", "seq": 2, "text": "over WebSocket", "reply-to": 1}

    history = wendy.call("history", conv="pia", after=0)
    assert [(e["seq"], e["text"]) for e in history["events"]] == [(1, "over TCP"), (2, "over WebSocket")]
