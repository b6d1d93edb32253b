"""Contacts and presence (spec sections 7.4, 7.5 and 10): presence is readable only by
accepted contacts; a device publishes its own, retained; a clean leave publishes `offline`
with `last-active`; an abrupt drop makes the broker publish the will, which the hub replaces
with a stamped `offline`."""

from __future__ import annotations

from harness import TIMEOUT, World, stamped
from mqchat_py import Device, Incoming, packet_to_json

OFFLINE = {"type": "presence", "availability": "offline"}


def presence_of(device: Device, user: str, of_device: str, availability: str, last_active: bool = False) -> dict:
    """The first presence of `user`'s `of_device` with this availability (and, if asked, a
    `last-active` time), as JSON."""

    def match(i: Incoming) -> bool:
        return (
            i.is_packet("presence", "presence")
            and (i.place.user, i.place.device) == (user, of_device)
            and i.packet.body["availability"] == availability
            and ("last-active" in i.packet.body) == last_active
        )

    found = device.received.wait_for(match, TIMEOUT, f"presence of {user}:{of_device} {availability}")
    return packet_to_json(found.packet)


def test_contacts_then_presence_between_python_and_node(world: World) -> None:
    world.users("pia", "noah")
    pia, noah = world.python("pia"), world.node("noah")
    assert not pia.watch_presence("noah"), "presence is for accepted contacts only"

    request = pia.send_contact("noah", "request", note="it's Pia")
    assert pia.wait_sent(request).body == {"action": "request", "note": "it's Pia"}
    got = noah.wait("durable", {"type": "contact"})
    assert stamped(got) == {"type": "contact", "conv": "pia", "seq": 1, "action": "request", "note": "it's Pia"}
    accept = noah.call("contact", conv="pia", action="accept")["id"]
    own = {
        "type": "contact",
        "id": accept,
        "conv": "pia",
        "seq": 2,
        "from": "noah",
        "device": "node",
        "action": "accept",
    }
    assert stamped(noah.call("sent", id=accept)) == own
    got = packet_to_json(pia.wait_for("durable", "contact", seq=2))
    assert stamped(got) == {"type": "contact", "conv": "noah", "seq": 2, "action": "accept"}

    # Contacts see the presence of each other's devices, with the status text.
    assert pia.watch_presence("noah")
    assert stamped(presence_of(pia, "noah", "node", "available")) == {"type": "presence", "availability": "available"}
    noah.call("presence", availability="busy", status="climbing")
    busy = presence_of(pia, "noah", "node", "busy")
    assert stamped(busy) == {"type": "presence", "availability": "busy", "status": "climbing"}
    assert noah.call("watchPresence", user="pia") == {"granted": True}
    noah.wait("presence", {"availability": "available"})

    # Leaving cleanly: an offline presence with the time the device was last active.
    pia.disconnect()
    assert stamped(stamped(noah.wait("presence", {"availability": "offline"})), "last-active") == OFFLINE
    tablet = world.python("pia", "tablet", mqtt_version=4)
    assert tablet.watch_presence("noah")
    presence_of(tablet, "noah", "node", "busy")
    noah.call("disconnect")
    left = presence_of(tablet, "noah", "node", "offline", last_active=True)
    assert stamped(stamped(left), "last-active") == OFFLINE

    # Dropping abruptly: the will, then the hub's stamped replacement, retained.
    phone = world.node("noah", "phone")
    presence_of(tablet, "noah", "phone", "available")
    phone.kill()
    assert presence_of(tablet, "noah", "phone", "offline") == OFFLINE
    dropped = presence_of(tablet, "noah", "phone", "offline", last_active=True)
    assert stamped(stamped(dropped), "last-active") == OFFLINE
    late = world.python("pia", "laptop")
    assert late.watch_presence("noah")
    retained = presence_of(late, "noah", "phone", "offline", last_active=True)
    assert retained == dropped
    assert all(i.retain for i in late.received.snapshot() if i.place.kind == "presence")


def test_contacts_then_presence_between_python_and_rust(world: World) -> None:
    world.users("pia", "rusty")
    pia = world.python("pia")

    [requested] = world.rust("rusty").run("contact", "request", "pia", "--note", "from Rust")
    assert (requested["conv"], requested["seq"], requested["action"]) == ("pia", 1, "request")
    assert stamped(packet_to_json(pia.wait_for("durable", "contact"))) == {
        "type": "contact",
        "conv": "rusty",
        "seq": 1,
        "action": "request",
        "note": "from Rust",
    }
    assert pia.wait_sent(pia.send_contact("rusty", "accept")).seq == 2

    listener = world.rust_listen("rusty", "--watch", "pia")
    seen = listener.wait({"event": "presence", "user": "pia"})
    assert (seen["device"], seen["availability"]) == ("py", "available")
    pia.set_presence("away", status="brb")
    seen = listener.wait({"event": "presence", "user": "pia", "availability": "away"})
    assert (seen["device"], seen["status"], seen["last-active"]) == ("py", "brb", None)
    assert pia.watch_presence("rusty")
    assert stamped(presence_of(pia, "rusty", "cli", "available")) == {"type": "presence", "availability": "available"}

    listener.kill()
    assert presence_of(pia, "rusty", "cli", "offline") == OFFLINE
    dropped = presence_of(pia, "rusty", "cli", "offline", last_active=True)
    assert stamped(stamped(dropped), "last-active") == OFFLINE


def test_a_device_follows_its_contacts_presence_as_they_change(world: World) -> None:
    """Spec 4: a device subscribes to a contact's presence when a `contact` event makes them
    contacts during its session, and unsubscribes when one removes the other; the broker ends
    the subscription too, so nothing more of the former contact's presence arrives."""
    world.users("pia", "noah")
    pia, noah = world.python("pia"), world.node("noah")
    pia.wait_sent(pia.send_contact("noah", "request"))
    noah.wait("durable", {"type": "contact"})
    noah.call("sent", id=noah.call("contact", conv="pia", action="accept")["id"])
    # No watch_presence: the accept alone brings noah's retained presence.
    presence_of(pia, "noah", "node", "available")
    noah.call("presence", availability="busy", status="climbing")
    presence_of(pia, "noah", "node", "busy")

    removed = noah.call("contact", conv="pia", action="remove")["id"]
    noah.call("sent", id=removed)
    pia.wait_for("durable", "contact", seq=3)
    start = len(pia.received)
    noah.call("presence", availability="away")
    # A message after the change: once it is in, a presence sent before it would be too.
    noah.call("sent", id=noah.call("message", conv="pia", text="still here")["id"])
    pia.wait_for("durable", "message", seq=4)
    later = [i for i in pia.received.snapshot()[start:] if i.place.kind == "presence" and i.place.user == "noah"]
    assert not [i for i in later if i.packet is not None and i.packet.body["availability"] == "away"], later


def test_a_node_device_follows_a_new_contacts_presence(world: World) -> None:
    """The same rule in the Node client: an accept arriving during its session subscribes it
    to the new contact's presence."""
    world.users("pia", "noah")
    pia, noah = world.python("pia"), world.node("noah")
    noah.call("sent", id=noah.call("contact", conv="pia", action="request")["id"])
    pia.wait_for("durable", "contact", seq=1)
    pia.wait_sent(pia.send_contact("noah", "accept"))
    noah.wait("presence", {"availability": "available"})
