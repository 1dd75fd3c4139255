"""The pages of each role's console: a data node, a compute node, the coordinator.

Decides which page shows what and which actions exist: a data node has approvals (with
approve and reject), jobs, audit (with a JSON-lines export), attestation and catalog; a
compute node has the jobs it holds, its workers and its own attestation; the coordinator
has job states and counts only (it holds nothing else worth showing). Reads come from the
process's own records; the one write, an operator's decision, goes through
`node.approvals.record_operator_decision`, the function `teenet approvals` calls.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from teenet.errors import TeenetError
from teenet.node.approvals import record_operator_decision
from teenet.node.runtime import NodeRuntime

from teenet.console import data_node
from teenet.console.app import NavItem, Site, render
from teenet.console.auth import Session
from teenet.console.metrics import RecordsCollector, count_states, registry_for
from teenet.console.records import AuditDigest, parse_time

AUDIT_EVENTS_LIMIT = 500


def _form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def data_site(rt: NodeRuntime) -> Site:
    digest = AuditDigest(rt.audit_log)
    network_log = data_node.NetworkTimeline()
    site_ref: list[Site] = []

    async def approvals(request: Request, session: Session) -> Response:
        jobs = await run_in_threadpool(data_node.pending_jobs, rt, digest)
        flash = await run_in_threadpool(_recorded, request.query_params.get("done", ""))
        return render(request, "approvals.html", session, site_ref[0], jobs=jobs, flash=flash,
                      own_measurement=rt.enclave.measurement, backend=rt.enclave.backend)

    def _recorded(done: str) -> str:
        """The confirmation after a decision, shown only if the store holds that action (a
        crafted link cannot make the page claim a decision nobody made)."""
        action, _, prefix = done.partition(":")
        if action not in ("approve", "reject") or len(prefix) != 12 or not all(c in "0123456789abcdef" for c in prefix):
            return ""
        for record in rt.store.jobs():
            found = rt.store.operator_action(record.job_id) if record.job_id.startswith(prefix) else None
            if found is not None and found[0] == action:
                return done
        return ""

    async def decide(request: Request, session: Session) -> Response:
        form = await request.form()
        job_id = request.path_params["job_id"]
        action = _form_text(form, "action")
        try:
            done = await run_in_threadpool(record_operator_decision, rt.store, job_id, action,  # type: ignore[arg-type]
                                           session.operator, _form_text(form, "reason"))
        except TeenetError as exc:
            jobs = await run_in_threadpool(data_node.pending_jobs, rt, digest)
            return render(request, "approvals.html", session, site_ref[0], status=400, jobs=jobs, flash="",
                          error=str(exc), own_measurement=rt.enclave.measurement, backend=rt.enclave.backend)
        return RedirectResponse(f"/approvals?done={done.action}:{done.job_id[:12]}", status_code=303)

    async def jobs(request: Request, session: Session) -> Response:
        rows, problem = await run_in_threadpool(data_node.job_rows, rt, digest, network_log)
        template = "_jobs_rows.html" if request.headers.get("hx-request") else "jobs.html"
        return render(request, template, session, site_ref[0], rows=rows, problem=problem)

    def _filters(request: Request) -> dict[str, str]:
        q = request.query_params
        return {"event": q.get("event", "")[:64], "job": q.get("job", "")[:64], "text": q.get("text", "")[:200]}

    async def audit(request: Request, session: Session) -> Response:
        f = _filters(request)
        rows, _ = await run_in_threadpool(lambda: data_node.audit_rows(rt, limit=AUDIT_EVENTS_LIMIT, **f))
        report = await run_in_threadpool(data_node.verify_audit, rt)
        return render(request, "audit.html", session, site_ref[0], rows=rows, report=report, filters=f,
                      limit=AUDIT_EVENTS_LIMIT)

    async def audit_export(request: Request, session: Session) -> Response:
        _, raw = await run_in_threadpool(lambda: data_node.audit_rows(rt, **_filters(request)))
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in reversed(raw))
        return Response(body, media_type="application/x-ndjson",
                        headers={"content-disposition": f'attachment; filename="{rt.name}-audit.jsonl"'})

    async def attestation(request: Request, session: Session) -> Response:
        await run_in_threadpool(digest.refresh)
        return render(request, "attestation.html", session, site_ref[0], sightings=list(reversed(digest.sightings)),
                      pinned=rt.compute_measurements, own_measurement=rt.enclave.measurement,
                      backend=rt.enclave.backend)

    async def catalog(request: Request, session: Session) -> Response:
        tables = await run_in_threadpool(data_node.catalog_tables, rt)
        return render(request, "catalog.html", session, site_ref[0], tables=tables, policy=rt.config.policy)

    collector = RecordsCollector(lambda: count_states(r.status for r in rt.store.jobs()), digest,
                                 budgets=lambda: data_node.budget_left(rt, list(rt.config.policy.tables)))
    site = Site(
        title=f"{rt.name} (data node)",
        nav=(NavItem("/approvals", "Approvals"), NavItem("/jobs", "Jobs"), NavItem("/audit", "Audit"),
             NavItem("/attestation", "Attestation"), NavItem("/catalog", "Catalog")),
        pages=[("/approvals", approvals), ("/jobs", jobs), ("/audit", audit), ("/attestation", attestation),
               ("/catalog", catalog)],
        actions=[("/approvals/{job_id:str}", decide)],
        downloads=[("/audit.jsonl", audit_export)],
        registry=registry_for(collector))
    site_ref.append(site)
    return site


@dataclass(frozen=True)
class SelfAttestation:
    """This enclave's own fresh evidence, verified as a result's recipient would verify it."""

    at: float
    ok: bool
    platform: str = ""
    measurement: str = ""
    tcb: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    debug: bool = False
    problem: str = ""


SELF_ATTESTATION_TTL = 60.0


def self_attestation(rt: NodeRuntime) -> SelfAttestation:
    """Fresh evidence over random report_data, checked end to end (signature, chain to the
    pinned root, the consortium's result policy, the binding)."""
    from teenet.attestation.verifier import verify_evidence

    nonce = secrets.token_bytes(64)
    try:
        claims = verify_evidence(rt.enclave.attester.attest(nonce), rt.enclave.roots,
                                 rt.consortium.result_policy(), nonce)
    except TeenetError as exc:
        return SelfAttestation(time.time(), False, problem=str(exc))
    return SelfAttestation(time.time(), True, claims.platform.value, claims.measurement.hex(),
                           MappingProxyType(dict(claims.tcb)), claims.debug)


def compute_site(rt: NodeRuntime, workers: int) -> Site:
    digest = AuditDigest(rt.audit_log)
    site_ref: list[Site] = []
    own: list[SelfAttestation] = []

    def attested() -> SelfAttestation:
        if not own or time.time() - own[0].at > SELF_ATTESTATION_TTL:
            own[:] = [self_attestation(rt)]
        return own[0]

    def held() -> tuple[list[tuple[str, list]], list[str]]:
        digest.refresh()
        open_jobs = rt.store.open_compute_jobs()
        rows = [(job_id, steps) for job_id, steps in reversed(list(digest.timelines.items()))]
        return rows, open_jobs

    async def jobs(request: Request, session: Session) -> Response:
        rows, open_jobs = await run_in_threadpool(held)
        template = "_compute_rows.html" if request.headers.get("hx-request") else "compute.html"
        me = await run_in_threadpool(attested)
        return render(request, template, session, site_ref[0], rows=rows, open_jobs=open_jobs, workers=workers, me=me,
                      own_measurement=rt.enclave.measurement, backend=rt.enclave.backend,
                      pinned=tuple((rt.consortium.attestation.get("measurements") or ())),
                      sightings=list(reversed(digest.sightings)))

    def states() -> dict[str, int]:
        digest.refresh()
        open_jobs = set(rt.store.open_compute_jobs())
        return count_states("held" if j in open_jobs else (steps[-1].phase if steps else "unknown")
                            for j, steps in digest.timelines.items())

    collector = RecordsCollector(states, digest)
    site = Site(title=f"{rt.name} (compute node)", nav=(NavItem("/jobs", "Jobs, workers, attestation"),),
                pages=[("/jobs", jobs)], actions=[], registry=registry_for(collector))
    site_ref.append(site)
    return site


def coordinator_site(coordinator: Any) -> Site:
    """Job states and counts: the coordinator stores nothing an operator should read more of."""
    site_ref: list[Site] = []

    def views() -> list:
        return coordinator.list_jobs(viewer=None, limit=1000)

    async def jobs(request: Request, session: Session) -> Response:
        found = await run_in_threadpool(views)
        counts = count_states(v.state.value for v in found)
        template = "_coordinator_rows.html" if request.headers.get("hx-request") else "coordinator.html"
        return render(request, template, session, site_ref[0], jobs=found, counts=sorted(counts.items()))

    def phase_seconds() -> dict[str, list[float]]:
        """Time in each state, from the coordinator's own chain of state changes."""
        out: dict[str, list[float]] = {}
        entered: dict[str, float] = {}
        after = 0
        while True:
            batch = coordinator.audit.entries(after=after, limit=5000)
            for e in batch:
                ev = e.event
                at = parse_time(e.at)
                if ev.get("type") == "job.submitted":
                    entered[str(ev.get("job_id"))] = at
                elif ev.get("type") == "job.state":
                    job_id = str(ev.get("job_id"))
                    if job_id in entered:
                        out.setdefault(str(ev.get("from")), []).append(max(0.0, at - entered[job_id]))
                    entered[job_id] = at
            if len(batch) < 5000:
                return out
            after = batch[-1].seq

    collector = RecordsCollector(lambda: count_states(v.state.value for v in views()), None, phases=phase_seconds)
    site = Site(title="coordinator", nav=(NavItem("/jobs", "Job states"),), pages=[("/jobs", jobs)], actions=[],
                registry=registry_for(collector))
    site_ref.append(site)
    return site
