"""The fingerprint's leaf hashes run on a worker thread for large chunks (teenet.lineage):
the root must still be exactly the RFC 9162 root over the chunks in order, and the number
of chunks waiting for their hash must stay bounded."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa

from teenet.lineage import Fingerprinter, fingerprint_of_chunks
from teenet.sealing import DEFAULT_CHUNK_SIZE, SealedTableReader, StreamBinding, TableKey, seal_table

BINDING = StreamBinding(hashlib.sha256(b"job").digest(), "bank", "customers")


def test_large_and_small_chunks_in_any_mix_give_the_root_over_the_chunks_in_order() -> None:
    rng = np.random.default_rng(3)
    sizes = [1 << 20, 3 << 19, 100, 1 << 20, 1 << 17, 10, 1 << 20, 1 << 16, 7]
    chunks = [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in sizes]
    fp, most_pending = Fingerprinter(), 0
    for chunk in chunks:
        view = memoryview(chunk)
        third = len(chunk) // 3
        fp.add_chunk([view[:third], view[third:2 * third], view[2 * third:]])  # pieces, as sealing gives them
        most_pending = max(most_pending, len(fp._pending))
    assert most_pending >= 1  # the large chunks did go to the worker
    assert most_pending <= 2  # and never more than two at once (memory stays at a few chunks)
    assert fp.chunks == len(chunks)
    assert fp.root() == fingerprint_of_chunks(chunks)
    # a chunk hashed on the worker differs from its neighbours: swapping two changes the root
    assert fingerprint_of_chunks([chunks[1], chunks[0], *chunks[2:]]) != fp.root()


def test_sealing_and_opening_with_megabyte_chunks_agree_with_the_definition() -> None:
    n = 700_000  # about 5.6 MiB of Arrow buffers: 6 chunks of the default size
    table = pa.table({"id": np.arange(n, dtype=np.int64), "x": np.frombuffer(os.urandom(8 * n), dtype=np.int64)})  # no NaN
    key, plain, fp = TableKey.generate(), [], Fingerprinter()

    def hook(pieces) -> None:
        plain.append(b"".join(bytes(p) for p in pieces))
        fp.add_chunk(pieces)

    messages = list(seal_table(table, key, BINDING, DEFAULT_CHUNK_SIZE, on_chunk=hook))
    assert len(plain) >= 5
    opened = Fingerprinter()
    assert SealedTableReader(key, BINDING, on_chunk=opened.add_chunk).read_table(messages).equals(table)
    assert fp.root() == opened.root() == fingerprint_of_chunks(plain)
    assert fp.chunks == opened.chunks == len(messages) - 1
