"""Group chat between the three implementations (spec sections 7.11 and 9): a group with one
member from each. Python creates it inviting Node and Rust; both accept; each sends a
message; every member sees every message, and the membership events, in the same order with
the same sequence numbers; markers reach the authors of the messages they cover (and no one
else); `group-info` lists the three members with their markers."""

from __future__ import annotations

import json
from typing import Any

from harness import ABSENT, World, stamped
from mqchat_py import Device, packet_to_json


def _view(packets: list[Any], group: str) -> list[tuple[int, str, str]]:
    """(seq, from, what) of the group's events as a member received them on its inbox."""
    return [
        (p["seq"], p["from"], p["text"] if p["type"] == "message" else f"{p['action']} {p.get('user', '')}")
        for p in packets
        if p["conv"] == group and p["type"] in ("message", "group-event")
    ]


def _python_view(device: Device, group: str) -> list[tuple[int, str, str]]:
    inbox = [packet_to_json(i.packet) for i in device.received.snapshot() if i.place.kind == "durable" and i.packet]
    return _view(inbox, group)


def test_group_with_a_member_from_each_implementation(world: World) -> None:
    world.users("pia", "noah", "rusty")
    listener = world.rust_listen("rusty")
    pia, noah = world.python("pia"), world.node("noah")
    # The Rust user's second device, to accept the invitation (the command line has no group
    # command yet); the Rust member then takes part from `mqchat listen` and `mqchat send`.
    rusty_other = world.python("rusty", device="py")

    # Python creates the group with both invitations at once.
    ack = pia.create_group("Trio", invite=["noah", "rusty"], description="one of each")
    group = ack.conv
    assert group is not None and group.startswith("#") and ack.seq == 1, packet_to_json(ack)

    # The invitations reach the invitees with the group's name (Node sees its own only).
    invitation = noah.wait("durable", {"type": "group-event", "action": "invited", "user": "noah"})
    assert stamped(invitation) == {
        "type": "group-event",
        "conv": group,
        "seq": invitation["seq"],
        "from": "pia",
        "action": "invited",
        "user": "noah",
        "name": "Trio",
    }
    assert noah.call("groupJoin", group=group, action="accept")["conv"] == group

    rusty_other.wait_for("durable", "group-event", conv=group, seq=3)
    listener.wait({"event": "other", "type": 33, "conv": group})
    rusty_other.group_join(group, "accept")

    # Everyone sees both joins; the Rust listener receives them as group events too.
    for who in (pia, rusty_other):
        who.wait_for("durable", "group-event", conv=group, seq=5)
    noah.wait("durable", {"type": "group-event", "conv": group, "action": "joined", "user": "rusty"})

    # One message from each, in turn.
    py_seq = pia.wait_sent(pia.send_message(group, "from python")).seq
    node_sent = noah.call("sent", id=noah.call("message", conv=group, text="from node")["id"])
    assert node_sent["seq"] == py_seq + 1
    world.rust("rusty").run("send", group, "from rust")
    rust_seq = py_seq + 2

    # Everyone receives every message with `from`, in the same order.
    sent = ((py_seq, "pia", "from python"), (py_seq + 1, "noah", "from node"), (rust_seq, "rusty", "from rust"))
    for seq, author, text in sent:
        listener.wait({"event": "message", "conv": group, "seq": seq, "from": author, "text": text})
        noah.wait("durable", {"type": "message", "conv": group, "seq": seq, "from": author, "text": text})
        assert pia.wait_for("durable", "message", conv=group, seq=seq).body["text"] == text

    # Another member's copy has `from` but, as in direct conversations, no `id` or `device`.
    assert stamped(noah.wait("durable", {"type": "message", "seq": py_seq})) == {
        "type": "message",
        "conv": group,
        "seq": py_seq,
        "from": "pia",
        "text": "from python",
    }

    pia_view = _python_view(pia, group)
    noah_view = _view([e["packet"] for e in noah.received() if e["kind"] == "durable" and e["packet"]], group)
    expected = [
        (1, "pia", "created "),
        (2, "pia", "invited noah"),
        (3, "pia", "invited rusty"),
        (4, "noah", "joined noah"),
        (5, "rusty", "joined rusty"),
        (6, "pia", "from python"),
        (7, "noah", "from node"),
        (8, "rusty", "from rust"),
    ]
    assert pia_view == expected
    # An invitee receives its own invitation, then everything from its joining on.
    assert noah_view == [e for e in expected if e[0] not in (1, 3)]
    assert _python_view(rusty_other, group) == [e for e in expected if e[0] not in (1, 2, 4)]
    listened = [json.loads(line) for line in listener.lines.snapshot()]
    assert [(e["seq"], e["from"], e["text"]) for e in listened if e.get("event") == "message"] == expected[5:]

    # Markers go to the authors of the events they newly cover: noah reads up to pia's
    # message; pia (its author) learns it, with `from`; rusty does not.
    noah.call("read", conv=group, upTo=py_seq)
    read = packet_to_json(pia.wait_for("durable", "read", conv=group, from_="noah"))
    assert stamped(read) == {"type": "read", "conv": group, "from": "noah", "up-to": py_seq}
    # The Rust device acknowledges delivery by itself: pia and noah learn it as authors.
    delivered = packet_to_json(pia.wait_for("durable", "delivered", conv=group, from_="rusty"))
    assert stamped(delivered) == {"type": "delivered", "conv": group, "from": "rusty", "up-to": delivered["up-to"]}
    assert delivered["up-to"] >= py_seq
    noah.wait("durable", {"type": "delivered", "conv": group, "from": "rusty"})
    # Python reads everything: noah and rusty (authors of 7 and 8) learn it.
    pia.send_read(group, rust_seq)
    assert stamped(noah.wait("durable", {"type": "read", "conv": group, "from": "pia"})) == {
        "type": "read",
        "conv": group,
        "from": "pia",
        "up-to": rust_seq,
    }
    assert listener.wait({"event": "read", "conv": group, "by": "pia"})["up-to"] == rust_seq

    # The roster: three members with their roles and markers.
    info = noah.call("groupInfo", group=group)
    assert info["type"] == "group-info-result" and info["conv"] == group and info["seq"] == rust_seq
    assert (info["name"], info["description"]) == ("Trio", "one of each")
    members = {m["user"]: m for m in info["members"]}
    assert {u: m["role"] for u, m in members.items()} == {"pia": "owner", "noah": "member", "rusty": "member"}
    assert members["pia"]["read"] == rust_seq
    assert members["noah"]["read"] == py_seq
    assert members["rusty"].get("invited", ABSENT) is ABSENT
