"""Sync and history after being offline (spec sections 11 and 13): the archive, not the
broker's queue, is the truth. A device that was away asks what changed, then the events."""

from __future__ import annotations

from harness import World, stamped
from mqchat_py import packet_to_json


def texts(history: dict) -> list[tuple[int, str]]:
    return [(e["seq"], e["text"]) for e in history["events"]]


def test_sync_and_history_after_being_offline(world: World) -> None:
    world.users("pia", "noah", "rusty")
    pia, noah = world.python("pia"), world.node("noah")
    pia.disconnect()

    for text in ("one", "two"):
        noah.call("sent", id=noah.call("message", conv="pia", text=text)["id"])
    world.rust("rusty").run("send", "pia", "three")

    pia = world.python("pia", connect=False)
    assert pia.connect(), "the broker kept the session (clean start 0, session expiry)"
    result = packet_to_json(pia.sync())
    assert result["type"] == "sync-result" and not result.get("more", False)
    by_conv = {c["conv"]: c for c in result["conversations"]}
    assert [c["conv"] for c in result["conversations"]] == ["noah", "rusty"], "ascending change tokens"
    assert stamped(by_conv["noah"]["last"]) == {"type": "message", "conv": "noah", "seq": 2, "text": "two"}
    assert (by_conv["noah"]["last-seq"], by_conv["noah"]["unread"]) == (2, 2)
    assert (by_conv["rusty"]["last-seq"], by_conv["rusty"]["unread"], by_conv["rusty"]["last"]["text"]) == (
        1,
        1,
        "three",
    )
    assert result["token"] >= by_conv["rusty"]["change"]

    assert texts(packet_to_json(pia.history("noah", after=0))) == [(1, "one"), (2, "two")]
    assert texts(packet_to_json(pia.history("rusty", after=0))) == [(1, "three")]
    newest = packet_to_json(pia.history("noah", limit=1))
    assert (texts(newest), newest["more"], newest["last-seq"]) == ([(2, "two")], True, 2)
    assert packet_to_json(pia.sync(after=result["token"]))["conversations"] == []

    # A device with no storage lists conversations newest first, page by page.
    tablet = world.python("pia", "tablet", mqtt_version=4)
    first = packet_to_json(tablet.sync(newest_first=True, limit=1))
    assert ([c["conv"] for c in first["conversations"]], first["more"]) == (["rusty"], True)
    second = packet_to_json(tablet.sync(newest_first=True, limit=1, before=first["conversations"][0]["change"]))
    assert [c["conv"] for c in second["conversations"]] == ["noah"] and not second.get("more", False)

    # Node's sync and history show its own events as its own copies.
    [conversation] = noah.call("sync")["conversations"]
    assert (conversation["conv"], conversation["last-seq"], conversation["last"]["from"]) == ("pia", 2, "noah")
    own = noah.call("history", conv="pia")
    assert [(e["seq"], e["text"], e["from"], e["device"]) for e in own["events"]] == [
        (1, "one", "noah", "node"),
        (2, "two", "noah", "node"),
    ]
    assert all("id" in e for e in own["events"])


def test_history_pages_fit_a_device_that_announces_no_packet_size(world: World) -> None:
    """An MQTT 5 Paho device announces no Maximum Packet Size (Paho's default), and the
    embedded broker sends such a device nothing larger than its own packet limit: the hub
    cuts history pages to fit and marks `more`, and the device pages on to the end (spec 11).
    Twenty messages of 16 KiB do not fit one page."""
    world.users("vera", "wim")
    wim, vera = world.python("wim"), world.python("vera")
    text = "x" * (16 * 1024 - 16)
    for _ in range(20):
        wim.wait_sent(wim.send_message("vera", text))
    after, pages = 0, 0
    while after < 20:
        page = packet_to_json(vera.history("wim", after=after, limit=50))
        seqs = [e["seq"] for e in page["events"]]
        assert seqs and seqs[0] == after + 1, seqs
        after = seqs[-1]
        assert page.get("more", False) == (after < 20), (after, page.get("more"))
        pages += 1
    assert pages > 1, "one page held twenty 16 KiB messages"

