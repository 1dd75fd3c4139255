"""Results that leave the compute enclave: padded, stream-sealed to each recipient, signed.

For each (kind, recipient) the enclave makes a fresh 256-bit result key K and builds

    content   = u32(len(header)) || header || payload || zero padding
    header    = canonical JSON {"job_id", "kind", "recipient", "media_type",
                                "payload_bytes", "payload_sha256", "summary"}

padded with zeros to a size bucket: the smallest power of two at least len(content), and at
least the floor (4 KiB by default, `result_pad_floor` in a compute node's config), so the
sealed size says which bucket, not how many ids. The content is sealed with K as a sealed
byte stream (teenet/sealed_bytes.py: the STREAM chunks of sealed tables, with a result
binding of job, recipient and kind), and K is HPKE-sealed (X25519/HKDF-SHA256/AES-256-GCM)
to the recipient's long-term key with

    info = "teenet/result-key/v1" 0x00 || job_digest || lp(recipient) || lp(kind).

The enclave signs, with its per-job attested Ed25519 key, a statement

    canonical JSON {"format": "teenet/result/v2", "job_id", "kind", "recipient",
                    "key_envelope_sha256", "stream_sha256", "stream_bytes"}

over "teenet/result-statement/v1" 0x00 || statement, so the signature covers every
message of the stream, not only its header: holding K (as the recipient does) is not
enough to make a stream this signature accepts. `job_id` is the job's spec digest; a
recipient checks it against the job it submitted or approved before it opens anything.

This module decides the result's bytes and their checks; which results a job releases,
and to whom, is teenet.models' and the approvals' business.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import x25519

from teenet.canonical import canonical_json, domain_message, parse_canonical_json
from teenet.errors import InputError, SealingError, VerificationError
from teenet.identity import verify_ed25519
from teenet.negotiation import ComputeOffer, lp
from teenet.sealed_bytes import ResultBinding, ResultKey, open_bytes, seal_bytes, stream_digest
from teenet.sealing import DEFAULT_CHUNK_SIZE

RESULT_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
RESULT_FORMAT = "teenet/result/v2"
DEFAULT_PAD_FLOOR = 4096
MIN_PAD_FLOOR = 64
MAX_PAD_FLOOR = 1 << 30
MAX_STATEMENT_BYTES = 6144  # room for a lineage statement (teenet.lineage)
MAX_KEY_ENVELOPE_BYTES = 4096


def check_pad_floor(value: Any, *, field: str = "result_pad_floor") -> int:
    """A padding floor is a power of two in 64 B .. 1 GiB (one rule, used by config and sealer)."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PAD_FLOOR <= value <= MAX_PAD_FLOOR \
            or value & (value - 1):
        raise InputError(f"expected a power of two from {MIN_PAD_FLOOR} to {MAX_PAD_FLOOR} bytes, "
                         f"found {value!r}", field=field)
    return value


def padded_size(content_bytes: int, floor: int = DEFAULT_PAD_FLOOR) -> int:
    """The bucket a result's content is padded to: a power of two, at least `floor`."""
    return max(check_pad_floor(floor), 1 << max(0, content_bytes - 1).bit_length())


@dataclass(frozen=True)
class SealedResult:
    """One result as it travels: small head fields, then the sealed stream's messages."""

    job_id: str
    recipient: str
    kind: str
    key_envelope: bytes
    statement: bytes
    signature: bytes
    messages: tuple[bytes, ...]


@dataclass(frozen=True)
class OpenedResult:
    job_id: str
    kind: str
    recipient: str
    media_type: str
    summary: Mapping[str, Any]
    payload: bytes


def _key_info(job_digest: bytes, recipient: str, kind: str) -> bytes:
    return domain_message("teenet/result-key/v1", job_digest, lp(recipient.encode()), lp(kind.encode()))


def _signed_message(statement: bytes) -> bytes:
    return domain_message("teenet/result-statement/v1", statement)


def seal_result(*, job_digest: bytes, kind: str, recipient: str, recipient_key: x25519.X25519PublicKey,
                media_type: str, payload: bytes, summary: Mapping[str, Any],
                sign: Callable[[bytes], bytes], pad_floor: int = DEFAULT_PAD_FLOOR,
                chunk_size: int = DEFAULT_CHUNK_SIZE, lineage: Mapping[str, Any] | None = None) -> SealedResult:
    header = canonical_json({"job_id": job_digest.hex(), "kind": kind, "recipient": recipient,
                             "media_type": media_type, "payload_bytes": len(payload),
                             "payload_sha256": hashlib.sha256(payload).hexdigest(), "summary": summary})
    used = 4 + len(header) + len(payload)
    content = bytearray(padded_size(used, pad_floor))  # zero-filled: the padding
    struct.pack_into(">I", content, 0, len(header))
    content[4:4 + len(header)] = header
    content[4 + len(header):used] = payload
    key = ResultKey.generate()
    messages = tuple(seal_bytes(content, key, ResultBinding(job_digest, recipient, kind), chunk_size))
    del content
    key_envelope = RESULT_SUITE.encrypt(key.secret_bytes(), recipient_key, info=_key_info(job_digest, recipient, kind))
    digest, size = stream_digest(messages)
    body = {"format": RESULT_FORMAT, "job_id": job_digest.hex(), "kind": kind, "recipient": recipient,
            "key_envelope_sha256": hashlib.sha256(key_envelope).hexdigest(),
            "stream_sha256": digest.hex(), "stream_bytes": size}
    if lineage is not None:  # what went into the result (teenet.lineage), under the same signature
        body["lineage"] = dict(lineage)
    statement = canonical_json(body)
    return SealedResult(job_digest.hex(), recipient, kind, key_envelope, statement,
                        sign(_signed_message(statement)), messages)


def verify_result_signature(result: SealedResult, *, offer: ComputeOffer) -> None:
    """Check the statement names this result, commits to its key envelope and every stream
    message, and is signed by the attested compute enclave of `offer` (already verified with
    negotiation.verify_compute_offer). Nothing is decrypted."""
    if result.job_id != offer.job_id:
        raise VerificationError("result.job", "result belongs to another job",
                                expected=offer.job_id[:16], found=result.job_id[:16])
    if len(result.statement) > MAX_STATEMENT_BYTES:
        raise VerificationError("result.statement", f"statement over {MAX_STATEMENT_BYTES} bytes")
    from teenet.identity import ed25519_public_from_raw

    key = ed25519_public_from_raw(offer.signing_public_key, what="compute offer")
    if not verify_ed25519(key, result.signature, _signed_message(result.statement)):
        raise VerificationError("result.signature", "result is not signed by the attested compute enclave")
    try:
        st = parse_canonical_json(result.statement, what="result statement")
    except InputError:
        raise VerificationError("result.statement", "the signed statement is not canonical JSON") from None
    if st.get("format") != RESULT_FORMAT:
        raise VerificationError("result.statement", "unknown result format", expected=RESULT_FORMAT,
                                found=str(st.get("format"))[:32])
    if st.get("job_id") != result.job_id:
        raise VerificationError("result.job", "the signed statement names another job (spec digest)",
                                expected=result.job_id[:16], found=str(st.get("job_id"))[:16])
    if st.get("kind") != result.kind or st.get("recipient") != result.recipient:
        raise VerificationError("result.statement", "the signed statement names another kind or recipient")
    if st.get("key_envelope_sha256") != hashlib.sha256(result.key_envelope).hexdigest():
        raise VerificationError("result.key_envelope", "the key envelope is not the one the enclave signed")
    digest, size = stream_digest(result.messages)
    if st.get("stream_sha256") != digest.hex() or st.get("stream_bytes") != size:
        raise VerificationError("result.stream", "the sealed stream is not the one the enclave signed "
                                "(altered, reordered, truncated or extended)")


def unwrap_result_key(result: SealedResult, *, recipient: str,
                      recipient_key: x25519.X25519PrivateKey) -> ResultKey:
    """The result key, opened with the recipient's long-term HPKE key."""
    if result.recipient != recipient:
        raise VerificationError("result.recipient", "result is sealed to someone else",
                                expected=recipient, found=result.recipient)
    if len(result.key_envelope) > MAX_KEY_ENVELOPE_BYTES:
        raise VerificationError("result.key_envelope", "key envelope is too large")
    try:
        raw = RESULT_SUITE.decrypt(result.key_envelope, recipient_key,
                                   info=_key_info(bytes.fromhex(result.job_id), recipient, result.kind))
        return ResultKey(raw)
    except Exception:
        raise VerificationError("result.envelope", "result cannot be opened with this recipient's key") from None


def open_with_key(result: SealedResult, key: ResultKey) -> OpenedResult:
    """Decrypt a result whose signature was checked (verify_result_signature) with its key."""
    binding = ResultBinding(bytes.fromhex(result.job_id), result.recipient, result.kind)
    try:
        content = open_bytes(result.messages, key, binding)
    except SealingError as exc:
        raise VerificationError("result.stream", str(exc)) from None
    if len(content) < 4:
        raise VerificationError("result.envelope", "result content is truncated")
    (n,) = struct.unpack_from(">I", content, 0)
    if 4 + n > len(content):
        raise VerificationError("result.header", "result header runs past the content")
    header = parse_canonical_json(bytes(content[4:4 + n]), what="result header")
    size = header.get("payload_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or 4 + n + size > len(content):
        raise VerificationError("result.header", "result header declares a payload that does not fit")
    end = 4 + n + size
    payload = bytes(content[4 + n:end])
    if content.count(0, end) != len(content) - end:
        raise VerificationError("result.padding", "the padding after the payload is not all zero")
    if (header.get("job_id") != result.job_id or header.get("kind") != result.kind
            or header.get("recipient") != result.recipient
            or header.get("payload_sha256") != hashlib.sha256(payload).hexdigest()):
        raise VerificationError("result.header", "result header does not match its stream")
    return OpenedResult(result.job_id, result.kind, result.recipient, str(header.get("media_type", "")),
                        header.get("summary") or {}, payload)


def open_result(result: SealedResult, *, offer: ComputeOffer, recipient: str,
                recipient_key: x25519.X25519PrivateKey) -> OpenedResult:
    """Check the compute enclave's signature over the whole stream, then open the result."""
    verify_result_signature(result, offer=offer)
    return open_with_key(result, unwrap_result_key(result, recipient=recipient, recipient_key=recipient_key))


def sealed_size(result: SealedResult) -> int:
    """Every byte that travels for this result: what an observer of the wire can count."""
    return len(result.key_envelope) + len(result.statement) + len(result.signature) + \
        sum(len(m) for m in result.messages)

