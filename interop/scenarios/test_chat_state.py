"""Chat states (spec section 7.2): signals on the ephemeral inbox, never stored, only between
users who already have a conversation."""

from __future__ import annotations

from harness import World
from mqchat_py import packet_to_json


def test_chat_states(world: World) -> None:
    world.users("pia", "noah", "rusty")
    pia, noah = world.python("pia"), world.node("noah")
    listener = world.rust_listen("rusty")

    # Strangers cannot send typing notifications.
    pia.send_chat_state("noah", "composing")
    refused = packet_to_json(pia.wait_for("reply", "error", conv="noah"))
    assert (refused["code"], refused["about"], "id" in refused) == (7, 2, False), refused

    pia.wait_sent(pia.send_message("noah", "hello"))
    noah.wait("durable", {"type": "message", "seq": 1})
    pia.send_chat_state("noah", "composing")
    assert noah.wait("ephemeral", {"type": "chat-state"}) == {"type": "chat-state", "conv": "pia", "state": "composing"}
    noah.call("chatState", conv="pia", state="paused")
    assert packet_to_json(pia.wait_for("ephemeral", "chat-state")) == {
        "type": "chat-state",
        "conv": "noah",
        "state": "paused",
    }

    noah.call("sent", id=noah.call("message", conv="rusty", text="hi Rust")["id"])
    listener.wait({"event": "message", "seq": 1})
    noah.call("chatState", conv="rusty", state="composing")
    assert listener.wait({"event": "chat-state"}) == {
        "event": "chat-state",
        "conv": "noah",
        "from": "noah",
        "state": "composing",
    }
