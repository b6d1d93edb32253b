"""Client message ids (spec section 6): layout, text form, monotonic generation."""

from __future__ import annotations

import pytest

from mqchat_py.ids import EPOCH_MS, IdGenerator, id_from_text, id_to_text


def test_the_spec_example() -> None:
    assert id_to_text(360428286627176252) == "0a03zkqvpmqsw"
    assert id_from_text("0a03zkqvpmqsw") == 360428286627176252


@pytest.mark.parametrize("text", ["0A03ZKQVPMQSW", "oa03zkqvpmqsw", "OA03ZKQVPMQSW"])
def test_readers_accept_upper_case_and_o_for_zero(text: str) -> None:
    assert id_from_text(text) == 360428286627176252


def test_readers_read_i_and_l_as_one() -> None:
    assert id_from_text("000000000000i") == id_from_text("000000000000l") == 1


@pytest.mark.parametrize("text", ["0a03zkqvpmqs", "0a03zkqvpmqsww", "0a03zkqvpmqsu", "8000000000000", "0000000000000"])
def test_readers_refuse_what_is_not_an_id(text: str) -> None:
    with pytest.raises(ValueError):
        id_from_text(text)


def test_layout_is_milliseconds_then_22_random_bits() -> None:
    ids = IdGenerator(clock_ms=lambda: EPOCH_MS + 1000, random_low_bits=lambda: 5)
    assert ids.next() == 1000 << 22 | 5


def test_ids_strictly_increase_when_the_clock_stands_still_or_goes_back() -> None:
    clock = iter([EPOCH_MS + 2000, EPOCH_MS + 2000, EPOCH_MS + 1000])
    ids = IdGenerator(clock_ms=lambda: next(clock), random_low_bits=lambda: 7)
    first = ids.next()
    assert [ids.next(), ids.next()] == [first + 1, first + 2]


def test_a_generator_continues_after_the_last_persisted_id() -> None:
    last = (5000 << 22) | 99
    ids = IdGenerator(last=last, clock_ms=lambda: EPOCH_MS + 10, random_low_bits=lambda: 0)
    assert ids.next() == last + 1
