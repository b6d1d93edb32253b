"""What the vectors do not show: decoders accept indefinite lengths, encoders use the
shortest heads, hostile nesting is handled without recursion, and values are rewritten in
the deterministic encoding as a hub forwards them (spec section 5)."""

from __future__ import annotations

import pytest

from mqchat_py import cbor
from mqchat_py.hub_check import check_upstream
from mqchat_py.packet import Packet, PacketError, decode_packet, encode_packet
from mqchat_py.topics import Topics

ID = "1b05007f9df76a5f3c"


def test_indefinite_map_and_text_are_accepted() -> None:
    # {_ 0: 1, 1: id, 2: "bob", 8: (_ "H", "i")}
    packet = decode_packet(bytes.fromhex(f"bf0001 01{ID} 0263626f62 087f61486169ff ff".replace(" ", "")))
    assert (packet.type, packet.conv, packet.body) == (1, "bob", {"text": "Hi"})


def test_indefinite_array_is_accepted() -> None:
    payload = bytes.fromhex(f"a50001 01{ID} 0263626f62 08624869 0a9f656361726f6cff".replace(" ", ""))
    assert decode_packet(payload).body["mentions"] == ["carol"]


def test_duplicate_key_in_an_indefinite_map_is_malformed() -> None:
    with pytest.raises(PacketError) as refused:
        decode_packet(bytes.fromhex("bf0001086148086148ff"))
    assert refused.value.code == "malformed"


@pytest.mark.parametrize("size,head", [(23, "77"), (24, "7818"), (255, "78ff"), (256, "790100")])
def test_text_heads_are_shortest(size: int, head: str) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # two bytes per é
    encoded = encode_packet(Packet(1, id=1, conv="bob", body={"text": text})).hex()
    assert f"08{head}" in encoded


def test_deep_nesting_in_an_unknown_key_is_kept_without_recursion() -> None:
    nested = b"\x81" * 50_000 + b"\x00"
    packet = decode_packet(bytes.fromhex(f"a50001 01{ID} 0263626f62 08624869 1863".replace(" ", "")) + nested)
    assert packet.unknown == {99: nested}
    assert packet.body == {"text": "Hi"}
    assert encode_packet(packet).endswith(nested)


@pytest.mark.parametrize(
    "item,expected",
    [
        ("83 01 02 03", "83 01 02 03"),
        ("18 17", "17"),
        ("1b 0000000000000001", "01"),
        ("5f 41 01 42 0203 ff", "43 010203"),
        ("7f 61 48 61 69 ff", "62 4869"),
        ("9f 01 9f ff ff", "82 01 80"),
        ("bf 61 61 00 20 00 18 18 00 ff", "a3 1818 00 20 00 6161 00"),
        ("d8 01 00", "c1 00"),
        ("fb 3ff8000000000000", "f9 3e00"),
        ("fb 40f86a0000000000", "fa 47c35000"),
        ("fb 3ff199999999999a", "fb 3ff199999999999a"),
        ("fa 7f800000", "f9 7c00"),
        ("fb 8000000000000000", "f9 8000"),
        ("fa 33800000", "f9 0001"),
        ("fb 7ff8000000000001", "f9 7e00"),
        ("f8 20", "f8 20"),
    ],
)
def test_values_are_rewritten_deterministically(item: str, expected: str) -> None:
    assert cbor.deterministic(bytes.fromhex(item.replace(" ", ""))).hex() == expected.replace(" ", "")


@pytest.mark.parametrize(
    "item",
    ["a2 01 00 18 01 00", "bf 01 ff", "7f 41 48 ff", "62 c328", "f8 14", "81 ff", "01 00", "81 81 81 81 00", "c1 c1 c1 c1 00"],
)
def test_values_the_hub_refuses(item: str) -> None:
    with pytest.raises(cbor.MalformedError):
        cbor.deterministic(bytes.fromhex(item.replace(" ", "")), max_nesting=4)


def test_the_hub_refuses_hostile_nesting_without_recursion() -> None:
    payload = bytes.fromhex(f"a50001 01{ID} 0263626f62 08624869 1863".replace(" ", "")) + b"\x81" * 50_000 + b"\x00"
    with pytest.raises(PacketError) as refused:
        check_upstream(Topics("mq"), "mq/up/alice/phone", payload)
    assert refused.value.code == "malformed"
