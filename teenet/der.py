"""One DER item's header, strictly: the reader both the DCAP PCK-extension parser
(teenet.attestation.collateral) and the RA-TLS certificate reader (teenet.cluster.ratls)
walk DER with. Each caller turns DerError into its own error type and adds where it was."""

from __future__ import annotations

MAX_LENGTH_BYTES = 4  # a length of up to 4 GiB; anything longer is refused


class DerError(ValueError):
    """The DER item at a position is malformed (the text says how)."""


def der_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag byte, start of contents, end of contents) of the DER item at `pos`: a one-byte
    tag, a definite minimal length, contents inside `data`; DerError otherwise."""
    if pos + 2 > len(data):
        raise DerError("truncated DER header")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tag")
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > MAX_LENGTH_BYTES or start + count > len(data):
            raise DerError("bad DER length (expected a definite length)")
        length = int.from_bytes(data[start:start + count], "big")
        if length < 0x80 or data[start] == 0:
            raise DerError("non-minimal DER length")
        start += count
    if start + length > len(data):
        raise DerError(f"DER item declares {length} bytes but only {len(data) - start} remain")
    return tag, start, start + length
