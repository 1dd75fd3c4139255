"""Sealed results (docs/format.md, "Sealed results"): padded, stream-sealed, signed over every message.

Each refusal test also checks nothing was handed back: a refused result yields no payload.
"""

from __future__ import annotations

import hashlib
import struct

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teenet.canonical import canonical_json
from teenet.errors import InputError, SealingError, VerificationError
from teenet.negotiation import ComputeOffer, HpkeSuite
from teenet.release import (DEFAULT_PAD_FLOOR, SealedResult, check_pad_floor, open_result, open_with_key,
                            padded_size, seal_result, sealed_size, unwrap_result_key, _signed_message)
from teenet.sealed_bytes import ResultBinding, ResultKey, open_bytes, seal_bytes, stream_digest
from teenet.models.payloads import arrow_output

JOB = hashlib.sha256(b"a job").digest()
OTHER_JOB = hashlib.sha256(b"another job").digest()


@pytest.fixture(scope="module")
def keys():
    enclave = ed25519.Ed25519PrivateKey.generate()
    recipient = x25519.X25519PrivateKey.generate()
    offer = ComputeOffer(JOB.hex(), "compute-1", HpkeSuite.X25519, b"k", enclave.public_key().public_bytes_raw(),
                         b"e", "127.0.0.1:1")
    return enclave, recipient, offer


def ids_payload(n: int) -> tuple[str, bytes, dict]:
    out = arrow_output(pa.table({"customer_id": pa.array(range(10_000, 10_000 + n), pa.int64())}), {"count": n})
    return out.media_type, out.payload, dict(out.summary)


def seal(keys, payload=b"payload", *, kind="ids", recipient="bank", chunk_size=1 << 20, pad_floor=DEFAULT_PAD_FLOOR,
         media_type="application/octet-stream", summary=None):
    enclave, rkey, _ = keys
    return seal_result(job_digest=JOB, kind=kind, recipient=recipient, recipient_key=rkey.public_key(),
                       media_type=media_type, payload=payload, summary=summary or {}, sign=enclave.sign,
                       pad_floor=pad_floor, chunk_size=chunk_size)


def open_(keys, result: SealedResult, recipient="bank"):
    _, rkey, offer = keys
    return open_result(result, offer=offer, recipient=recipient, recipient_key=rkey)


def test_a_result_round_trips_and_its_statement_names_the_job(keys):
    media, payload, summary = ids_payload(500)
    sealed = seal(keys, payload, media_type=media, summary=summary, chunk_size=256)
    assert len(sealed.messages) > 3
    opened = open_(keys, sealed)
    assert opened.payload == payload and opened.summary == summary and opened.media_type == media
    assert b'"job_id":"' + JOB.hex().encode() in sealed.statement


def test_sealed_results_for_100_and_109_ids_are_the_same_size(keys):
    small, larger = (seal(keys, ids_payload(n)[1]) for n in (100, 109))
    assert sealed_size(small) == sealed_size(larger)
    assert [len(m) for m in small.messages] == [len(m) for m in larger.messages]
    assert open_(keys, small).payload != open_(keys, larger).payload
    # the next bucket up is visibly bigger: padding hides the count within a bucket, not across
    assert sealed_size(seal(keys, ids_payload(2000)[1])) > sealed_size(small)


def test_padding_buckets_are_powers_of_two_above_the_floor():
    assert padded_size(1) == padded_size(4096) == 4096
    assert padded_size(4097) == 8192
    assert padded_size(100, 1024) == 1024 and padded_size(5000, 1024) == 8192
    for bad in (0, 1000, 3 << 10, True, "4096"):
        with pytest.raises(InputError, match="power of two"):
            check_pad_floor(bad)


@pytest.mark.parametrize("attack", ["flip", "reorder", "truncate", "drop_middle", "duplicate", "extend"])
def test_a_tampered_stream_is_refused_before_anything_is_opened(keys, attack):
    sealed = seal(keys, bytes(range(256)) * 40, chunk_size=1024)
    messages = list(sealed.messages)
    assert len(messages) >= 5
    if attack == "flip":
        messages[2] = messages[2][:30] + bytes([messages[2][30] ^ 1]) + messages[2][31:]
    elif attack == "reorder":
        messages[1], messages[2] = messages[2], messages[1]
    elif attack == "truncate":
        messages = messages[:-1]
    elif attack == "drop_middle":
        del messages[2]
    elif attack == "duplicate":
        messages.insert(2, messages[2])
    else:
        messages.append(messages[-1])
    tampered = SealedResult(sealed.job_id, sealed.recipient, sealed.kind, sealed.key_envelope, sealed.statement,
                            sealed.signature, tuple(messages))
    with pytest.raises(VerificationError, match="result.stream"):
        open_(keys, tampered)
    # the stream layer refuses the same tampering on its own, even for one who holds the key
    _, rkey, _ = keys
    key = unwrap_result_key(sealed, recipient="bank", recipient_key=rkey)
    with pytest.raises(SealingError):
        open_bytes(messages, key, ResultBinding(JOB, "bank", "ids"))


def test_the_stream_layer_names_what_is_wrong():
    key = ResultKey.generate()
    binding = ResultBinding(JOB, "bank", "ids")
    messages = seal_bytes(bytes(5000), key, binding, 1024)
    assert open_bytes(messages, key, binding) == bytes(5000)
    with pytest.raises(SealingError, match="out of order"):
        open_bytes([messages[0], messages[2], messages[1], *messages[3:]], key, binding)
    with pytest.raises(SealingError, match="truncated"):
        open_bytes(messages[:-1], key, binding)
    with pytest.raises(SealingError, match="follows the chunk flagged last"):
        open_bytes([*messages, messages[-1]], key, binding)
    with pytest.raises(SealingError, match="kind differs"):
        open_bytes(messages, key, ResultBinding(JOB, "bank", "size"))
    with pytest.raises(SealingError, match="recipient differs"):
        open_bytes(messages, key, ResultBinding(JOB, "telco", "ids"))
    with pytest.raises(SealingError, match="job digest differs"):
        open_bytes(messages, key, ResultBinding(OTHER_JOB, "bank", "ids"))
    with pytest.raises(SealingError, match="header authentication failed"):
        open_bytes(messages, ResultKey.generate(), binding)
    # a table stream's header is not a result header
    with pytest.raises(SealingError, match="TNRSLT"):
        open_bytes([b"TNSEAL" + messages[0][6:], *messages[1:]], key, binding)


def test_a_recipient_holding_the_key_cannot_forge_content_the_signature_accepts(keys):
    _, rkey, _ = keys
    sealed = seal(keys, b"the real model")
    key = unwrap_result_key(sealed, recipient="bank", recipient_key=rkey)
    header = canonical_json({"job_id": JOB.hex(), "kind": "ids", "recipient": "bank",
                             "media_type": "application/octet-stream", "payload_bytes": 11,
                             "payload_sha256": hashlib.sha256(b"a forgery!!").hexdigest(), "summary": {}})
    content = bytearray(4096)
    struct.pack_into(">I", content, 0, len(header))
    content[4:4 + len(header)] = header
    content[4 + len(header):4 + len(header) + 11] = b"a forgery!!"
    forged = SealedResult(sealed.job_id, "bank", "ids", sealed.key_envelope, sealed.statement, sealed.signature,
                          tuple(seal_bytes(content, key, ResultBinding(JOB, "bank", "ids"))))
    assert open_with_key(forged, key).payload == b"a forgery!!"  # the key alone would accept it
    with pytest.raises(VerificationError, match="result.stream"):
        open_(keys, forged)


def test_nonzero_padding_and_a_statement_for_another_job_are_refused(keys):
    enclave, rkey, offer = keys
    sealed = seal(keys, b"x")
    key = unwrap_result_key(sealed, recipient="bank", recipient_key=rkey)
    content = open_bytes(sealed.messages, key, ResultBinding(JOB, "bank", "ids"))
    content[-1] = 7
    messages = tuple(seal_bytes(content, key, ResultBinding(JOB, "bank", "ids")))
    digest, size = stream_digest(messages)
    statement = sealed.statement.replace(
        hashlib.sha256(b"".join(struct.pack(">I", len(m)) + m for m in sealed.messages)).hexdigest().encode(),
        digest.hex().encode())
    assert statement != sealed.statement
    resigned = SealedResult(sealed.job_id, "bank", "ids", sealed.key_envelope, statement,
                            enclave.sign(_signed_message(statement)), messages)
    with pytest.raises(VerificationError, match="result.padding"):
        open_(keys, resigned)
    other = sealed.statement.replace(JOB.hex().encode(), OTHER_JOB.hex().encode())
    lying = SealedResult(sealed.job_id, "bank", "ids", sealed.key_envelope, other,
                         enclave.sign(_signed_message(other)), sealed.messages)
    with pytest.raises(VerificationError, match="names another job"):
        open_(keys, lying)


def test_a_result_for_someone_else_does_not_open(keys):
    sealed = seal(keys, b"secret", recipient="telco")
    with pytest.raises(VerificationError, match="result.recipient"):
        open_(keys, sealed, recipient="bank")
