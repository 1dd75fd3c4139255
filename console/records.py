"""What a node's audit chain says, folded once for the pages and for /metrics.

The chain is the one source of truth: job timelines (received, decided, attested, shipped,
released, failed, with times), the enclaves seen and how their evidence verified, bytes
sealed and opened, decisions by who made them. `AuditDigest` reads only the entries
appended since its last look, so a scrape or a page costs the new entries, not the whole
log. It decides nothing about whether the chain is intact: `AuditLog.verify` does, and the
audit page shows that verdict beside what is folded here.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from teenet.audit import AuditLog

PAGE = 5000

# node audit event -> the timeline phase it marks (data and compute roles)
PHASES: Mapping[str, str] = {
    "job_received": "received", "approval_pending": "awaiting operator", "approved": "approved",
    "rejected": "rejected", "released_table": "uploaded", "compute_refused": "attestation refused",
    "upload_failed": "failed", "upload_refused": "failed", "job_failed": "failed", "job_stopped": "stopped",
    "job_accepted": "accepted", "table_received": "table received", "released_results": "released",
    "job_dropped": "stopped", "job_refused": "refused", "approval_revoked": "approval revoked",
    "upload_withheld": "withheld (approval revoked)", "upload_broken": "upload broken",
}


def parse_time(at: str) -> float:
    """Seconds since the epoch from an audit entry's UTC time."""
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class TimelineStep:
    seq: int
    at: str
    phase: str
    detail: str


@dataclass(frozen=True)
class EnclaveSighting:
    """One verification of a peer enclave's evidence, as this node logged it."""

    at: str
    job_id: str
    peer: str
    platform: str
    measurement: str
    tcb: Mapping[str, Any]
    ok: bool
    reason: str


def _int(value: Any) -> int:
    """A count from an audit field; anything that is not a whole number counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _summary(event: Mapping[str, Any]) -> str:
    name = event.get("event", "")
    if name == "released_table":
        return (f"{event.get('table')} ({event.get('rows')} rows, {event.get('sealed_bytes')} sealed bytes) "
                f"to {event.get('to')}")
    if name == "table_received":
        return f"{event.get('party')}/{event.get('table')} ({event.get('rows')} rows)"
    if name in ("approved", "rejected"):
        return f"{event.get('decided_by', '')}: {event.get('reason', '')}"
    if name == "released_results":
        results = event.get("results") if isinstance(event.get("results"), list) else []
        # each [kind, recipient, ...] (later fields, such as the sealed size, are not shown here)
        return ", ".join(f"{r[0]} -> {r[1]}" for r in results if isinstance(r, list) and len(r) >= 2)
    return str(event.get("reason", "") or event.get("name", "") or "")


@dataclass
class AuditDigest:
    """Folds a node's audit entries incrementally (thread-safe)."""

    log: AuditLog
    last_seq: int = 0
    timelines: dict[str, list[TimelineStep]] = field(default_factory=dict)
    sightings: list[EnclaveSighting] = field(default_factory=list)
    sealed_bytes: int = 0
    sealed_rows: int = 0
    opened_bytes: int = 0
    opened_rows: int = 0
    decisions: Counter = field(default_factory=Counter)        # (decision, decided_by kind)
    verifications: Counter = field(default_factory=Counter)    # (result, reason)
    phase_seconds: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> "AuditDigest":
        with self._lock:
            while True:
                batch = self.log.entries(after=self.last_seq, limit=PAGE)
                for entry in batch:
                    self._fold(entry.seq, entry.at, entry.event)
                    self.last_seq = entry.seq
                if len(batch) < PAGE:
                    return self

    def _step(self, job_id: str, seq: int, at: str, phase: str, detail: str) -> None:
        steps = self.timelines.setdefault(job_id, [])
        if steps:
            # the time spent in the phase the previous step opened
            self.phase_seconds.setdefault(steps[-1].phase, []).append(
                max(0.0, parse_time(at) - parse_time(steps[-1].at)))
        steps.append(TimelineStep(seq, at, phase, detail))

    def _fold(self, seq: int, at: str, event: Mapping[str, Any]) -> None:
        name = str(event.get("event", ""))
        job_id = str(event.get("job_id", ""))
        if job_id and name == "released_table" and not any(
                s.phase == "attested" for s in self.timelines.get(job_id, ())):
            # the compute enclave's evidence verified for this job (the entry records it)
            self._step(job_id, seq, at, "attested", f"{event.get('to')}: {event.get('enclave_platform')}, "
                                                    f"measurement {str(event.get('enclave_measurement'))[:16]}…")
        if job_id and name in PHASES:
            self._step(job_id, seq, at, PHASES[name], _summary(event))
        if name in ("approved", "rejected"):
            by = str(event.get("decided_by", "policy"))
            self.decisions[(name[:-1] if name.endswith("d") else name, by.split(":", 1)[0])] += 1
        elif name == "released_table":
            self.sealed_bytes += _int(event.get("sealed_bytes"))
            self.sealed_rows += _int(event.get("rows"))
            self.verifications[("ok", "")] += 1
            self.sightings.append(EnclaveSighting(at, job_id, str(event.get("to", "")),
                                                  str(event.get("enclave_platform", "")),
                                                  str(event.get("enclave_measurement", "")),
                                                  dict(event.get("enclave_tcb") or {})
                                                  if isinstance(event.get("enclave_tcb"), dict) else {}, True, ""))
        elif name == "compute_refused":
            reason = str(event.get("reason", ""))
            self.verifications[("refused", reason.split(":", 1)[0][:80])] += 1
            self.sightings.append(EnclaveSighting(at, job_id, "", "", "", {}, False, reason))
        elif name == "table_received":
            self.opened_bytes += _int(event.get("sealed_bytes"))
            self.opened_rows += _int(event.get("rows"))
            self.verifications[("ok", "")] += 1
            self.sightings.append(EnclaveSighting(at, job_id, str(event.get("party", "")), "",
                                                  str(event.get("data_enclave", "")), {}, True, ""))
        elif name == "upload_refused" and "party" in event:  # the compute side's refusal
            reason = str(event.get("reason", ""))
            self.verifications[("refused", reason.split(":", 1)[0][:80])] += 1
            self.sightings.append(EnclaveSighting(at, job_id, str(event.get("party", "")), "", "", {}, False, reason))
