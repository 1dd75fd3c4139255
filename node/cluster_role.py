"""The leader side of a compute cluster (docs/deploy-cluster.md): started by the daemon when
the compute node's config has a `cluster:` section.

It makes the in-memory cluster CA, starts the Dask scheduler inside this process on
leader-issued TLS only, and opens the admission port where workers are verified against
this node's own measurement (with this node's attester and trust roots, so simulated
evidence verifies only where this node runs the sim backend). dask is imported only here.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("teenet.node.cluster")


class ClusterLeader:
    def __init__(self, rt: Any) -> None:
        from teenet.cluster.admission import AdmissionServer, verifier_policy
        from teenet.cluster.ca import ClusterCA
        from teenet.cluster.dask_tls import LeaderScheduler

        section = rt.config.cluster
        enclave = rt.enclave
        if enclave.backend == "sim" and not section.allow_simulated:
            from teenet.errors import InputError

            raise InputError("this compute node runs the sim backend; its cluster admits simulated workers only "
                             "with 'cluster.allow_simulated: true'", source=rt.config.source,
                             field="cluster.allow_simulated")
        host, _, port = section.admission_listen.rpartition(":")
        self.expected_workers = section.workers
        self.ca = ClusterCA(rt.config.node)
        self.scheduler = LeaderScheduler(self.ca, host=host)
        self.admission = AdmissionServer(self.ca, enclave.attester, enclave.roots,
                                         verifier_policy(bytes.fromhex(enclave.measurement)),
                                         lambda: self.scheduler.address, host=host, port=int(port),
                                         expected_workers=section.workers).start()
        log.info("cluster leader: scheduler %s, admission %s, expecting %d worker(s)",
                 self.scheduler.address, self.admission.address, section.workers)

    def ready(self) -> bool:
        return self.scheduler.worker_count() >= self.expected_workers

    def close(self) -> None:
        self.admission.close()
        self.scheduler.close()


def start_cluster(rt: Any) -> ClusterLeader | None:
    """The cluster this compute node leads, or None for a single-process node (the default)."""
    return ClusterLeader(rt) if getattr(rt.config, "cluster", None) is not None else None
