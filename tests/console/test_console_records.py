"""console/records.py and console/metrics.py: what a node's audit chain folds into, and its metrics."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import generate_latest

from teenet.audit import AuditLog
from teenet.console.metrics import RecordsCollector, registry_for
from teenet.console.records import AuditDigest

JOB = "f" * 64


def test_the_digest_folds_new_entries_into_timelines_counts_and_metrics(tmp_path):
    log = AuditLog(tmp_path / "audit.db", ed25519.Ed25519PrivateKey.generate())
    log.append({"event": "job_received", "node": "bank", "job_id": JOB, "name": "psi"})
    log.append({"event": "approved", "node": "bank", "job_id": JOB, "decided_by": "operator:dana", "reason": "ok"})
    digest = AuditDigest(log).refresh()
    assert [s.phase for s in digest.timelines[JOB]] == ["received", "approved"]
    assert digest.decisions == {("approve", "operator"): 1}

    # only the new entries are read on the next refresh, and they add up
    log.append({"event": "released_table", "node": "bank", "job_id": JOB, "table": "customers", "rows": 7,
                "sealed_bytes": 1234, "to": "compute-1", "enclave_platform": "sim-snp",
                "enclave_measurement": "ab" * 48, "enclave_tcb": {"snp": 24}})
    log.append({"event": "compute_refused", "node": "bank", "job_id": "e" * 64,
                "reason": "policy.measurement: not pinned"})
    digest.refresh()
    assert [s.phase for s in digest.timelines[JOB]] == ["received", "approved", "attested", "uploaded"]
    assert (digest.sealed_bytes, digest.sealed_rows) == (1234, 7)
    assert digest.verifications == {("ok", ""): 1, ("refused", "policy.measurement"): 1}
    assert [(s.peer, s.ok, dict(s.tcb)) for s in digest.sightings] == [("compute-1", True, {"snp": 24}),
                                                                      ("", False, {})]
    assert len(digest.phase_seconds["received"]) == 1 and digest.phase_seconds["received"][0] >= 0

    # a compute node's release, as its audit records it ([kind, recipient, sealed size]), and
    # fields of an unexpected shape: folded without a crash, unknown figures counted as 0
    log.append({"event": "released_results", "node": "compute-1", "job_id": JOB,
                "results": [["size", "analyst", 96], ["size", "bank", 96]]})
    log.append({"event": "table_received", "node": "compute-1", "job_id": JOB, "party": "bank",
                "table": "customers", "rows": "many", "sealed_bytes": None})
    digest.refresh()
    assert digest.timelines[JOB][-2].detail == "size -> analyst, size -> bank"
    assert (digest.opened_bytes, digest.opened_rows) == (0, 0)

    text = generate_latest(registry_for(RecordsCollector(lambda: {"uploaded": 1}, digest,
                                                         budgets=lambda: {"customers": 0.5}))).decode()
    assert 'teenet_jobs{state="uploaded"} 1.0' in text
    assert "teenet_sealed_bytes_total 1234.0" in text
    assert 'teenet_attestation_verifications_total{reason="policy.measurement",result="refused"} 1.0' in text
    assert 'teenet_approvals_total{decided_by="operator",decision="approve"} 1.0' in text
    assert 'teenet_phase_seconds_bucket{le="+Inf",phase="approved"} 1.0' in text
    assert 'teenet_budget_left{table="customers"} 0.5' in text
    log.close()
