"""Canonical bytes for everything that is hashed or signed.

Canonical JSON: UTF-8, keys sorted, no insignificant whitespace, no NaN or infinity, and
only JSON types (str, int, float, bool, None, list, dict with str keys). Two parties that
hold the same value always produce the same bytes, so a digest or signature over them
means the same thing to both.

Every digest and signature is domain-separated: the ASCII domain string, a zero byte,
then the message. A signature made for one purpose never verifies for another.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from teenet.errors import InputError


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of `value` (raises InputError for non-JSON values)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InputError(f"value cannot be put in canonical JSON: {exc}") from None


def parse_canonical_json(raw: bytes, *, what: str) -> Any:
    """Parse JSON that must be canonical: re-encoding it must give the same bytes."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{what} is not valid UTF-8 JSON") from None
    if canonical_json(value) != raw:
        raise InputError(f"{what} is not in canonical form")
    return value


def domain_message(domain: str, *parts: bytes) -> bytes:
    """`domain || 0x00 || parts...`: the bytes a domain-separated signature covers."""
    return domain.encode("ascii") + b"\x00" + b"".join(parts)


def domain_digest(domain: str, *parts: bytes) -> bytes:
    """SHA-256 of `domain_message(domain, *parts)`."""
    return hashlib.sha256(domain_message(domain, *parts)).digest()
