"""The CBOR layer of mqchat payloads (spec section 5).

A payload is one CBOR map with unsigned integer keys. This module splits such a map into its
keys and the exact bytes of each value, so that unknown values can be kept and forwarded byte
for byte, and assembles maps in the deterministic encoding the spec requires (definite
lengths, shortest heads, ascending keys). Scalar values (integers, text, booleans) are
decoded and encoded with cbor2; the structure around them is walked here, because cbor2
neither exposes item boundaries nor rejects duplicate keys or trailing bytes. The hub's
deeper checks of values (nesting, a key twice in any map) and its deterministic re-encoding
of them are in `deterministic`.
"""

from __future__ import annotations

import math
import struct

import cbor2

MAX_KEY = 2**32 - 1

MAX_NESTING = 16
"""Levels a packet sent to the hub may nest, its map being level 1 (section 5)."""

MAX_NESTING_DECODED = 32
"""Levels a decoder accepts: the hub's results wrap stored packets up to 3 levels deeper."""

MAJOR_UINT = 0
MAJOR_NINT = 1
MAJOR_BYTES = 2
MAJOR_TEXT = 3
MAJOR_ARRAY = 4
MAJOR_MAP = 5
MAJOR_TAG = 6
MAJOR_SIMPLE = 7

INDEFINITE = 31
BREAK = 0xFF


class MalformedError(ValueError):
    """The bytes are not one well-formed CBOR item of the shape a payload needs."""


def read_head(buf: bytes, pos: int) -> tuple[int, int | None, int]:
    """Reads the head of the item at `pos`: (major type, argument, position after the head).

    The argument is None for an indefinite length (or a break, major type 7).
    """
    if pos >= len(buf):
        raise MalformedError("unexpected end of data")
    first = buf[pos]
    major, info = first >> 5, first & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info <= 27:
        size = 1 << (info - 24)
        if pos + size > len(buf):
            raise MalformedError("unexpected end of data")
        return major, int.from_bytes(buf[pos : pos + size], "big"), pos + size
    if info == INDEFINITE and major in (MAJOR_BYTES, MAJOR_TEXT, MAJOR_ARRAY, MAJOR_MAP, MAJOR_SIMPLE):
        return major, None, pos
    raise MalformedError(f"invalid additional information {info} for major type {major}")


def _skip_bytes(buf: bytes, pos: int, length: int) -> int:
    if pos + length > len(buf):
        raise MalformedError("unexpected end of data")
    return pos + length


def _skip_string(buf: bytes, pos: int, major: int, length: int | None) -> int:
    if length is not None:
        return _skip_bytes(buf, pos, length)
    while True:  # indefinite: definite chunks of the same major type, then a break
        chunk_major, chunk_length, pos = read_head(buf, pos)
        if chunk_major == MAJOR_SIMPLE and chunk_length is None:
            return pos
        if chunk_major != major or chunk_length is None:
            raise MalformedError("bad chunk in an indefinite-length string")
        pos = _skip_bytes(buf, pos, chunk_length)


def item_end(buf: bytes, pos: int) -> int:
    """Returns where the well-formed item starting at `pos` ends.

    Iterative, so hostile nesting cannot exhaust the stack. `open_items` holds, for each
    container being read, how many items it still needs (None: indefinite, until a break).
    """
    open_items: list[int | None] = []
    while True:
        major, arg, pos = read_head(buf, pos)
        if major == MAJOR_SIMPLE and arg is None:  # a break
            if not open_items or open_items[-1] is not None:
                raise MalformedError("break outside an indefinite-length container")
            open_items.pop()
        elif major in (MAJOR_BYTES, MAJOR_TEXT):
            pos = _skip_string(buf, pos, major, arg)
        elif major in (MAJOR_ARRAY, MAJOR_MAP):
            count = None if arg is None else arg * (2 if major == MAJOR_MAP else 1)
            if count != 0:
                open_items.append(count)
                continue
        elif major == MAJOR_TAG:
            continue  # the tagged item follows and completes this one
        # One item is complete: count it in the containers it closes.
        while open_items and open_items[-1] is not None:
            open_items[-1] -= 1
            if open_items[-1] > 0:
                break
            open_items.pop()
        if not open_items:
            return pos


def split_map(buf: bytes) -> dict[int, bytes]:
    """Splits a payload into {key: the bytes of its value}, in the order of the payload.

    Rejects what section 5 tells decoders to reject, except a missing key 0 (the caller's
    concern): not one well-formed item, trailing bytes, not a map, a key that is not an
    unsigned integer below 2^32, the same key twice.
    """
    end = item_end(buf, 0)
    if end != len(buf):
        raise MalformedError(f"{len(buf) - end} trailing bytes")
    major, count, pos = read_head(buf, 0)
    if major != MAJOR_MAP:
        raise MalformedError("the payload is not a map")
    entries: dict[int, bytes] = {}
    while count is None or len(entries) < count:
        if count is None and buf[pos] == BREAK:
            break
        key_major, key, pos = read_head(buf, pos)
        if key_major != MAJOR_UINT or key is None or key > MAX_KEY:
            raise MalformedError("a key that is not an unsigned integer below 2^32")
        if key in entries:
            raise MalformedError(f"key {key} twice")
        value_end = item_end(buf, pos)
        entries[key] = buf[pos:value_end]
        pos = value_end
    return entries


def split_array(raw: bytes) -> list[bytes]:
    """Splits an encoded array (already checked well-formed) into the bytes of its items."""
    major, count, pos = read_head(raw, 0)
    if major != MAJOR_ARRAY:
        raise ValueError("not an array")
    items: list[bytes] = []
    while count is None or len(items) < count:
        if count is None and raw[pos] == BREAK:
            break
        end = item_end(raw, pos)
        items.append(raw[pos:end])
        pos = end
    return items


def major_type(raw: bytes) -> int:
    """The major type of an encoded item."""
    return raw[0] >> 5


def encode_head(major: int, arg: int) -> bytes:
    """The shortest head for a major type and argument."""
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError(f"{arg} does not fit 64 bits")


def encode_map(entries: dict[int, bytes]) -> bytes:
    """A map of already encoded values, keys in ascending order, definite length."""
    parts = [encode_head(MAJOR_MAP, len(entries))]
    for key in sorted(entries):
        parts.append(encode_head(MAJOR_UINT, key))
        parts.append(entries[key])
    return b"".join(parts)


def encode_array(items: list[bytes]) -> bytes:
    """An array of already encoded items, definite length."""
    return encode_head(MAJOR_ARRAY, len(items)) + b"".join(items)


def decode_scalar(raw: bytes) -> object:
    """Decodes one encoded item (an integer, text or boolean) with cbor2."""
    try:
        return cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError) as e:
        raise MalformedError(str(e)) from e


def encode_scalar(value: int | str | bool) -> bytes:
    """Encodes an integer, text or boolean with cbor2 (always the shortest form)."""
    return cbor2.dumps(value)


def _float(value: float) -> bytes:
    """The shortest of half, single and double precision that keeps the value; NaN as f97e00."""
    if math.isnan(value):
        return bytes([0xF9, 0x7E, 0x00])
    double = struct.pack(">d", value)
    for head, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, value)
        except OverflowError:
            continue
        if struct.pack(">d", struct.unpack(fmt, packed)[0]) == double:
            return bytes([head]) + packed
    return bytes([0xFB]) + double


def _simple(info: int, arg: int) -> bytes:
    """A simple value or float (major type 7) in its deterministic form."""
    if info < 24:
        return bytes([0xE0 | info])
    if info == 24:
        if arg < 32:
            raise MalformedError("a simple value below 32 in two bytes")
        return bytes([0xF8, arg])
    if info == 25:
        bits = arg.to_bytes(2, "big")
        return _float(float("nan")) if math.isnan(struct.unpack(">e", bits)[0]) else b"\xf9" + bits
    fmt, size = (">f", 4) if info == 26 else (">d", 8)
    return _float(struct.unpack(fmt, arg.to_bytes(size, "big"))[0])


def _close(container: list) -> bytes:
    """A container's deterministic encoding, once all its items are read."""
    major, _, tag, items = container
    if major == MAJOR_ARRAY:
        return encode_head(MAJOR_ARRAY, len(items)) + b"".join(items)
    if major == MAJOR_TAG:
        return encode_head(MAJOR_TAG, tag) + items[0]
    if len(items) % 2:
        raise MalformedError("a map ends after a key")
    entries = sorted(zip(items[0::2], items[1::2]), key=lambda entry: entry[0])
    if any(a[0] == b[0] for a, b in zip(entries, entries[1:])):
        raise MalformedError("a map with the same key twice")
    return encode_head(MAJOR_MAP, len(entries)) + b"".join(k + v for k, v in entries)


def _string(buf: bytes, pos: int, major: int, length: int | None) -> tuple[bytes, int]:
    """A string item's bytes (chunks joined; text checked UTF-8 chunk by chunk), and its end."""
    chunks = []
    if length is not None:
        chunks.append((pos, length))
        pos = _skip_bytes(buf, pos, length)
    else:
        while True:
            chunk_major, chunk_length, pos = read_head(buf, pos)
            if chunk_major == MAJOR_SIMPLE and chunk_length is None:
                break
            if chunk_major != major or chunk_length is None:
                raise MalformedError("bad chunk in an indefinite-length string")
            chunks.append((pos, chunk_length))
            pos = _skip_bytes(buf, pos, chunk_length)
    content = b""
    for start, size in chunks:
        chunk = buf[start : start + size]
        if major == MAJOR_TEXT:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MalformedError("text that is not UTF-8") from e
        content += chunk
    return encode_head(major, len(content)) + content, pos


def deterministic(raw: bytes, max_nesting: int = MAX_NESTING_DECODED, level: int = 1) -> bytes:
    """Re-encodes one item in the deterministic encoding of section 5 (RFC 8949 4.2.1).

    `raw` is a value inside containers `level` deep (1: a value of a packet's map). Raises
    MalformedError if it is not exactly one well-formed item, nests past `max_nesting`, or
    has a map with the same key twice. Iterative: `open_items` holds, for each container
    being read, [major type, items still needed (None: until a break), tag, items so far].
    """
    open_items: list[list] = []
    pos = 0
    while True:
        info = raw[pos] & 0x1F if pos < len(raw) else 0
        major, arg, pos = read_head(raw, pos)
        if major == MAJOR_TAG or (major in (MAJOR_ARRAY, MAJOR_MAP) and arg != 0):
            if level + len(open_items) + 1 > max_nesting:
                raise MalformedError(f"nests deeper than {max_nesting} levels")
            if major == MAJOR_TAG:
                needed = 1
            else:
                needed = None if arg is None else arg * (2 if major == MAJOR_MAP else 1)
            open_items.append([major, needed, arg, []])
            continue
        if major == MAJOR_SIMPLE and arg is None:  # a break
            if not open_items or open_items[-1][1] is not None:
                raise MalformedError("break outside an indefinite-length container")
            item = _close(open_items.pop())
        elif major in (MAJOR_BYTES, MAJOR_TEXT):
            item, pos = _string(raw, pos, major, arg)
        elif major == MAJOR_SIMPLE:
            item = _simple(info, arg)
        else:  # integers, and empty arrays and maps
            item = encode_head(major, arg)
        # One item is complete: add it to its container, closing those it completes.
        while True:
            if not open_items:
                if pos != len(raw):
                    raise MalformedError("trailing bytes after the item")
                return item
            container = open_items[-1]
            container[3].append(item)
            if container[1] is None:
                break
            container[1] -= 1
            if container[1] > 0:
                break
            item = _close(open_items.pop())
