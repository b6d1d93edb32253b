"""Group chat between the three implementations (spec sections 7.11 and 9): a group with one
member from each. Python creates it inviting Node and Rust; Node accepts with its client,
Rust with `mqchat group accept`; each sends a message; every member sees every message, and
the membership events, in the same order with the same sequence numbers; markers reach the
authors of the messages they cover; `group-info` (Node) and `mqchat group members` (Rust)
list the three members with their roles and markers."""

from __future__ import annotations

import json
from typing import Any

from harness import ABSENT, World, stamped
from mqchat_py import Device, packet_to_json

Seen = tuple[int, str, str]
"""(seq, author or actor, text or "action user") of one group event as a member saw it."""


def _view(packets: list[Any], group: str) -> list[Seen]:
    """The group's events as a member received them on its durable inbox (JSON rendering)."""
    return [
        (p["seq"], p["from"], p["text"] if p["type"] == "message" else f"{p['action']} {p.get('user', '')}")
        for p in packets
        if p["conv"] == group and p["type"] in ("message", "group-event")
    ]


def _python_view(device: Device, group: str) -> list[Seen]:
    inbox = [packet_to_json(i.packet) for i in device.received.snapshot() if i.place.kind == "durable" and i.packet]
    return _view(inbox, group)


def _rust_view(lines: list[str], group: str, user: str) -> list[Seen]:
    """The same from `mqchat listen --json` lines: messages, group events, the invitation."""
    seen: list[Seen] = []
    for e in map(json.loads, lines):
        if e.get("conv") != group:
            continue
        if e["event"] == "message":
            seen.append((e["seq"], e["from"], e["text"]))
        elif e["event"] == "group":
            seen.append((e["seq"], e["by"], f"{e['action']} {e.get('user') or ''}"))
        elif e["event"] == "invitation":
            seen.append((e["seq"], e["by"], f"invited {user}"))
    return seen


def test_group_with_a_member_from_each_implementation(world: World) -> None:
    world.users("pia", "noah", "rusty")
    listener = world.rust_listen("rusty")
    pia, noah, rusty = world.python("pia"), world.node("noah"), world.rust("rusty")

    # Python creates the group with both invitations at once.
    ack = pia.create_group("Trio", invite=["noah", "rusty"], description="one of each")
    group = ack.conv
    assert group is not None and group.startswith("#") and ack.seq == 1, packet_to_json(ack)

    # The invitations reach the invitees with the group's name.
    invitation = noah.wait("durable", {"type": "group-event", "action": "invited", "user": "noah"})
    assert stamped(invitation) == {
        "type": "group-event",
        "conv": group,
        "seq": 2,
        "from": "pia",
        "action": "invited",
        "user": "noah",
        "name": "Trio",
    }
    assert stamped(listener.wait({"event": "invitation", "conv": group})) == {
        "event": "invitation",
        "conv": group,
        "seq": 3,
        "by": "pia",
        "name": "Trio",
    }
    assert noah.call("groupJoin", group=group, action="accept")["seq"] == 4
    assert rusty.run("group accept", group) == [{"conv": group, "seq": 5, "duplicate": False}]

    # Everyone sees both joins.
    pia.wait_for("durable", "group-event", conv=group, seq=5)
    noah.wait("durable", {"type": "group-event", "conv": group, "action": "joined", "user": "rusty"})
    listener.wait({"event": "group", "conv": group, "seq": 5, "action": "joined", "user": "rusty", "own": True})

    # One message from each, in turn.
    assert pia.wait_sent(pia.send_message(group, "from python")).seq == 6
    assert noah.call("sent", id=noah.call("message", conv=group, text="from node")["id"])["seq"] == 7
    rusty.run("send", group, "from rust")

    # Everyone receives every message with `from`, in the same order.
    sent = ((6, "pia", "from python"), (7, "noah", "from node"), (8, "rusty", "from rust"))
    for seq, author, text in sent:
        listener.wait({"event": "message", "conv": group, "seq": seq, "from": author, "text": text})
        noah.wait("durable", {"type": "message", "conv": group, "seq": seq, "from": author, "text": text})
        assert pia.wait_for("durable", "message", conv=group, seq=seq).body["text"] == text
    # Another member's copy has `from` but, as in direct conversations, no `id` or `device`.
    assert stamped(noah.wait("durable", {"type": "message", "seq": 6})) == {
        "type": "message",
        "conv": group,
        "seq": 6,
        "from": "pia",
        "text": "from python",
    }

    expected = [
        (1, "pia", "created "),
        (2, "pia", "invited noah"),
        (3, "pia", "invited rusty"),
        (4, "noah", "joined noah"),
        (5, "rusty", "joined rusty"),
        *sent,
    ]
    assert _python_view(pia, group) == expected
    # The actor's own copies of group events carry its device, and the request's id on the
    # event that request made (the invitations made with the creation have none).
    created, invited = (pia.wait_for("durable", "group-event", conv=group, seq=n) for n in (1, 2))
    assert (created.id, created.device, invited.id, invited.device) == (ack.id, "py", None, "py")
    # An invitee receives its own invitation, then everything from its joining on.
    noah_inbox = [e["packet"] for e in noah.received() if e["kind"] == "durable" and e["packet"]]
    assert _view(noah_inbox, group) == [e for e in expected if e[0] not in (1, 3)]
    assert _rust_view(listener.lines.snapshot(), group, "rusty") == [e for e in expected if e[0] not in (1, 2, 4)]

    # Markers go to the authors of the events they newly cover: noah reads up to pia's
    # message; pia, its author, learns it with `from`.
    noah.call("read", conv=group, upTo=6)
    read = packet_to_json(pia.wait_for("durable", "read", conv=group, from_="noah"))
    assert stamped(read) == {"type": "read", "conv": group, "from": "noah", "up-to": 6}
    # The listening Rust device acknowledges delivery by itself: the authors learn it.
    delivered = packet_to_json(pia.wait_for("durable", "delivered", conv=group, from_="rusty"))
    assert stamped(delivered) == {"type": "delivered", "conv": group, "from": "rusty", "up-to": delivered["up-to"]}
    assert delivered["up-to"] >= 6
    noah.wait("durable", {"type": "delivered", "conv": group, "from": "rusty"})
    # Python reads everything: noah and rusty (authors of 7 and 8) learn it.
    pia.send_read(group, 8)
    assert stamped(noah.wait("durable", {"type": "read", "conv": group, "from": "pia"})) == {
        "type": "read",
        "conv": group,
        "from": "pia",
        "up-to": 8,
    }
    assert listener.wait({"event": "read", "conv": group, "by": "pia"})["up-to"] == 8

    # The roster, from Node and from Rust: three members with their roles and markers.
    info = noah.call("groupInfo", group=group)
    assert info["type"] == "group-info-result" and info["conv"] == group and info["seq"] == 8
    assert (info["name"], info["description"]) == ("Trio", "one of each")
    members = {m["user"]: m for m in info["members"]}
    assert {u: m["role"] for u, m in members.items()} == {"pia": "owner", "noah": "member", "rusty": "member"}
    assert (members["pia"]["read"], members["noah"]["read"]) == (8, 6)
    assert members["rusty"].get("invited", ABSENT) is ABSENT
    rust_roster = {m["user"]: m for m in rusty.run("group members", group)}
    assert {u: m["role"] for u, m in rust_roster.items()} == {"pia": "owner", "noah": "member", "rusty": "member"}
    assert (rust_roster["pia"]["read"], rust_roster["noah"]["read"]) == (8, 6)
