"""The reasons a node gives to the outside: a fixed vocabulary, never a value.

A reason that leaves a node (a status report to the coordinator, which stores it in its
audit and shows it to the job's members) is a `Reason`: a stage code, a check code, and
the names of the party, the table and the field or column it is about. It is built at the
node's boundary (`Reason.of`) from an exception's *type and its teenet attributes only*
(`VerificationError.check`, `InputError.field`); the text of the exception, which may hold
a cell value, a count below k or a library's message, never leaves. That full text stays
in the node's own audit chain (`detail`) and log, for its operator; a compute node keeps
only a function error's type, since its host is not trusted with data.

This module decides what may be said and how it reads. It does not decide what is
refused (the checks do) or who may read a reason (the coordinator's views do).
"""

from __future__ import annotations

from dataclasses import dataclass

from teenet.errors import (InputError, NegotiationError, ReleaseRefused, SealingError, TeenetError,
                           VerificationError)

# The stages: who refused or failed what. Each reads as the start of the reason.
STAGES: dict[str, str] = {
    "job.refused": "compute enclave refused the job",
    "compute.refused": "{party} refused the compute enclave",
    "upload.refused": "compute node refused {party}/{table}",
    "input.unreadable": "{party} could not read {table}",
    "input.unshippable": "{party} could not ship {table} to {field}",
    "job.uncheckable": "{party} cannot check this job",
    "approval.withdrawn": "{party} withdrew its approval",
    "function.refused": "{field} refused",
    "function.failed": "{field} failed inside the enclave",
    "results.refused": "the coordinator did not take the sealed results",
    "model.unshippable": "{party} could not ship the model",
    # a compute cluster (docs/deploy-cluster.md): a worker lost or refusing, mid-job
    "cluster.failed": "the compute cluster failed",
    # said by the coordinator itself, not a node: a compute node silent past compute_silence
    "compute.silent": "compute node {party} stopped heart-beating; the job's keys are presumed lost "
                      "(resubmit the job)",
}

# The checks a reason may name. Anything else is said as "unlisted": a new check shows up
# as a word that needs adding here, never as text nobody vetted.
CHECKS: frozenset[str] = frozenset({
    # jobs and approvals
    "job.id", "job.replay", "job.signature", "job.analyst", "job.consortium", "job.members", "job.schema",
    "job.size", "job.compute", "approval.columns", "approval.compute", "approval.envelope", "approval.function",
    "approval.job", "approval.measurement", "approval.missing", "approval.party", "approval.rejected",
    "approval.release", "approval.signature", "approval.expired", "approval.validity", "approval.revoked",
    "revocation.signature",
    # witnessed audit logs (teenet/witness.py): a member this node caught equivocating
    "member.equivocated",
    "decision.signature",
    # attestation and key negotiation
    "binding.report_data", "evidence.platform", "evidence.format", "offer.job", "offer.compute",
    "negotiation.refused", "sealing.stream",
    "policy.all_of", "policy.any_of", "policy.debug", "policy.hardware", "policy.measurement",
    "policy.platform", "policy.tcb", "policy.tcb_status", "policy.vmpl",
    "snp.chain", "snp.chip_id", "snp.parse", "snp.platform", "snp.product", "snp.root", "snp.signature",
    "snp.signature_algo", "snp.signer", "snp.tcb", "snp.validity", "tsm.generation",
    "dcap.chain", "dcap.collateral", "dcap.crl", "dcap.parse", "dcap.pck_extensions", "dcap.qe_binding",
    "dcap.qe_identity", "dcap.qe_report_signature", "dcap.revoked", "dcap.root", "dcap.signature",
    "dcap.tcb_status", "dcap.tee_type", "gramine.quote", "gramine.report_data",
    # compute clusters (docs/deploy-cluster.md): the offer's cluster part, the partitions
    "cluster.signature", "cluster.workers", "cluster.certificate", "cluster.partition_key",
    "cluster.partition", "cluster.session", "cluster.worker_lost", "cluster.not_ready", "cluster.whole_table",
    # inputs
    "input.source", "input.column", "input.value", "input.columns", "input.not_input",
    "input.fingerprint",
    # release rules (teenet.models)
    "release.requests", "release.raw_rows", "release.kind", "release.recipients", "release.scores",
    "release.min_group_size", "release.dp", "release.refused", "function.params", "function.input",
    # owners' analysis rules (teenet.models.rules) and the terms approvals carry
    "analysis.functions", "analysis.releases", "analysis.join_keys", "analysis.group_by", "analysis.max_group_by",
    "analysis.statistics", "analysis.models", "analysis.max_trees", "analysis.max_tree_depth",
    "analysis.max_tree_nodes", "analysis.dp_required", "analysis.max_epsilon_per_job", "analysis.max_rows_per_key",
    "approval.terms", "approval.budget",
    # results and shipped models (teenet/release.py, teenet/shipped_model.py)
    "result.job", "result.kind", "result.missing", "result.compute", "result.offer", "result.statement",
    "result.signature", "result.key_envelope", "result.stream", "result.recipient", "result.envelope",
    "result.header", "result.padding", "model.job", "model.offer", "model.recipient", "model.result",
    "model.approval",
    # transport
    "tls.handshake", "tls.hostname", "transport.unavailable", "transport.deadline_exceeded",
    "transport.cancelled", "transport.resource_exhausted", "transport.permission_denied",
    "transport.failed_precondition", "transport.invalid_argument", "transport.internal",
    "transport.unknown", "transport.not_found",
    "unlisted",
})

MAX_NAME_CHARS = 128


def _name(value: str, what: str) -> str:
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ValueError(f"a reason's {what} must be a printable name of at most {MAX_NAME_CHARS} characters")
    return value


@dataclass(frozen=True)
class Reason:
    """Why a job failed at a node, in words every member may read."""

    code: str          # a stage, one of STAGES
    check: str = ""    # one of CHECKS, or empty
    party: str = ""    # the party it is about (a member name)
    table: str = ""    # a table name
    field: str = ""    # a field, column or function name; never a value

    def __post_init__(self) -> None:
        if self.code not in STAGES:
            raise ValueError(f"unknown reason code {self.code!r}")
        if self.check and self.check not in CHECKS:
            object.__setattr__(self, "check", "unlisted")
        for what in ("party", "table", "field"):
            _name(getattr(self, what), what)

    def text(self) -> str:
        """The one line a member reads: the stage, then the check and the field it names."""
        head = STAGES[self.code].format(party=self.party or "?", table=self.table or "?", field=self.field or "?")
        if not self.check:
            return head
        tail = self.check
        if self.field and "{field}" not in STAGES[self.code]:
            tail += f" (field '{self.field}')"
        elif self.party and "{party}" not in STAGES[self.code]:
            tail += f" ('{self.party}')"
        return f"{head}: {tail}"

    @classmethod
    def of(cls, code: str, exc: BaseException, *, party: str = "", table: str = "", field: str = "") -> "Reason":
        """The reason for `exc` at stage `code`, from its type and teenet attributes only."""
        column = field
        if not column and isinstance(exc, InputError) and exc.field:
            column = exc.field[:MAX_NAME_CHARS] if exc.field.isprintable() else ""
        # An analysis rule's refusal (teenet.models.rules.RuleRefused) names the job's field
        # it refused ("params.group_by[0]"): a path in the spec, never a value.
        declared = getattr(exc, "field", None)
        if not column and isinstance(exc, ReleaseRefused) and isinstance(declared, str) and declared.isprintable():
            column = declared[:MAX_NAME_CHARS]
        return cls(code, check_of(exc), party=party, table=table, field=column)


def check_of(exc: BaseException) -> str:
    """The check an exception names, from its type and attributes (never its text)."""
    if isinstance(exc, VerificationError):
        return exc.check if exc.check in CHECKS else "unlisted"
    declared = getattr(exc, "check", None)
    if isinstance(declared, str) and declared in CHECKS:
        return declared
    if isinstance(exc, ReleaseRefused):
        # teenet.models names its rule first ("release.min_group_size: ..."); only a listed
        # rule name is kept, so whatever follows it never leaves.
        head = str(exc).split(":", 1)[0].strip()
        return head if head in CHECKS else "release.refused"
    if isinstance(exc, SealingError):
        return "sealing.stream"
    if isinstance(exc, NegotiationError):
        return "negotiation.refused"
    if isinstance(exc, InputError):
        return "input.value" if exc.field else "input.source"
    if isinstance(exc, TeenetError):
        return "unlisted"
    return ""


_TLS_REFUSALS = ("SSL_ERROR_SSL", "CERTIFICATE", "BAD_SIGNATURE", "UNKNOWN_CA", "certificate")


def transport_check(code_name: str, details: str) -> str:
    """A fixed word for a failed gRPC call: the TLS check that failed, else the status code."""
    if "Hostname Verification" in details:
        return "tls.hostname"
    # A handshake that TLS itself refused (the peer's certificate), not one a broken
    # connection cut short (SSL_ERROR_SYSCALL: that is the network, said by the status code).
    if "handshake" in details.lower() and any(m in details for m in _TLS_REFUSALS):
        return "tls.handshake"
    check = f"transport.{code_name.lower()}"
    return check if check in CHECKS else "transport.unknown"


def check_named_in(details: str) -> str:
    """The listed check a peer's one-line refusal starts with ("policy.hardware: ..."), else
    "unlisted": only a word from CHECKS is taken from another node's text."""
    head = details.split(":", 1)[0].strip()
    return head if head in CHECKS else "unlisted"
