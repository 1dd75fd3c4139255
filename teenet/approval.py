"""A data owner's signed decision on a job, and the terms the compute enclave derives from all of them.

A decision is canonical JSON signed by the owner's node key over
domain_message("teenet/decision/v1", decision_bytes). An approval names exactly what the
owner agreed to: the job, its own tables and columns, the function, each release kind and
its recipients, the compute enclave measurements it trusts, its smallest group size and
who may receive ids. The compute enclave refuses to run unless every input owner approved
and every approval matches the job it is about to run (`verify_approvals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.canonical import canonical_json, domain_message, parse_canonical_json
from teenet.errors import InputError, VerificationError
from teenet.identity import verify_ed25519

DOMAIN = "teenet/decision/v1"
MAX_DECISION_BYTES = 64 * 1024


@dataclass(frozen=True)
class Decision:
    job_id: str
    party: str
    decision: str  # approve | reject
    reason: str
    function: str = ""
    compute: str = ""
    tables: tuple[tuple[str, tuple[str, ...]], ...] = ()
    release: tuple[tuple[str, tuple[str, ...]], ...] = ()
    compute_measurements: tuple[str, ...] = ()
    min_group_size: int = 1
    id_recipients: tuple[str, ...] = ()
    decided_by: str = "policy"  # policy | operator:<name>
    # Unix seconds after which the approval no longer holds (the owner's policy sets it;
    # teenet.revocation checks it). None only on a rejection.
    not_after: int | None = None

    @property
    def approved(self) -> bool:
        return self.decision == "approve"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1, "job_id": self.job_id, "party": self.party, "decision": self.decision,
            "reason": self.reason, "function": self.function, "compute": self.compute,
            "tables": [{"table": t, "columns": list(c)} for t, c in self.tables],
            "release": [{"kind": k, "to": list(r)} for k, r in self.release],
            "compute_measurements": list(self.compute_measurements),
            "min_group_size": self.min_group_size, "id_recipients": list(self.id_recipients),
            "decided_by": self.decided_by,
            **({"not_after": self.not_after} if self.not_after is not None else {}),
        }

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_canonical(cls, raw: bytes) -> "Decision":
        if len(raw) > MAX_DECISION_BYTES:
            raise InputError("decision is too large")
        data = parse_canonical_json(raw, what="decision")
        try:
            if data["version"] != 1 or data["decision"] not in ("approve", "reject"):
                raise ValueError
            return cls(
                job_id=str(data["job_id"]), party=str(data["party"]), decision=data["decision"],
                reason=str(data["reason"]), function=str(data["function"]), compute=str(data["compute"]),
                tables=tuple((str(t["table"]), tuple(str(c) for c in t["columns"])) for t in data["tables"]),
                release=tuple((str(r["kind"]), tuple(str(x) for x in r["to"])) for r in data["release"]),
                compute_measurements=tuple(str(m).lower() for m in data["compute_measurements"]),
                min_group_size=int(data["min_group_size"]),
                id_recipients=tuple(str(x) for x in data["id_recipients"]),
                decided_by=str(data["decided_by"]),
                not_after=int(data["not_after"]) if "not_after" in data else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError("decision does not follow the teenet/decision/v1 schema") from None


@dataclass(frozen=True)
class SignedDecision:
    job_id: str
    party: str
    decision: bytes
    signature: bytes


def sign_decision(decision: Decision, key: ed25519.Ed25519PrivateKey) -> SignedDecision:
    raw = decision.canonical()
    return SignedDecision(decision.job_id, decision.party, raw, key.sign(domain_message(DOMAIN, raw)))


def open_signed_decision(signed: SignedDecision, party_key: ed25519.Ed25519PublicKey) -> Decision:
    """Verify a decision's signature by its party's key and that its envelope matches it."""
    if not verify_ed25519(party_key, signed.signature, domain_message(DOMAIN, signed.decision)):
        raise VerificationError("approval.signature", f"decision of '{signed.party}' is not signed by its key")
    decision = Decision.from_canonical(signed.decision)
    if decision.party != signed.party or decision.job_id != signed.job_id:
        raise VerificationError("approval.envelope", "decision body does not match its envelope",
                                expected=f"{signed.party}/{signed.job_id[:16]}",
                                found=f"{decision.party}/{decision.job_id[:16]}")
    return decision


@dataclass(frozen=True)
class ApprovedTerms:
    """What every owner agreed to, combined: the compute enclave enforces exactly this."""

    min_group_size: int
    approved_recipients: Mapping[str, frozenset[str]]
    id_recipients: frozenset[str]
    decisions: tuple[Decision, ...] = field(default=())


def verify_approvals(*, job_id: str, function: str, compute: str,
                     inputs: Sequence[tuple[str, str, Sequence[str]]],
                     release: Sequence[tuple[str, Sequence[str]]],
                     signed: Sequence[SignedDecision],
                     party_keys: Mapping[str, ed25519.Ed25519PublicKey],
                     own_measurement: str) -> ApprovedTerms:
    """Check an approval from every input owner matches the job; derive the combined terms.

    `inputs` are (party, table, columns-including-keys); `release` is (kind, recipients).
    """
    by_party: dict[str, Decision] = {}
    for s in signed:
        key = party_keys.get(s.party)
        if key is None:
            raise VerificationError("approval.party", f"decision from '{s.party}', who is not a data owner here")
        d = open_signed_decision(s, key)
        if d.job_id != job_id:
            raise VerificationError("approval.job", f"decision of '{d.party}' is for another job",
                                    expected=job_id[:16], found=d.job_id[:16])
        by_party[d.party] = d
    owners = sorted({p for p, _, _ in inputs})
    for party in owners:
        d = by_party.get(party)
        if d is None:
            raise VerificationError("approval.missing", f"no approval from input owner '{party}'")
        if not d.approved:
            raise VerificationError("approval.rejected", f"'{party}' rejected the job: {d.reason}")
        if d.function != function:
            raise VerificationError("approval.function", f"'{party}' approved another function",
                                    expected=function, found=d.function)
        if d.compute != compute:
            raise VerificationError("approval.compute", f"'{party}' approved another compute node",
                                    expected=compute, found=d.compute)
        granted = {t: set(c) for t, c in d.tables}
        for p, table, columns in inputs:
            if p != party:
                continue
            missing = sorted(set(columns) - granted.get(table, set()))
            if table not in granted or missing:
                raise VerificationError("approval.columns", f"'{party}' did not grant {table}"
                                        + (f" columns {', '.join(missing)}" if table in granted else ""))
        approved_release = {k: set(r) for k, r in d.release}
        for kind, recipients in release:
            extra = sorted(set(recipients) - approved_release.get(kind, set()))
            if kind not in approved_release or extra:
                raise VerificationError("approval.release", f"'{party}' did not approve release '{kind}'"
                                        + (f" to {', '.join(extra)}" if kind in approved_release else ""))
        if own_measurement.lower() not in d.compute_measurements:
            raise VerificationError("approval.measurement", f"'{party}' does not trust this compute enclave",
                                    expected=" or ".join(d.compute_measurements) or "-",
                                    found=own_measurement)
    decisions = tuple(by_party[p] for p in owners)
    kinds = {k for k, _ in release}
    approved = {k: frozenset.intersection(*(frozenset(dict(d.release).get(k, ())) for d in decisions))
                for k in kinds}
    id_recipients = frozenset.intersection(*(frozenset(d.id_recipients) for d in decisions))
    return ApprovedTerms(max(d.min_group_size for d in decisions), approved, id_recipients, decisions)
