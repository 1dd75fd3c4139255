"""A small strict CBOR (RFC 8949) codec for the subset interoperable RA-TLS uses.

Supported data items: unsigned and negative integers (major types 0, 1; 64-bit range),
byte strings (2), text strings (3, valid UTF-8), arrays (4), maps (5) and tags (6, decoded
as `Tag`). Floats, simple values (false, true, null, undefined) and everything else of major
type 7 are refused, as are indefinite lengths.

`encode` is deterministic (RFC 8949 section 4.2.1, "core deterministic encoding"): the
shortest head for every integer and length, and map keys sorted by the bytewise order of
their encodings. `decode` is strict where strictness guards a verifier: it refuses
indefinite lengths, reserved additional-information values, truncated input, trailing bytes
after the one data item, nesting deeper than `max_depth`, a declared length longer than
what remains, duplicate map keys, non-UTF-8 text and map keys that are not integers, text
or byte strings. It accepts, as RFC 8949 section 5 lets a generic decoder, heads that are
longer than needed and map keys in any order: other RA-TLS stacks emit claim maps whose keys
are not in deterministic order (rats-tls does), and since a verifier hashes the claims
buffer's exact bytes, a second encoding of the same map cannot stand for the first.

Errors are `CborError` (an `InputError`) naming the byte offset and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from teenet.errors import InputError

MAX_DEPTH = 16
_UINT64_MAX = (1 << 64) - 1


class CborError(InputError):
    """Malformed or unsupported CBOR; the message names the offset and the expectation."""


@dataclass(frozen=True)
class Tag:
    """A CBOR tag (major type 6): tag number and the one data item it covers."""

    number: int
    value: Any


# ---------------------------------------------------------------------------- encode


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([(major << 5) | value])
    if value <= 0xFF:
        return bytes([(major << 5) | 24, value])
    if value <= 0xFFFF:
        return bytes([(major << 5) | 25]) + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return bytes([(major << 5) | 26]) + value.to_bytes(4, "big")
    return bytes([(major << 5) | 27]) + value.to_bytes(8, "big")


def _encode(item: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CborError(f"cannot encode: nesting deeper than {MAX_DEPTH}")
    if isinstance(item, bool) or item is None or isinstance(item, float):
        raise CborError(f"cannot encode {type(item).__name__}: only integers, byte and text strings, "
                        "arrays, maps and tags are supported")
    if isinstance(item, int):
        if 0 <= item <= _UINT64_MAX:
            out += _head(0, item)
        elif -(1 << 64) <= item < 0:
            out += _head(1, -1 - item)
        else:
            raise CborError(f"cannot encode integer {item}: outside the 64-bit CBOR range")
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        out += _head(2, len(data)) + data
    elif isinstance(item, str):
        data = item.encode("utf-8")
        out += _head(3, len(data)) + data
    elif isinstance(item, (list, tuple)):
        out += _head(4, len(item))
        for element in item:
            _encode(element, out, depth + 1)
    elif isinstance(item, dict):
        pairs = []
        for key, value in item.items():
            if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
                raise CborError(f"cannot encode a map key of type {type(key).__name__}: "
                                "expected an integer, text or byte string")
            encoded_key = bytearray()
            _encode(key, encoded_key, depth + 1)
            pairs.append((bytes(encoded_key), value))
        pairs.sort(key=lambda pair: pair[0])
        for i in range(1, len(pairs)):
            if pairs[i][0] == pairs[i - 1][0]:
                raise CborError("cannot encode a map with two equal keys")
        out += _head(5, len(pairs))
        for encoded_key, value in pairs:
            out += encoded_key
            _encode(value, out, depth + 1)
    elif isinstance(item, Tag):
        if not (isinstance(item.number, int) and 0 <= item.number <= _UINT64_MAX) or isinstance(item.number, bool):
            raise CborError(f"cannot encode tag number {item.number!r}: expected an unsigned 64-bit integer")
        out += _head(6, item.number)
        _encode(item.value, out, depth + 1)
    else:
        raise CborError(f"cannot encode {type(item).__name__}: only integers, byte and text strings, "
                        "arrays, maps and tags are supported")


def encode(item: Any) -> bytes:
    """The deterministic encoding of `item` (int, bytes, str, list/tuple, dict, Tag)."""
    out = bytearray()
    _encode(item, out, 0)
    return bytes(out)


# ---------------------------------------------------------------------------- decode


class _Decoder:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def fail(self, at: int, message: str) -> CborError:
        return CborError(f"CBOR at byte {at}: {message}")

    def take(self, size: int, at: int, what: str) -> bytes:
        if size > len(self.data) - self.pos:
            raise self.fail(at, f"{what} declares {size} bytes but only {len(self.data) - self.pos} remain")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def head(self) -> tuple[int, int, int]:
        at = self.pos
        if self.pos >= len(self.data):
            raise self.fail(at, "expected a data item, found the end of the input")
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, at
        if info <= 27:
            size = 1 << (info - 24)
            return major, int.from_bytes(self.take(size, at, "the head"), "big"), at
        if info == 31:
            raise self.fail(at, "indefinite-length items are not accepted (expected a definite length)")
        raise self.fail(at, f"reserved additional information {info}")

    def item(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise self.fail(self.pos, f"nesting deeper than {self.max_depth}")
        major, arg, at = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg, at, "a byte string")
        if major == 3:
            raw = self.take(arg, at, "a text string")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(at, "a text string is not valid UTF-8") from None
        if major == 4:
            # Every element takes at least one byte: a longer count is a lie, refused before
            # any allocation.
            if arg > len(self.data) - self.pos:
                raise self.fail(at, f"an array declares {arg} items but only {len(self.data) - self.pos} bytes remain")
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            if arg > (len(self.data) - self.pos) // 2:
                raise self.fail(at, f"a map declares {arg} pairs but only {len(self.data) - self.pos} bytes remain")
            result: dict[Any, Any] = {}
            for _ in range(arg):
                key_at = self.pos
                key = self.item(depth + 1)
                if isinstance(key, (list, dict, Tag)):
                    raise self.fail(key_at, "a map key must be an integer, text or byte string")
                if key in result:
                    raise self.fail(key_at, f"duplicate map key {key!r}")
                result[key] = self.item(depth + 1)
            return result
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        raise self.fail(at, "floats and simple values (false, true, null) are not accepted")


def decode(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The one data item `data` holds; CborError if it is malformed, unsupported, nested
    deeper than `max_depth` or followed by more bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborError(f"expected CBOR bytes, got {type(data).__name__}")
    decoder = _Decoder(bytes(data), max_depth)
    item = decoder.item(0)
    if decoder.pos != len(decoder.data):
        raise decoder.fail(decoder.pos, f"{len(decoder.data) - decoder.pos} trailing bytes after the data item")
    return item
