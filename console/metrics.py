"""Prometheus metrics, derived at scrape time from the process's own durable records.

Nothing is counted in the roles' code: a scrape folds the audit chain's new entries
(console.records) and reads the store, so the metrics cannot drift from what the node
logged, and they survive a restart. Decides the metric names and labels; does not decide
who may scrape (console.auth: a session or the operator token as a bearer token).

    teenet_jobs{state}                          jobs this process knows, by its state
    teenet_phase_seconds{phase}                 histogram: time from one timeline step to the next
    teenet_sealed_bytes_total / _rows_total     sealed table bytes and rows this data node shipped
    teenet_opened_bytes_total / _rows_total     sealed bytes and rows this compute enclave opened
    teenet_attestation_verifications_total{result, reason}
    teenet_approvals_total{decision, decided_by}
    teenet_budget_left{table}                   privacy budget left (when the store keeps a ledger)
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from teenet.console.records import AuditDigest

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)


def _histogram(name: str, doc: str, samples: Mapping[str, list[float]]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=["phase"])
    for phase, values in sorted(samples.items()):
        cumulative, buckets = 0, []
        ordered = sorted(values)
        i = 0
        for bound in BUCKETS:
            while i < len(ordered) and ordered[i] <= bound:
                i += 1
            cumulative = i
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", len(ordered)))
        h.add_metric([phase], buckets, sum(ordered))
    return h


class RecordsCollector:
    """One collector per console: `job_states()` gives state -> count; the digest gives the rest."""

    def __init__(self, job_states: Callable[[], Mapping[str, int]], digest: AuditDigest | None,
                 budgets: Callable[[], Mapping[str, float] | None] = lambda: None,
                 phases: Callable[[], Mapping[str, list[float]]] | None = None) -> None:
        self._job_states = job_states
        self._digest = digest
        self._budgets = budgets
        self._phases = phases

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("teenet_jobs", "Jobs this process knows, by state", labels=["state"])
        for state, count in sorted(self._job_states().items()):
            jobs.add_metric([state], count)
        yield jobs
        d = self._digest.refresh() if self._digest is not None else None
        phases = self._phases() if self._phases is not None else (d.phase_seconds if d else {})
        yield _histogram("teenet_phase_seconds", "Seconds from one step of a job's timeline to the next", phases)
        if d is None:
            return
        for name, doc, value in (
                ("teenet_sealed_bytes", "Sealed table bytes this node shipped", d.sealed_bytes),
                ("teenet_sealed_rows", "Table rows this node sealed and shipped", d.sealed_rows),
                ("teenet_opened_bytes", "Sealed bytes this enclave opened", d.opened_bytes),
                ("teenet_opened_rows", "Rows this enclave opened", d.opened_rows)):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            yield c
        v = CounterMetricFamily("teenet_attestation_verifications", "Peer evidence verifications",
                                labels=["result", "reason"])
        for (result, reason), n in sorted(d.verifications.items()):
            v.add_metric([result, reason], n)
        yield v
        a = CounterMetricFamily("teenet_approvals", "Decisions on jobs", labels=["decision", "decided_by"])
        for (decision, by), n in sorted(d.decisions.items()):
            a.add_metric([decision, by], n)
        yield a
        budgets = self._budgets()
        if budgets is not None:
            b = GaugeMetricFamily("teenet_budget_left", "Privacy budget (epsilon) left per table", labels=["table"])
            for table, left in sorted(budgets.items()):
                b.add_metric([table], left)
            yield b


def registry_for(collector: RecordsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return registry


def count_states(states: Iterable[str]) -> dict[str, int]:
    return dict(Counter(states))
