"""A data owner's signed decision on a job, and the terms the compute enclave derives from all of them.

A decision is canonical JSON signed by the owner's node key over
domain_message("teenet/decision/v1", decision_bytes). An approval names exactly what the
owner agreed to: the job, its own tables and columns, the function, each release kind and
its recipients, the compute enclave measurements it trusts, its smallest group size and
who may receive ids, and the terms of its analysis rules: for each of its tables the rule
(as `teenet.models.rules.AnalysisRule.to_json` writes it) and the epsilon and delta this job
spends of that table's privacy budget. The compute enclave refuses to run unless every
input owner approved, every approval matches the job it is about to run, and every table
it reads comes with its owner's rule (`verify_approvals`); it then enforces all of the
rules at once (the strictest wins) inside the function.

This module does not read the rules' fields (teenet.models.rules does), nor decide anything
for an owner (teenet.node.policy does).
"""

from __future__ import annotations

import json
import math
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
    # Analysis terms (approvals): (table, the table's rule as canonical JSON text) for each
    # approved table, and the (epsilon, delta) this job spends of each table's budget.
    analysis: tuple[tuple[str, str], ...] = ()
    epsilon: float = 0.0
    delta: float = 0.0

    def __post_init__(self) -> None:
        terms = []
        for table, rule in self.analysis:
            text = rule if isinstance(rule, str) else canonical_json(rule).decode("utf-8")
            terms.append((str(table), text))
        object.__setattr__(self, "analysis", tuple(terms))
        for name in ("epsilon", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise InputError(f"decision {name} must be a finite number >= 0")
            object.__setattr__(self, name, float(value))

    def rule_for(self, table: str) -> Mapping[str, Any] | None:
        """The analysis rule (as JSON) this approval carries for `table`, or None."""
        for t, text in self.analysis:
            if t == table:
                return json.loads(text)
        return None

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
            "analysis": [{"table": t, "rule": json.loads(r)} for t, r in self.analysis],
            "epsilon": self.epsilon, "delta": self.delta,
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
                analysis=tuple((str(a["table"]), _rule_object(a["rule"])) for a in data.get("analysis", [])),
                epsilon=_number(data.get("epsilon", 0.0)), delta=_number(data.get("delta", 0.0)),
                not_after=int(data["not_after"]) if "not_after" in data else None,
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError("decision does not follow the teenet/decision/v1 schema") from None


def _rule_object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("an analysis rule is a JSON object")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    return float(value)


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
    # (party, table, rule JSON) for every input table: the rules the enclave enforces, all at once.
    analysis: tuple[tuple[str, str, Mapping[str, Any]], ...] = ()


def verify_approvals(*, job_id: str, function: str, compute: str,
                     inputs: Sequence[tuple[str, str, Sequence[str]]],
                     release: Sequence[tuple[str, Sequence[str]]],
                     signed: Sequence[SignedDecision],
                     party_keys: Mapping[str, ed25519.Ed25519PublicKey],
                     own_measurement: str,
                     spend: tuple[float, float] = (0.0, 0.0)) -> ApprovedTerms:
    """Check an approval from every input owner matches the job; derive the combined terms.

    `inputs` are (party, table, columns-including-keys); `release` is (kind, recipients);
    `spend` is the (epsilon, delta) the job spends, as the enclave reads it from the params:
    an owner that charged its budget less than that did not approve this spend.
    Every approved table must carry its owner's analysis rule: an approval without terms
    (from a node that did not check the job's params) is refused, not read as "no rule".
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
        for p, table, _ in inputs:
            if p == party and d.rule_for(table) is None:
                raise VerificationError("approval.terms", f"'{party}' approved '{table}' without its analysis rule "
                                        "(an approval that does not carry the owner's terms is not enough)")
        if spend[0] > d.epsilon * (1 + 1e-9) or spend[1] > d.delta * (1 + 1e-9):
            raise VerificationError("approval.budget", f"'{party}' approved a smaller privacy spend than this job makes",
                                    expected=f"epsilon {spend[0]:g}, delta {spend[1]:g}",
                                    found=f"epsilon {d.epsilon:g}, delta {d.delta:g}")
        if own_measurement.lower() not in d.compute_measurements:
            raise VerificationError("approval.measurement", f"'{party}' does not trust this compute enclave",
                                    expected=" or ".join(d.compute_measurements) or "-",
                                    found=own_measurement)
    decisions = tuple(by_party[p] for p in owners)
    kinds = {k for k, _ in release}
    approved = {k: frozenset.intersection(*(frozenset(dict(d.release).get(k, ())) for d in decisions))
                for k in kinds}
    id_recipients = frozenset.intersection(*(frozenset(d.id_recipients) for d in decisions))
    analysis = tuple((p, t, by_party[p].rule_for(t)) for p, t in dict.fromkeys((p, t) for p, t, _ in inputs))
    return ApprovedTerms(max(d.min_group_size for d in decisions), approved, id_recipients, decisions,
                         analysis=analysis)
