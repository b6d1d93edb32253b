"""Client message ids (spec section 6): 63-bit, time-ordered, with a 13-character text form.

bit 63: 0 | bits 62-22: milliseconds since 2024-01-01T00:00:00Z | bits 21-0: random start
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

EPOCH_MS = 1_704_067_200_000
"""2024-01-01T00:00:00Z in milliseconds since the Unix epoch."""

MAX_ID = 2**63 - 1
RANDOM_BITS = 22
TEXT_LENGTH = 13
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_READ_ALIASES = {"i": "1", "l": "1", "o": "0"}


def id_to_text(value: int) -> str:
    """The text form: Crockford base32, most significant first, zero-padded, lower case."""
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{value} is not a message id")
    digits = []
    for _ in range(TEXT_LENGTH):
        digits.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(digits))


def id_from_text(text: str) -> int:
    """Reads a text form, accepting upper case and `i`, `l` for 1 and `o` for 0."""
    if len(text) != TEXT_LENGTH:
        raise ValueError(f"{text!r}: a message id has {TEXT_LENGTH} characters")
    value = 0
    for char in text.lower():
        digit = ALPHABET.find(_READ_ALIASES.get(char, char))
        if digit < 0:
            raise ValueError(f"{text!r}: {char!r} is not a base32 digit")
        value = value << 5 | digit
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{text!r} is not a message id")
    return value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _random_low_bits() -> int:
    return secrets.randbits(RANDOM_BITS)


class IdGenerator:
    """Makes strictly increasing ids for one device.

    `last` is the last id this device made (persisted by the application, if it can), so
    that ids are never reused across restarts even if the clock went back.
    """

    def __init__(
        self,
        last: int = 0,
        clock_ms: Callable[[], int] = _now_ms,
        random_low_bits: Callable[[], int] = _random_low_bits,
    ) -> None:
        self.last = last
        self._clock_ms = clock_ms
        self._random_low_bits = random_low_bits

    def next(self) -> int:
        candidate = (self._clock_ms() - EPOCH_MS) << RANDOM_BITS | self._random_low_bits()
        self.last = candidate if candidate > self.last else self.last + 1
        if self.last > MAX_ID:
            raise OverflowError("message ids exhausted")
        return self.last
