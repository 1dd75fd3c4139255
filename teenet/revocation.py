"""An owner's signed withdrawal of its approval, and the approval's validity window.

An approval (teenet.approval.Decision) carries `not_after`, set by the owner's policy; an
owner may also withdraw it, until the first of its table keys for the job is sealed, by
signing an `ApprovalRevocation` with its node key. The compute enclave checks both before
it makes keys and again before it runs: an expired approval, or any valid revocation by
an input owner, and it refuses (`refuse_withdrawn_or_expired`).

This module decides what a revocation says and when an approval no longer holds. It
does not decide when an owner may revoke (the data node's store refuses a revocation once
a table key was sealed) nor whether the coordinator relays it (it is untrusted: the owner's
node never seals after revoking, whatever the coordinator does; docs/threat-model.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.approval import Decision
from teenet.canonical import canonical_json, domain_message, parse_canonical_json
from teenet.errors import InputError, VerificationError
from teenet.identity import verify_ed25519

DOMAIN = "teenet/approval-revocation/v1"
MAX_REVOCATION_BYTES = 4096


@dataclass(frozen=True)
class ApprovalRevocation:
    job_id: str
    party: str
    decision_sha256: str  # of the canonical decision it withdraws
    revoked_at: int       # Unix seconds, the owner's clock
    reason: str = ""

    def canonical(self) -> bytes:
        return canonical_json({"version": 1, "job_id": self.job_id, "party": self.party,
                               "decision_sha256": self.decision_sha256, "revoked_at": self.revoked_at,
                               "reason": self.reason})

    @classmethod
    def from_canonical(cls, raw: bytes) -> "ApprovalRevocation":
        if len(raw) > MAX_REVOCATION_BYTES:
            raise InputError(f"revocation is {len(raw)} bytes, at most {MAX_REVOCATION_BYTES}")
        data = parse_canonical_json(raw, what="revocation")
        try:
            if data["version"] != 1:
                raise ValueError
            return cls(job_id=str(data["job_id"]), party=str(data["party"]),
                       decision_sha256=str(data["decision_sha256"]), revoked_at=int(data["revoked_at"]),
                       reason=str(data["reason"]))
        except (KeyError, TypeError, ValueError):
            raise InputError("revocation does not follow the teenet/approval-revocation/v1 schema") from None


@dataclass(frozen=True)
class SignedRevocation:
    job_id: str
    party: str
    revocation: bytes
    signature: bytes


def sign_revocation(revocation: ApprovalRevocation, key: ed25519.Ed25519PrivateKey) -> SignedRevocation:
    raw = revocation.canonical()
    return SignedRevocation(revocation.job_id, revocation.party, raw, key.sign(domain_message(DOMAIN, raw)))


def open_signed_revocation(signed: SignedRevocation, party_key: ed25519.Ed25519PublicKey) -> ApprovalRevocation:
    """Verify a revocation's signature by its party's key and that its envelope matches it."""
    if not verify_ed25519(party_key, signed.signature, domain_message(DOMAIN, signed.revocation)):
        raise VerificationError("approval.revoked", f"a revocation said to be by '{signed.party}' is not "
                                                    "signed by its key")
    body = ApprovalRevocation.from_canonical(signed.revocation)
    if body.party != signed.party or body.job_id != signed.job_id:
        raise VerificationError("approval.revoked", "revocation body does not match its envelope")
    return body


def decision_digest(canonical_decision: bytes) -> str:
    return hashlib.sha256(canonical_decision).hexdigest()


def refuse_withdrawn_or_expired(*, job_id: str, decisions: Sequence[Decision],
                                revocations: Sequence[SignedRevocation],
                                party_keys: Mapping[str, ed25519.Ed25519PublicKey], now: float) -> None:
    """Raise VerificationError if an approval of `job_id` is outside its window or withdrawn.

    A revocation that does not verify is ignored (anyone could have made it up; it proves
    nothing); one that verifies, by an owner whose approval is among `decisions`, refuses."""
    owners = {d.party for d in decisions}
    for s in revocations:
        key = party_keys.get(s.party)
        if key is None or s.party not in owners or s.job_id != job_id:
            continue
        try:
            open_signed_revocation(s, key)
        except (VerificationError, InputError):
            continue
        raise VerificationError("approval.revoked", f"'{s.party}' withdrew its approval of this job")
    for d in decisions:
        if d.not_after is None:
            raise VerificationError("approval.validity", f"the approval of '{d.party}' carries no validity window")
        if now > d.not_after:
            raise VerificationError("approval.expired", f"the approval of '{d.party}' expired",
                                    expected=f"until {d.not_after}", found=f"now {int(now)}")
