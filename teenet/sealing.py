"""Sealed Arrow tables: a table as Arrow IPC, cut into AES-256-GCM chunks (STREAM).

A data node seals its table for one job, party and table name; the compute enclave opens
it only if every chunk authenticates, in order, to the end. The byte format is specified
in docs/format.md; this module is its one implementation.

    header = "TNSEAL" | version | job_digest | lp16(party) | lp16(table)
             | schema_hash | chunk_size | salt | header_mac
    chunk  = index (u64) | last (u8) | AES-256-GCM(chunk_key, nonce, plaintext, aad)

Per-stream keys come from HKDF-SHA256 over the table key, the salt and the header, so a
flipped header bit or a wrong key is refused at the header, before any chunk. Each nonce
is prefix(7) | counter(4) | last(1) and each AAD binds the header hash, the index and the
last flag, so a reordered, dropped, duplicated, truncated or spliced chunk is refused.

The writer never holds more than one chunk of pending ciphertext plus the batch being
written; the reader decrypts chunks lazily as Arrow's IPC reader asks for bytes, so memory
stays at a few chunks plus one record batch whatever the table size.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from teenet.errors import InputError, SealingError


class _Pyarrow:
    """pyarrow, imported on first use: key negotiation, sealed bytes and results import this
    module for its constants and TableKey, and a CLI command that never touches a table
    should not pay pyarrow's ~0.3 s import. The first attribute read replaces this stand-in
    with the module itself."""

    def __getattr__(self, name: str):
        global pa
        import pyarrow

        pa = pyarrow
        return getattr(pyarrow, name)


pa = _Pyarrow()

MAGIC = b"TNSEAL"
FORMAT_VERSION = 1
KEY_SIZE = 32
JOB_DIGEST_SIZE = 32
SALT_SIZE = 32
MAX_NAME_BYTES = 255
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 3 << 20  # well under gRPC's 4 MiB default message limit
MAX_CHUNKS = 1 << 32  # the nonce counter is 32 bits; chunk 2^32 would reuse a nonce
TAG_SIZE = 16
CHUNK_PREFIX_SIZE = 9  # index u64 + last u8
CHUNK_OVERHEAD = CHUNK_PREFIX_SIZE + TAG_SIZE
MAX_SCHEMA_MESSAGE = 64 << 20

_KDF_INFO = b"teenet/sealed-table/v1\x00"
_NONCE_PREFIX_SIZE = 7
_IPC_CONTINUATION = b"\xff\xff\xff\xff"
_HEADER_FIXED_SIZE = len(MAGIC) + 1 + JOB_DIGEST_SIZE + 2 + 2 + 32 + 4 + SALT_SIZE + 32
MAX_HEADER_SIZE = _HEADER_FIXED_SIZE + 2 * MAX_NAME_BYTES


class TableKey:
    """A 256-bit AES key for one sealed table. Its bytes leave only via `secret_bytes()`."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise InputError(f"table key must be {KEY_SIZE} bytes, got a {type(key).__name__}")
        key = bytes(key)
        if len(key) != KEY_SIZE:
            raise InputError(f"table key must be {KEY_SIZE} bytes, got {len(key)}")
        self._key = key

    @classmethod
    def generate(cls) -> "TableKey":
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def from_secret_bytes(cls, key: bytes) -> "TableKey":
        return cls(key)

    def secret_bytes(self) -> bytes:
        """The raw key, for HPKE-sealing it to the compute enclave. Never log it."""
        return self._key

    def __repr__(self) -> str:
        return "TableKey(<secret>)"

    def __reduce__(self) -> object:
        # A key is serialised only on purpose, through secret_bytes().
        raise TypeError("a TableKey cannot be pickled or copied by serialisation")


@dataclass(frozen=True)
class StreamBinding:
    """What a sealed stream belongs to: one job, one party, one of its tables."""

    job_digest: bytes
    party: str
    table: str

    def __post_init__(self) -> None:
        if not isinstance(self.job_digest, bytes) or len(self.job_digest) != JOB_DIGEST_SIZE:
            found = len(self.job_digest) if isinstance(self.job_digest, (bytes, bytearray)) \
                else type(self.job_digest).__name__
            raise InputError(f"job digest must be {JOB_DIGEST_SIZE} bytes, got {found}",
                             field="job_digest")
        _check_name(self.party, "party")
        _check_name(self.table, "table")


def _check_name(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", field=name)
    if not value:
        raise InputError("must not be empty", field=name)
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("must be valid UTF-8 text", field=name) from None
    if len(encoded) > MAX_NAME_BYTES:
        raise InputError(f"must be at most {MAX_NAME_BYTES} UTF-8 bytes, got {len(encoded)}", field=name)
    # Names end up in error messages and logs; control characters there would mislead.
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InputError("must not contain control characters", field=name)


@dataclass(frozen=True)
class _Header:
    """A parsed header message and the per-stream keys it commits to."""

    binding: StreamBinding
    schema_hash: bytes
    chunk_size: int
    salt: bytes
    raw: bytes
    body: bytes  # everything before the MAC
    mac: bytes


def _encode_header_body(binding: StreamBinding, schema_hash: bytes, chunk_size: int, salt: bytes) -> bytes:
    party = binding.party.encode("utf-8")
    table = binding.table.encode("utf-8")
    return b"".join((
        MAGIC, bytes([FORMAT_VERSION]), binding.job_digest,
        struct.pack(">H", len(party)), party,
        struct.pack(">H", len(table)), table,
        schema_hash, struct.pack(">I", chunk_size), salt,
    ))


def _read_names(raw: bytes, pos: int, fields: tuple[str, ...], what: str) -> tuple[list[str], int]:
    """The u16-length-prefixed UTF-8 names at `pos` of a header, and the position after them.

    Shared by sealed tables and sealed results; `what` names the header in errors. Raises
    struct.error or IndexError when the header ends early (the caller says "truncated").
    """
    names = []
    for field_name in fields:
        (length,) = struct.unpack_from(">H", raw, pos)
        pos += 2
        if not 1 <= length <= MAX_NAME_BYTES or pos + length > len(raw):
            raise SealingError(f"{what}: {field_name} length {length} is out of range")
        try:
            names.append(raw[pos:pos + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise SealingError(f"{what}: {field_name} is not valid UTF-8") from None
        pos += length
    return names, pos


def _parse_header(raw: bytes) -> _Header:
    """Structural parse only; the MAC is checked by the caller once keys are derived."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise SealingError(f"header: expected a bytes message, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_HEADER_SIZE:
        raise SealingError(f"header: {len(raw)} bytes, more than the maximum {MAX_HEADER_SIZE}")
    if raw[:len(MAGIC)] != MAGIC:
        raise SealingError("header: not a sealed table (magic 'TNSEAL' missing)")
    try:
        pos = len(MAGIC)
        version = raw[pos]
        pos += 1
        if version != FORMAT_VERSION:
            raise SealingError(f"header: unsupported format version {version}; expected {FORMAT_VERSION}")
        job_digest = raw[pos:pos + JOB_DIGEST_SIZE]
        pos += JOB_DIGEST_SIZE
        names, pos = _read_names(raw, pos, ("party", "table"), "header")
        schema_hash = raw[pos:pos + 32]
        pos += 32
        (chunk_size,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        salt = raw[pos:pos + SALT_SIZE]
        pos += SALT_SIZE
        body_end = pos
        mac = raw[pos:pos + 32]
        pos += 32
    except (struct.error, IndexError):
        raise SealingError("header: truncated") from None
    if len(job_digest) != JOB_DIGEST_SIZE or len(mac) != 32:
        raise SealingError("header: truncated")
    if pos != len(raw):
        raise SealingError(f"header: {len(raw) - pos} unexpected bytes after the header MAC")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealingError(f"header: chunk size {chunk_size} is outside the allowed range "
                           f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    try:
        binding = StreamBinding(job_digest, names[0], names[1])
    except InputError as exc:
        raise SealingError(f"header: {exc}") from None
    return _Header(binding, schema_hash, chunk_size, salt, raw, raw[:body_end], mac)


class _StreamKeys:
    """Per-stream subkeys: HKDF-SHA256(table key, salt, info = domain || SHA-256(header body))."""

    __slots__ = ("mac_key", "aes", "aead", "nonce_prefix")

    def __init__(self, key: TableKey, salt: bytes, header_body: bytes, kdf_info: bytes = _KDF_INFO) -> None:
        # kdf_info separates the kinds of stream (tables here, results in sealed_bytes.py).
        okm = HKDF(algorithm=hashes.SHA256(), length=32 + 32 + _NONCE_PREFIX_SIZE, salt=salt,
                   info=kdf_info + hashlib.sha256(header_body).digest()).derive(key.secret_bytes())
        self.mac_key = okm[:32]
        self.aes = algorithms.AES256(okm[32:64])
        self.aead = AESGCM(okm[32:64])
        self.nonce_prefix = okm[64:]

    def header_mac(self, header_body: bytes) -> bytes:
        return hmac.new(self.mac_key, header_body, hashlib.sha256).digest()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, last)


def _aad(header_hash: bytes, index: int, last: bool) -> bytes:
    return header_hash + struct.pack(">QB", index, last)


def _schema_message(schema: pa.Schema) -> bytes:
    """The exact bytes Arrow's stream writer emits for `schema`: its first IPC message."""
    sink = _PieceSink()
    with pa.ipc.new_stream(sink, schema):
        pass
    written = b"".join(bytes(p) for p in sink.pieces)
    # An empty stream is the schema message then the 8-byte end-of-stream marker.
    return written[:-8]


class _PieceSink:
    """A file-like sink for pa.ipc.new_stream that keeps Arrow's buffers without copying."""

    closed = False

    def __init__(self) -> None:
        self.pieces: list[memoryview] = []
        self.size = 0

    def write(self, data: bytes | pa.Buffer) -> int:
        # Arrow buffers export signed bytes ('b'); cryptography wants unsigned ('B').
        view = memoryview(data).cast("B")
        if view.nbytes:
            self.pieces.append(view)
            self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self, n: int) -> list[memoryview]:
        """Remove and return the first n pending bytes as views of Arrow's pieces (no copy)."""
        self.size -= n
        views = []
        while n:
            piece = self.pieces[0]
            if piece.nbytes <= n:
                views.append(self.pieces.pop(0))
                n -= piece.nbytes
            else:
                views.append(piece[:n])
                self.pieces[0] = piece[n:]
                n = 0
        return views


class SealedTableWriter:
    """Seals one Arrow stream for one binding: `header()` first, then `seal_batches()`.

    `_salt` fixes the per-stream salt and exists for the format test vectors only; a real
    stream always takes a fresh random salt.
    """

    def __init__(self, key: TableKey, binding: StreamBinding, schema: pa.Schema,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, *, _salt: bytes | None = None) -> None:
        if not isinstance(key, TableKey):
            raise InputError(f"key must be a TableKey, got {type(key).__name__}")
        if not isinstance(binding, StreamBinding):
            raise InputError(f"binding must be a StreamBinding, got {type(binding).__name__}")
        if not isinstance(schema, pa.Schema):
            raise InputError(f"schema must be a pyarrow Schema, got {type(schema).__name__}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
                or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise InputError(f"chunk size must be an integer in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}, "
                             f"got {chunk_size!r}", field="chunk_size")
        salt = secrets.token_bytes(SALT_SIZE) if _salt is None else bytes(_salt)
        if len(salt) != SALT_SIZE:
            raise InputError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}", field="_salt")
        self._schema = schema
        self._chunk_size = chunk_size
        # Bound one IPC record batch so the reader never holds a huge one at once.
        self._batch_budget = max(4 * chunk_size, 64 * 1024)
        try:
            self._schema_message = _schema_message(schema)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InputError(f"schema cannot be written as Arrow IPC: {exc}") from None
        body = _encode_header_body(binding, hashlib.sha256(self._schema_message).digest(), chunk_size, salt)
        self._keys = _StreamKeys(key, salt, body)
        self._header = body + self._keys.header_mac(body)
        self._header_hash = hashlib.sha256(self._header).digest()
        self._started = False
        # Reused across chunks: a chunk costs one fresh allocation, the message itself.
        self._sealed = memoryview(bytearray(CHUNK_OVERHEAD + chunk_size))

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def header(self) -> bytes:
        """The first stream message."""
        return self._header

    def seal_batches(self, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
        """Yield the chunk messages for `batches`, the last one flagged last. One use only."""
        if self._started:
            raise SealingError("this writer has already sealed a stream; a stream's nonces are "
                               "used once, so make a new writer")
        self._started = True
        return self._chunks(batches)

    def _chunks(self, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
        sink = _PieceSink()
        index = 0
        ipc = pa.ipc.new_stream(sink, self._schema)
        checked_schema = False
        try:
            for batch in batches:
                if not isinstance(batch, pa.RecordBatch):
                    raise InputError(f"expected pyarrow RecordBatches, got {type(batch).__name__}")
                if not batch.schema.equals(self._schema, check_metadata=False):
                    raise InputError("record batch schema differs from the writer's schema")
                for piece in self._split(batch):
                    ipc.write_batch(piece)
                    if not checked_schema:
                        self._check_schema_prefix(sink)
                        checked_schema = True
                    while sink.size > self._chunk_size:
                        yield self._seal_chunk(sink.take(self._chunk_size), index, last=False)
                        index += 1
            ipc.close()
        except pa.ArrowException as exc:
            raise InputError(f"record batch cannot be written as Arrow IPC: {exc}") from None
        if not checked_schema:
            self._check_schema_prefix(sink)
        while sink.size > self._chunk_size:
            yield self._seal_chunk(sink.take(self._chunk_size), index, last=False)
            index += 1
        # Arrow's end-of-stream marker guarantees the last chunk is never empty.
        yield self._seal_chunk(sink.take(sink.size), index, last=True)

    def _check_schema_prefix(self, sink: _PieceSink) -> None:
        # The header's schema hash is over the writer's schema message; fail closed if
        # Arrow ever wrote a different one into this stream.
        need, first = len(self._schema_message), []
        for piece in sink.pieces:
            if need <= 0:
                break
            first.append(bytes(piece[:need]))
            need -= piece.nbytes
        if b"".join(first) != self._schema_message:
            raise SealingError("Arrow wrote a schema message that differs from the header's schema hash")

    def _split(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        size = batch.nbytes
        if size <= self._batch_budget or batch.num_rows <= 1:
            yield batch
            return
        rows = max(1, batch.num_rows * self._batch_budget // size)
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)

    def _seal_chunk(self, plaintext: list[memoryview], index: int, last: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise SealingError(f"stream exceeds {MAX_CHUNKS} chunks; use a larger chunk size")
        keys = self._keys
        size = sum(view.nbytes for view in plaintext)
        message = self._sealed[:CHUNK_OVERHEAD + size]
        struct.pack_into(">QB", message, 0, index, last)
        # AES-GCM fed piece by piece equals AESGCM.encrypt over their concatenation; it spares
        # copying Arrow's buffers into one contiguous plaintext first.
        encryptor = Cipher(keys.aes, modes.GCM(_nonce(keys.nonce_prefix, index, last))).encryptor()
        encryptor.authenticate_additional_data(_aad(self._header_hash, index, last))
        at = CHUNK_PREFIX_SIZE
        for view in plaintext:
            # update_into may need block-size slack past the data; the tag's room provides it.
            at += encryptor.update_into(view, message[at:])
        encryptor.finalize()  # GCM is a stream mode: nothing is held back
        message[at:at + TAG_SIZE] = encryptor.tag
        return bytes(message)


def seal_table(table_or_batches: pa.Table | pa.RecordBatch | pa.RecordBatchReader | Iterable[pa.RecordBatch],
               key: TableKey, binding: StreamBinding,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the whole sealed stream: the header, then the chunk messages."""
    if isinstance(table_or_batches, pa.Table):
        schema, batches = table_or_batches.schema, iter(table_or_batches.to_batches())
    elif isinstance(table_or_batches, pa.RecordBatch):
        schema, batches = table_or_batches.schema, iter([table_or_batches])
    elif isinstance(table_or_batches, pa.RecordBatchReader):
        schema, batches = table_or_batches.schema, iter(table_or_batches)
    elif isinstance(table_or_batches, (str, bytes, bytearray, memoryview, dict)) \
            or not hasattr(table_or_batches, "__iter__"):
        raise InputError("expected a pyarrow Table, RecordBatch, RecordBatchReader or an iterable "
                         f"of RecordBatches, got {type(table_or_batches).__name__}")
    else:
        batches = iter(table_or_batches)
        first = next(batches, None)
        if first is None:
            raise InputError("no record batches to take a schema from; pass a pyarrow Table "
                             "or use SealedTableWriter with an explicit schema")
        if not isinstance(first, pa.RecordBatch):
            raise InputError("expected a pyarrow Table, RecordBatch, RecordBatchReader or an iterable "
                             f"of RecordBatches, got a {type(table_or_batches).__name__} of "
                             f"{type(first).__name__}")
        schema = first.schema
        batches = _chain(first, batches)
    writer = SealedTableWriter(key, binding, schema, chunk_size)
    return _chain(writer.header(), writer.seal_batches(batches))


def _chain(first: object, rest: Iterator) -> Iterator:
    yield first
    yield from rest


class _ChunkOpener:
    """Pulls chunk messages, checks each is the next one of this stream, decrypts it.

    Acts as the file-like source of pa.ipc.open_stream: Arrow's reads pull chunks lazily,
    and a read that spans whole chunks decrypts them straight into the returned buffer.
    """

    closed = False

    def __init__(self, messages: Iterator[bytes], header: _Header, keys: _StreamKeys) -> None:
        self._messages = messages
        self._keys = keys
        self._header_hash = hashlib.sha256(header.raw).digest()
        self._chunk_size = header.chunk_size
        self._index = 0
        self._last_seen = False
        self._current: memoryview = memoryview(b"")

    # -- chunk level --------------------------------------------------------------------

    def _next_message(self) -> tuple[int, bool, memoryview] | None:
        """The next chunk's (index, last, sealed bytes), checked; None after the last chunk."""
        if self._last_seen:
            return None
        if self._index >= MAX_CHUNKS:
            raise SealingError(f"stream exceeds {MAX_CHUNKS} chunks")
        try:
            message = next(self._messages)
        except StopIteration:
            raise SealingError(f"stream truncated: it ends after {self._index} chunk(s) without "
                               "the chunk flagged last") from None
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise SealingError(f"chunk {self._index}: expected a bytes message, got {type(message).__name__}")
        view = memoryview(message)
        if view.nbytes < CHUNK_OVERHEAD + 1:
            raise SealingError(f"chunk {self._index}: {view.nbytes} bytes is too short for a chunk")
        index, last = struct.unpack_from(">QB", view, 0)
        if index != self._index:
            raise SealingError(f"chunk out of order: expected chunk {self._index}, found chunk {index} "
                               "(reordered, dropped or duplicated)")
        if last > 1:
            raise SealingError(f"chunk {index}: last flag must be 0 or 1, found {last}")
        size = view.nbytes - CHUNK_OVERHEAD
        if size > self._chunk_size or (not last and size != self._chunk_size):
            raise SealingError(f"chunk {index}: {size} plaintext bytes, but the header's chunk size is "
                               f"{self._chunk_size} (only the last chunk may be shorter)")
        self._index += 1
        self._last_seen = bool(last)
        return index, bool(last), view[CHUNK_PREFIX_SIZE:]

    def _decrypt(self, index: int, last: bool, sealed: memoryview, into: memoryview | None = None) -> memoryview:
        keys = self._keys
        nonce = _nonce(keys.nonce_prefix, index, last)
        aad = _aad(self._header_hash, index, last)
        try:
            if into is None:
                return memoryview(keys.aead.decrypt(nonce, sealed, aad))
            keys.aead.decrypt_into(nonce, sealed, aad, into)
            return into
        except InvalidTag:
            raise SealingError(f"chunk {index}: authentication failed (altered, truncated, flagged "
                               "wrongly, or from another stream or key)") from None

    def _refill(self) -> bool:
        item = self._next_message()
        if item is None:
            return False
        self._current = self._decrypt(*item)
        return True

    # -- file-like, for Arrow -----------------------------------------------------------

    def read_buffer(self, n: int = -1) -> pa.Buffer:
        if n is None or n < 0:
            parts = [bytes(self._current)]
            self._current = memoryview(b"")
            while self._refill():
                parts.append(bytes(self._current))
            self._current = memoryview(b"")
            return pa.py_buffer(b"".join(parts))
        if not self._current.nbytes and not self._refill():
            return pa.py_buffer(b"")
        if self._current.nbytes >= n:
            out, self._current = self._current[:n], self._current[n:]
            return pa.py_buffer(out)
        return self._read_spanning(n)

    def _read_spanning(self, n: int) -> pa.Buffer:
        buffer = pa.allocate_buffer(n)
        out = memoryview(buffer).cast("B")
        have = self._current.nbytes
        out[:have] = self._current
        self._current = memoryview(b"")
        while have < n:
            item = self._next_message()
            if item is None:
                return buffer.slice(0, have)
            index, last, sealed = item
            size = sealed.nbytes - TAG_SIZE
            if have + size <= n:
                # The whole chunk belongs to this read: decrypt in place, no extra copy.
                self._decrypt(index, last, sealed, out[have:have + size])
                have += size
            else:
                plain = self._decrypt(index, last, sealed)
                take = n - have
                out[have:n] = plain[:take]
                self._current = plain[take:]
                have = n
        return buffer

    def read(self, n: int = -1) -> bytes:
        return self.read_buffer(n).to_pybytes()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def unread(self, data: memoryview) -> None:
        """Put plaintext back in front (the schema message, once its hash is checked)."""
        self._current = memoryview(bytes(data) + bytes(self._current))

    def finish(self) -> None:
        """After Arrow's end of stream: the last chunk must be read and nothing left over."""
        if self._current.nbytes:
            raise SealingError(f"{self._current.nbytes} plaintext bytes follow the Arrow end-of-stream marker")
        if not self._last_seen:
            raise SealingError("Arrow stream ended before the chunk flagged last")
        extra = next(self._messages, None)
        if extra is not None:
            raise SealingError(f"a message follows the chunk flagged last (chunk {self._index - 1})")


class SealedTableReader:
    """Opens sealed streams for one expected binding with one table key."""

    def __init__(self, key: TableKey, expected: StreamBinding) -> None:
        if not isinstance(key, TableKey):
            raise InputError(f"key must be a TableKey, got {type(key).__name__}")
        if not isinstance(expected, StreamBinding):
            raise InputError(f"expected binding must be a StreamBinding, got {type(expected).__name__}")
        self._key = key
        self._expected = expected

    def open(self, messages: Iterable[bytes]) -> Iterator[pa.RecordBatch]:
        """Yield record batches as their chunks authenticate; raise SealingError on any fault.

        Batches yielded before a failure were authenticated, but the stream as a whole was
        not: a caller that must not act on a partial table uses `read_table`.
        """
        return self._open(iter(messages), schema_out=None)

    def read_table(self, messages: Iterable[bytes]) -> pa.Table:
        """The whole table, returned only once every chunk and the stream's end verified."""
        schema_out: list[pa.Schema] = []
        batches = list(self._open(iter(messages), schema_out=schema_out))
        return pa.Table.from_batches(batches, schema=schema_out[0])

    def _open(self, messages: Iterator[bytes], schema_out: list[pa.Schema] | None) -> Iterator[pa.RecordBatch]:
        header, keys = self._open_header(messages)
        source = _ChunkOpener(messages, header, keys)
        self._check_schema(source, header)
        try:
            reader = pa.ipc.open_stream(source)
            if schema_out is not None:
                schema_out.append(reader.schema)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                yield batch
        except (pa.ArrowException, OSError, ValueError) as exc:
            # pyarrow reports a malformed stream as ArrowInvalid or as a bare OSError.
            raise SealingError(f"the Arrow IPC stream inside the sealed stream is malformed: "
                               f"{_first_line(exc)}") from None
        source.finish()

    def _open_header(self, messages: Iterator[bytes]) -> tuple[_Header, _StreamKeys]:
        try:
            raw = next(messages)
        except StopIteration:
            raise SealingError("empty stream: no header message") from None
        header = _parse_header(raw)
        keys = _StreamKeys(self._key, header.salt, header.body)
        if not hmac.compare_digest(keys.header_mac(header.body), header.mac):
            raise SealingError("header authentication failed: wrong table key, or the header was altered")
        expected, found = self._expected, header.binding
        if found.job_digest != expected.job_digest:
            raise SealingError(f"header job digest differs: expected {expected.job_digest.hex()}, "
                               f"found {found.job_digest.hex()}")
        if found.party != expected.party:
            raise SealingError(f"header party differs: expected {expected.party!r}, found {found.party!r}")
        if found.table != expected.table:
            raise SealingError(f"header table differs: expected {expected.table!r}, found {found.table!r}")
        return header, keys

    @staticmethod
    def _check_schema(source: _ChunkOpener, header: _Header) -> None:
        prefix = source.read_buffer(8)
        if prefix.size != 8 or prefix.to_pybytes()[:4] != _IPC_CONTINUATION:
            raise SealingError("the sealed plaintext does not start with an Arrow IPC schema message")
        (length,) = struct.unpack("<i", prefix.to_pybytes()[4:])
        if not 0 < length <= MAX_SCHEMA_MESSAGE:
            raise SealingError(f"Arrow schema message length {length} is out of range")
        metadata = source.read_buffer(length)
        if metadata.size != length:
            raise SealingError("the sealed plaintext ends inside the Arrow schema message")
        message = prefix.to_pybytes() + metadata.to_pybytes()
        if not hmac.compare_digest(hashlib.sha256(message).digest(), header.schema_hash):
            raise SealingError("the stream's Arrow schema does not match the header's schema hash")
        source.unread(memoryview(message))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
