"""What the vectors do not show: decoders accept indefinite lengths, encoders use the
shortest heads, and hostile nesting is handled without recursion (spec section 5)."""

from __future__ import annotations

import pytest

from mqchat_py.packet import Packet, PacketError, decode_packet, encode_packet

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
