"""What a data node's console shows, read from the node's own records.

Decides how a pending job is laid out for its steward: the terms an approval would sign
(`node.policy.decision_for`, the same function the daemon signs with), the columns of
this owner's tables it touches beside what the policy grants, the function and its
parameters, each release and its recipients, k, the epsilon it spends and the budget left
(when the store keeps a ledger), what the owner's policy says of it now, and the last
verified evidence of the compute enclave it names. Does not decide anything about the job:
approve and reject go through `node.approvals.record_operator_decision`, and the daemon
signs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import grpc

from teenet.audit import ChainReport
from teenet.errors import TeenetError
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.node import policy as owner_policy
from teenet.node.runtime import NodeRuntime
from teenet.proto import teenet_pb2 as pb

from teenet.console.records import AuditDigest, EnclaveSighting, TimelineStep

NETWORK_PAGE = 1000


@dataclass(frozen=True)
class TableUse:
    table: str
    columns: tuple[str, ...]      # what the job reads
    granted: tuple[str, ...]      # what the owner's policy shares of this table
    all_columns: tuple[str, ...]  # the table's real columns


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    name: str
    analyst: str
    function: str
    compute: str
    received_at: float
    status: str
    policy_says: str              # approve | reject | pending
    policy_reason: str            # which rule matched, or why it needs a person
    tables: tuple[TableUse, ...]
    params: str                   # the function's parameters, as JSON
    releases: tuple[tuple[str, tuple[str, ...]], ...]
    min_group_size: int
    id_recipients: tuple[str, ...]
    measurements: tuple[str, ...]  # the compute measurements this approval would trust
    compute_seen: EnclaveSighting | None
    epsilon: float | None
    budget_left: Mapping[str, float] | None
    spec_json: str
    recorded: tuple[str, str, str] | None = None  # (action, operator, reason) not yet signed by the daemon
    rules_matched: tuple[str, ...] = ()       # where each analysis rule that matched is written
    analysis: tuple[tuple[str, str], ...] = ()  # (table, the analysis rule the approval signs, as JSON)


def budget_left(rt: NodeRuntime, tables: Sequence[str]) -> Mapping[str, float]:
    """The privacy budget (epsilon) left per table, from the node's ledger
    (teenet.node.budget: the configured budget plus raises, less what approvals spent)."""
    from teenet.node import budget as ledger

    return {t: float(ledger.table_budget(rt.store, rt.config.policy, t).remaining_epsilon) for t in tables}


def _epsilon(spec: Any, params: Mapping[str, Any]) -> float | None:
    """The epsilon a job spends, as the ledger will charge it (None without DP)."""
    from teenet.node import budget as ledger

    epsilon, _ = ledger.job_cost(spec)
    return float(epsilon) if epsilon > 0 else None


def pending_jobs(rt: NodeRuntime, digest: AuditDigest) -> list[PendingJob]:
    out = []
    digest.refresh()
    for record in rt.store.jobs("pending"):
        spec = verify_signed_job(SignedJob(record.canonical_spec, record.analyst, record.signature), rt.consortium)
        real = {inp.table: rt.catalog.columns(inp.table) for inp in spec.inputs
                if inp.party == rt.name and inp.table in rt.catalog.tables}
        outcome = owner_policy.evaluate(spec, rt.config.policy, rt.name, real)
        terms = owner_policy.decision_for(spec, record.job_id, rt.name, rt.config.policy, rt.compute_measurements,
                                          approve=True, reason="", decided_by="")
        loose = json.loads(record.canonical_spec)
        params = loose.get("params") or {}
        seen = [s for s in digest.sightings if s.ok and s.peer == spec.compute]
        tables = tuple(TableUse(t, cols, tuple(rt.config.policy.tables.get(t, ())), tuple(real.get(t, ())))
                       for t, cols in terms.tables)
        out.append(PendingJob(
            job_id=record.job_id, name=spec.name, analyst=spec.analyst, function=spec.function,
            compute=spec.compute, received_at=record.received_at, status=record.status,
            policy_says=outcome.outcome, policy_reason=outcome.reason, tables=tables,
            params=json.dumps(params, indent=2, sort_keys=True), releases=terms.release,
            min_group_size=terms.min_group_size, id_recipients=terms.id_recipients,
            measurements=terms.compute_measurements, compute_seen=seen[-1] if seen else None,
            epsilon=_epsilon(spec, params), budget_left=budget_left(rt, [t for t, _ in terms.tables]),
            spec_json=json.dumps(loose, indent=2, sort_keys=True), recorded=rt.store.operator_action(record.job_id),
            # analysis rules: on nodes whose policy has them (getattr: older terms have none)
            rules_matched=tuple(getattr(outcome, "rules", ()) or ()),
            analysis=tuple((t, json.dumps(rule, indent=2, sort_keys=True))
                           for t, rule in (getattr(terms, "analysis", ()) or ()))))
    return out


@dataclass(frozen=True)
class JobRow:
    job_id: str
    name: str
    function: str
    node_status: str
    reason: str
    network_state: str            # the coordinator's state, or "" when it could not be asked
    network_reason: str
    steps: tuple[TimelineStep, ...]


@dataclass
class NetworkTimeline:
    """Each job's states at the coordinator, with times, from its audit chain (GetAudit, read
    incrementally). The coordinator is untrusted: the page labels these steps as its word."""

    last_seq: int = 0
    steps: dict[str, list[TimelineStep]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, rt: NodeRuntime) -> None:
        with self._lock:
            while True:
                reply = rt.coordinator.stub.GetAudit(pb.AuditRequest(after_seq=self.last_seq, limit=NETWORK_PAGE),
                                                     timeout=3)
                for e in reply.entries:
                    try:
                        record = json.loads(e.payload)
                        event = record.get("event") or {}
                    except (ValueError, AttributeError):
                        event, record = {}, {}
                    kind = event.get("type") if isinstance(event, dict) else None
                    if kind in ("job.submitted", "job.state"):
                        state = "submitted" if kind == "job.submitted" else str(event.get("to", ""))
                        detail = str(event.get("reason", "")) if kind == "job.state" else ""
                        self.steps.setdefault(str(event.get("job_id", "")), []).append(
                            TimelineStep(e.seq, str(record.get("at", "")), f"network: {state}", detail))
                    self.last_seq = max(self.last_seq, e.seq)
                if len(reply.entries) < NETWORK_PAGE:
                    return


def job_rows(rt: NodeRuntime, digest: AuditDigest, network_log: NetworkTimeline) -> tuple[list[JobRow], str]:
    """Every job this node has seen, newest first: its own timeline merged with the coordinator's."""
    digest.refresh()
    network: dict[str, pb.JobStatus] = {}
    problem = ""
    try:
        reply = rt.coordinator.stub.ListJobs(pb.ListJobsRequest(limit=500), timeout=3)
        network = {j.job_id: j for j in reply.jobs}
        network_log.refresh(rt)
    except grpc.RpcError as exc:
        problem = f"the coordinator did not answer ({exc.code().name}); states below are this node's own"
    rows = []
    for r in reversed(rt.store.jobs()):
        n = network.get(r.job_id)
        steps = sorted([*digest.timelines.get(r.job_id, ()), *network_log.steps.get(r.job_id, ())],
                       key=lambda s: s.at)
        rows.append(JobRow(r.job_id, r.name, r.function, r.status, r.reason, n.state if n else "",
                           n.reason if n else "", tuple(steps)))
    return rows, problem


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    event: str
    job_id: str
    fields: str
    entry_hash: str


def audit_rows(rt: NodeRuntime, *, event: str = "", job: str = "", text: str = "",
               limit: int = 500) -> tuple[list[AuditRow], list[dict[str, Any]]]:
    """Entries matching the filters (newest first), and the same as JSON objects for export."""
    rows, raw = [], []
    after = 0
    while True:
        batch = rt.audit_log.entries(after=after, limit=5000)
        for e in batch:
            ev = e.event
            name, job_id = str(ev.get("event", ev.get("type", ""))), str(ev.get("job_id", ""))
            body = json.dumps({k: v for k, v in ev.items() if k not in ("event", "job_id", "node")}, sort_keys=True)
            if event and name != event:
                continue
            if job and not job_id.startswith(job.lower()):
                continue
            if text and text.lower() not in e.payload.decode("utf-8", "replace").lower():
                continue
            rows.append(AuditRow(e.seq, e.at, name, job_id, body, e.entry_hash.hex()))
            raw.append(e.to_json())
        if len(batch) < 5000:
            break
        after = batch[-1].seq
    rows.reverse()
    raw.reverse()
    return rows[:limit], raw


def verify_audit(rt: NodeRuntime) -> ChainReport:
    """The chain checked against this node's own signing key (the one the consortium pins)."""
    return rt.audit_log.verify()


@dataclass(frozen=True)
class CatalogTable:
    table: str
    format: str
    columns: tuple[str, ...]
    types: Mapping[str, str]       # column -> Arrow type, as the node reads it
    shared: tuple[str, ...]
    published: tuple[str, ...]
    auto_approve: tuple[str, ...]  # one line per auto-approve rule


def catalog_tables(rt: NodeRuntime) -> list[CatalogTable]:
    policy = rt.config.policy
    rules = tuple(f"analysts {', '.join(r.analysts)}; functions {', '.join(r.functions)}; "
                  f"releases {', '.join(r.release_kinds)}; to {', '.join(r.recipients)}" for r in policy.auto_approve)
    out = []
    for name, source in rt.config.tables.items():
        try:
            schema = rt.catalog.schema(name)
            columns, types = tuple(schema.names), {f.name: str(f.type) for f in schema}
        except TeenetError as exc:
            columns, types = (f"(cannot read: {exc})",), {}
        out.append(CatalogTable(name, source.format, columns, types, tuple(policy.tables.get(name, ())),
                                tuple(rt.config.member.tables.get(name, ())), rules))
    return out
