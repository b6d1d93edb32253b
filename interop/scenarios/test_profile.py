"""Profiles (spec sections 7.6 and 10): a profile change is a request answered with an ack
carrying the new version; the hub publishes the whole profile, retained, for any user."""

from __future__ import annotations

from harness import World, stamped
from mqchat_py import id_to_text, packet_to_json


def test_profiles(world: World) -> None:
    world.users("pia", "noah", "rusty")
    pia, noah = world.python("pia"), world.node("noah")

    ack = pia.set_profile(name="Pia", status="around")
    assert stamped(packet_to_json(ack)) == {"type": "ack", "id": id_to_text(ack.id), "seq": 1}
    assert noah.call("watchProfile", user="pia") == {"granted": True}
    assert stamped(noah.wait("profile", {"seq": 1})) == {"type": "profile", "seq": 1, "name": "Pia", "status": "around"}

    ack = noah.call("profile", status="")
    assert ack["type"] == "ack" and ack["seq"] == 1
    pia.set_profile(status="")
    assert stamped(noah.wait("profile", {"seq": 2})) == {"type": "profile", "seq": 2, "name": "Pia"}

    world.rust("rusty").run("profile", "--name", "Rusty")
    assert pia.watch_profile("rusty")
    assert stamped(packet_to_json(pia.wait_for("profile", "profile"))) == {"type": "profile", "seq": 1, "name": "Rusty"}
