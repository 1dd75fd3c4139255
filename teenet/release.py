"""Results that leave the compute enclave: signed by its attested key, sealed to each recipient.

For each (kind, recipient) the enclave builds
    plaintext = lp(header) || payload
where header is canonical JSON {"job_id", "kind", "recipient", "media_type",
"payload_sha256", "summary"}, and seals it with HPKE (X25519/HKDF-SHA256/AES-256-GCM) to
the recipient's long-term HPKE key from the consortium file, with
    info = "teenet/result/v1" 0x00 || job_digest || lp(recipient) || lp(kind).
The enclave signs, with its per-job attested Ed25519 key,
    "teenet/result-signature/v1" 0x00 || job_digest || lp(recipient) || lp(kind) || SHA-256(envelope).
A recipient verifies offline: the job's analyst signature, the compute evidence against
its policy and its binding to the job and these keys, the signature, then opens the envelope.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import x25519

from teenet.canonical import canonical_json, domain_message, parse_canonical_json
from teenet.errors import VerificationError
from teenet.identity import verify_ed25519
from teenet.negotiation import ComputeOffer, lp

RESULT_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class SealedResult:
    job_id: str
    recipient: str
    kind: str
    envelope: bytes
    signature: bytes


@dataclass(frozen=True)
class OpenedResult:
    job_id: str
    kind: str
    recipient: str
    media_type: str
    summary: Mapping[str, Any]
    payload: bytes


def _info(job_digest: bytes, recipient: str, kind: str) -> bytes:
    return domain_message("teenet/result/v1", job_digest, lp(recipient.encode()), lp(kind.encode()))


def _signed_message(job_digest: bytes, recipient: str, kind: str, envelope: bytes) -> bytes:
    return domain_message("teenet/result-signature/v1", job_digest, lp(recipient.encode()), lp(kind.encode()),
                          hashlib.sha256(envelope).digest())


def seal_result(*, job_digest: bytes, kind: str, recipient: str, recipient_key: x25519.X25519PublicKey,
                media_type: str, payload: bytes, summary: Mapping[str, Any],
                sign: Callable[[bytes], bytes]) -> SealedResult:
    header = canonical_json({"job_id": job_digest.hex(), "kind": kind, "recipient": recipient,
                             "media_type": media_type, "payload_sha256": hashlib.sha256(payload).hexdigest(),
                             "summary": summary})
    envelope = RESULT_SUITE.encrypt(lp(header) + payload, recipient_key, info=_info(job_digest, recipient, kind))
    return SealedResult(job_digest.hex(), recipient, kind, envelope,
                        sign(_signed_message(job_digest, recipient, kind, envelope)))


def open_result(result: SealedResult, *, offer: ComputeOffer, recipient: str,
                recipient_key: x25519.X25519PrivateKey) -> OpenedResult:
    """Check the compute enclave's signature and open a result. The caller has already verified
    `offer` (its evidence and binding) with negotiation.verify_compute_offer."""
    if result.job_id != offer.job_id:
        raise VerificationError("result.job", "result belongs to another job",
                                expected=offer.job_id[:16], found=result.job_id[:16])
    if result.recipient != recipient:
        raise VerificationError("result.recipient", "result is sealed to someone else",
                                expected=recipient, found=result.recipient)
    from teenet.identity import ed25519_public_from_raw

    key = ed25519_public_from_raw(offer.signing_public_key, what="compute offer")
    digest = offer.job_digest
    if not verify_ed25519(key, result.signature, _signed_message(digest, recipient, result.kind, result.envelope)):
        raise VerificationError("result.signature", "result is not signed by the attested compute enclave")
    try:
        plain = RESULT_SUITE.decrypt(result.envelope, recipient_key, info=_info(digest, recipient, result.kind))
    except Exception:
        raise VerificationError("result.envelope", "result cannot be opened with this recipient's key") from None
    if len(plain) < 4:
        raise VerificationError("result.envelope", "result envelope is truncated")
    (n,) = struct.unpack(">I", plain[:4])
    header = parse_canonical_json(plain[4:4 + n], what="result header")
    payload = plain[4 + n:]
    if (header.get("job_id") != result.job_id or header.get("kind") != result.kind
            or header.get("recipient") != recipient
            or header.get("payload_sha256") != hashlib.sha256(payload).hexdigest()):
        raise VerificationError("result.header", "result header does not match its envelope")
    return OpenedResult(result.job_id, result.kind, recipient, str(header.get("media_type", "")),
                        header.get("summary") or {}, payload)
