"""Sealed byte streams: a result's plaintext cut into AES-256-GCM chunks (the STREAM of sealing.py).

The compute enclave seals one result's plaintext for one job, recipient and kind; the
recipient (or the enclave of a later job the recipient ships the result to) opens it only
if the header authenticates under the key and names the expected binding, and every chunk
authenticates, in order, to the one flagged last. The chunks, nonces, AAD and key schedule
are exactly those of sealed tables (teenet/sealing.py); only the header and the key
derivation's domain differ, so a table stream never opens as a result or the reverse.

    header = "TNRSLT" | version | job_digest | lp16(recipient) | lp16(kind)
             | plaintext_size (u64) | chunk_size (u32) | salt | header_mac
    chunk  = index (u64) | last (u8) | AES-256-GCM(chunk_key, nonce, plaintext, aad)

The byte format is in docs/format.md ("Sealed results"). This module decides how bytes are
sealed and checked; what the plaintext holds (the result header, the payload, the padding)
and who signs the stream is teenet/release.py's business.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator

from cryptography.exceptions import InvalidTag

from teenet.errors import InputError, SealingError
from teenet.sealing import (CHUNK_OVERHEAD, CHUNK_PREFIX_SIZE, DEFAULT_CHUNK_SIZE, JOB_DIGEST_SIZE,
                            MAX_CHUNK_SIZE, MAX_CHUNKS, MAX_NAME_BYTES, MIN_CHUNK_SIZE, SALT_SIZE, TableKey,
                            _aad, _check_name, _nonce, _read_names, _StreamKeys)

MAGIC = b"TNRSLT"
FORMAT_VERSION = 1
KDF_INFO = b"teenet/sealed-result/v1\x00"
# A reader refuses a header that declares more plaintext than this before it reads a chunk.
DEFAULT_MAX_PLAINTEXT = 1 << 33
_HEADER_FIXED_SIZE = len(MAGIC) + 1 + JOB_DIGEST_SIZE + 2 + 2 + 8 + 4 + SALT_SIZE + 32
MAX_HEADER_SIZE = _HEADER_FIXED_SIZE + 2 * MAX_NAME_BYTES


class ResultKey(TableKey):
    """A 256-bit AES key for one sealed result. Its bytes leave only via `secret_bytes()`."""

    def __repr__(self) -> str:
        return "ResultKey(<secret>)"

    @classmethod
    def generate(cls) -> "ResultKey":
        return cls(secrets.token_bytes(32))


@dataclass(frozen=True)
class ResultBinding:
    """What a sealed result stream belongs to: one job, one recipient, one release kind."""

    job_digest: bytes
    recipient: str
    kind: str

    def __post_init__(self) -> None:
        if not isinstance(self.job_digest, bytes) or len(self.job_digest) != JOB_DIGEST_SIZE:
            raise InputError(f"job digest must be {JOB_DIGEST_SIZE} bytes", field="job_digest")
        _check_name(self.recipient, "recipient")
        _check_name(self.kind, "kind")


def _header_body(binding: ResultBinding, size: int, chunk_size: int, salt: bytes) -> bytes:
    recipient = binding.recipient.encode("utf-8")
    kind = binding.kind.encode("utf-8")
    return b"".join((MAGIC, bytes([FORMAT_VERSION]), binding.job_digest,
                     struct.pack(">H", len(recipient)), recipient, struct.pack(">H", len(kind)), kind,
                     struct.pack(">QI", size, chunk_size), salt))


def seal_bytes(plaintext: bytes | bytearray | memoryview, key: TableKey, binding: ResultBinding,
               chunk_size: int = DEFAULT_CHUNK_SIZE, *, _salt: bytes | None = None) -> list[bytes]:
    """The whole sealed stream of `plaintext`: the header message, then the chunk messages.

    `_salt` fixes the salt for the format's test vectors only; a real stream takes a fresh one.
    """
    if not isinstance(key, TableKey):
        raise InputError(f"key must be a ResultKey, got {type(key).__name__}")
    if not isinstance(binding, ResultBinding):
        raise InputError(f"binding must be a ResultBinding, got {type(binding).__name__}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
            or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InputError(f"chunk size must be an integer in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}",
                         field="chunk_size")
    view = memoryview(plaintext).cast("B")
    if not view.nbytes:
        raise InputError("nothing to seal: the plaintext is empty")
    count = -(-view.nbytes // chunk_size)
    if count > MAX_CHUNKS:
        raise SealingError(f"stream exceeds {MAX_CHUNKS} chunks; use a larger chunk size")
    salt = secrets.token_bytes(SALT_SIZE) if _salt is None else bytes(_salt)
    if len(salt) != SALT_SIZE:
        raise InputError(f"salt must be {SALT_SIZE} bytes", field="_salt")
    body = _header_body(binding, view.nbytes, chunk_size, salt)
    keys = _StreamKeys(key, salt, body, KDF_INFO)
    header = body + keys.header_mac(body)
    header_hash = hashlib.sha256(header).digest()
    messages = [header]
    for index in range(count):
        last = index == count - 1
        part = view[index * chunk_size:(index + 1) * chunk_size]
        sealed = keys.aead.encrypt(_nonce(keys.nonce_prefix, index, last), part, _aad(header_hash, index, last))
        messages.append(struct.pack(">QB", index, last) + sealed)
    return messages


@dataclass(frozen=True)
class _Header:
    binding: ResultBinding
    size: int
    chunk_size: int
    salt: bytes
    raw: bytes
    body: bytes
    mac: bytes


def _parse_header(raw: object) -> _Header:
    """Structural parse only; the MAC is checked once keys are derived."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise SealingError("result header: expected a bytes message")
    raw = bytes(raw)
    if len(raw) > MAX_HEADER_SIZE:
        raise SealingError(f"result header: {len(raw)} bytes, more than the maximum {MAX_HEADER_SIZE}")
    if raw[:len(MAGIC)] != MAGIC:
        raise SealingError("result header: not a sealed result (magic 'TNRSLT' missing)")
    try:
        pos = len(MAGIC)
        if raw[pos] != FORMAT_VERSION:
            raise SealingError(f"result header: unsupported format version {raw[pos]}; expected {FORMAT_VERSION}")
        pos += 1
        job_digest = raw[pos:pos + JOB_DIGEST_SIZE]
        pos += JOB_DIGEST_SIZE
        names, pos = _read_names(raw, pos, ("recipient", "kind"), "result header")
        size, chunk_size = struct.unpack_from(">QI", raw, pos)
        pos += 12
        salt = raw[pos:pos + SALT_SIZE]
        pos += SALT_SIZE
        body_end = pos
        mac = raw[pos:pos + 32]
        pos += 32
    except (struct.error, IndexError):
        raise SealingError("result header: truncated") from None
    if len(job_digest) != JOB_DIGEST_SIZE or len(salt) != SALT_SIZE or len(mac) != 32:
        raise SealingError("result header: truncated")
    if pos != len(raw):
        raise SealingError(f"result header: {len(raw) - pos} unexpected bytes after the header MAC")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealingError(f"result header: chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    if size == 0:
        raise SealingError("result header: declares an empty plaintext")
    try:
        binding = ResultBinding(job_digest, names[0], names[1])
    except InputError as exc:
        raise SealingError(f"result header: {exc}") from None
    return _Header(binding, size, chunk_size, salt, raw, raw[:body_end], mac)


def open_bytes(messages: Iterable[bytes], key: TableKey, expected: ResultBinding, *,
               max_size: int = DEFAULT_MAX_PLAINTEXT) -> bytearray:
    """The plaintext, returned only once the header and every chunk to the last verified."""
    it: Iterator[bytes] = iter(messages)
    try:
        raw = next(it)
    except StopIteration:
        raise SealingError("empty result stream: no header message") from None
    header = _parse_header(raw)
    keys = _StreamKeys(key, header.salt, header.body, KDF_INFO)
    if not hmac.compare_digest(keys.header_mac(header.body), header.mac):
        raise SealingError("result header authentication failed: wrong result key, or the header was altered")
    found = header.binding
    for name in ("job_digest", "recipient", "kind"):
        want, got = getattr(expected, name), getattr(found, name)
        if want != got:
            show = (lambda v: v.hex()) if name == "job_digest" else repr
            raise SealingError(f"result header {name.replace('_', ' ')} differs: expected {show(want)}, "
                               f"found {show(got)}")
    if header.size > max_size:
        raise SealingError(f"result header declares {header.size} bytes, more than this reader's {max_size}")
    count = -(-header.size // header.chunk_size)
    header_hash = hashlib.sha256(header.raw).digest()
    out = bytearray(header.size)
    view = memoryview(out)
    for index in range(count):
        try:
            message = next(it)
        except StopIteration:
            raise SealingError(f"result stream truncated: it ends after {index} of {count} chunk(s)") from None
        if not isinstance(message, (bytes, bytearray, memoryview)) or len(message) < CHUNK_OVERHEAD + 1:
            raise SealingError(f"chunk {index}: too short for a chunk")
        found_index, last = struct.unpack_from(">QB", message, 0)
        if found_index != index:
            raise SealingError(f"chunk out of order: expected chunk {index}, found chunk {found_index} "
                               "(reordered, dropped or duplicated)")
        want_last = index == count - 1
        if last != want_last:
            raise SealingError(f"chunk {index}: last flag {last}, expected {int(want_last)} "
                               f"(the header declares {count} chunk(s))")
        start = index * header.chunk_size
        size = min(header.chunk_size, header.size - start)
        if len(message) - CHUNK_OVERHEAD != size:
            raise SealingError(f"chunk {index}: {len(message) - CHUNK_OVERHEAD} plaintext bytes, expected {size}")
        try:
            keys.aead.decrypt_into(_nonce(keys.nonce_prefix, index, want_last),
                                   memoryview(message)[CHUNK_PREFIX_SIZE:],
                                   _aad(header_hash, index, want_last), view[start:start + size])
        except InvalidTag:
            raise SealingError(f"chunk {index}: authentication failed (altered, or from another stream "
                               "or key)") from None
    if next(it, None) is not None:
        raise SealingError(f"a message follows the chunk flagged last (chunk {count - 1})")
    return out


def stream_digest(messages: Iterable[bytes]) -> tuple[bytes, int]:
    """SHA-256 over u32(len) || message for each message of a sealed stream, and its byte count:
    what the enclave's signature over a result commits to (docs/format.md)."""
    h = hashlib.sha256()
    total = 0
    for m in messages:
        h.update(struct.pack(">I", len(m)))
        h.update(m)
        total += len(m)
    return h.digest(), total
