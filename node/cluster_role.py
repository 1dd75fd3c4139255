"""The leader side of a compute cluster (docs/deploy-cluster.md): started by the daemon when
the compute node's config has a `cluster:` section.

It makes the in-memory cluster CA, starts the Dask scheduler inside this process on
leader-issued TLS only, and opens the admission port where workers are verified against
this node's own measurement (with this node's attester and trust roots, so simulated
evidence verifies only where this node runs the sim backend). dask is imported only here.

Per job (hooks in node/compute_role.py): `open_job` asks every admitted worker, by a task
pinned to it, for its own per-job keys and evidence, makes the job's partition key, seals
it to every input owner and signs the cluster part of the offer; `watch` follows the
partitions arriving at the workers (the leader learns party, table, partition, rows and
fingerprint only; the rows stay on the workers) and fails the job when a worker leaves;
`run_job` runs models.cluster.run_function_on_cluster over the partitions where they are;
`drop_job` has every worker drop the job's partitions and keys, and audits it.

A worker counts as one of the cluster's only while the certificate it presents to the
scheduler is the one its name's latest admission issued (`workers`); a restarted worker is
admitted again under its old name once the scheduler has dropped the old one
(teenet.cluster.admission), and a job keeps the (name, address, certificate) of each of
its workers, so a job of the old one never goes on on the new one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from teenet.errors import TeenetError, VerificationError
from teenet.reasons import Reason

log = logging.getLogger("teenet.node.cluster")
OPEN_TIMEOUT = 60.0
DROP_TIMEOUT = 10.0
WATCH_INTERVAL = 0.25


def _wait(futures: list, timeout: float, *, first: bool = False) -> None:
    """distributed.wait, which raises TimeoutError when nothing is done in time; the caller
    reads each future's status instead."""
    from distributed import wait

    try:
        wait(futures, timeout=timeout, return_when="FIRST_COMPLETED" if first else "ALL_COMPLETED")
    except TimeoutError:
        pass


class ClusterFailed(TeenetError):
    """The job cannot go on on this cluster (a worker lost, a worker refusing); `reason` leaves."""

    def __init__(self, check: str, worker: str, detail: str) -> None:
        self.check = check
        self.reason = Reason("cluster.failed", check, field=worker)
        super().__init__(detail)


@dataclass
class ClusterJob:
    job_id: str
    workers: list[tuple[str, str]]          # (name, Dask address), in partition order
    offer: Any                               # teenet.negotiation.ClusterOffer, signed
    inputs: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]
    serials: tuple[int, ...] = ()            # per worker, its admission certificate's serial
    arrivals: dict[tuple[str, str], dict[int, tuple[int, bytes]]] = field(default_factory=dict)
    lost: str = ""
    closed: threading.Event = field(default_factory=threading.Event)

    def complete(self) -> bool:
        n = len(self.workers)
        return all(len(self.arrivals.get((p, t), {})) == n for p, t, _, _ in self.inputs)

    def fingerprints(self) -> dict[tuple[str, str], tuple[str, int]]:
        """Per input, the clustered fingerprint (RFC 9162 root over the partition roots in
        partition order, docs/format.md) and the rows over all partitions."""
        from teenet.cluster.partition import clustered_root

        out = {}
        for p, t, _, _ in self.inputs:
            parts = self.arrivals[(p, t)]
            out[(p, t)] = (clustered_root([parts[i][1] for i in range(len(self.workers))]).hex(),
                           sum(part[0] for part in parts.values()))
        return out

    def shipped(self, consortium) -> dict[tuple[str, str], dict]:
        """Per input, the owner's signed shipped record, verified against the clustered
        fingerprint; every partition must carry the same one (else `input.fingerprint`)."""
        from teenet.lineage import check_shipped_record
        from teenet.proto import teenet_pb2 as pb

        out = {}
        for (p, t), (root, _) in self.fingerprints().items():
            records = {part[2] for part in self.arrivals[(p, t)].values()}
            if len(records) != 1:
                raise VerificationError("input.fingerprint", f"the partitions of {p}/{t} carry different shipped "
                                        "records")
            record = check_shipped_record(pb.LineageFingerprint.FromString(records.pop()), consortium,
                                          job_id=self.job_id, party=p, table=t, root=bytes.fromhex(root))
            if record is not None:
                out[(p, t)] = record
        return out


class ClusterLeader:
    def __init__(self, rt: Any) -> None:
        from teenet.cluster.admission import AdmissionServer, admission_policy
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
        self.rt = rt
        self.expected_workers = section.workers
        self.ca = ClusterCA(rt.config.node)
        self.scheduler = LeaderScheduler(self.ca, host=host, worker_ttl=section.worker_ttl)
        self.admission = AdmissionServer(self.ca, enclave.attester, enclave.roots,
                                         admission_policy(bytes.fromhex(enclave.measurement), owner_policies(rt)),
                                         lambda: self.scheduler.address, host=host, port=int(port),
                                         expected_workers=section.workers, connected=self._name_connected).start()
        self._client: Any = None
        self._lock = threading.Lock()
        self._host = host
        self._federated: Any = None
        self.jobs: dict[str, ClusterJob] = {}
        log.info("cluster leader: scheduler %s, admission %s, expecting %d worker(s)",
                 self.scheduler.address, self.admission.address, section.workers)

    def ready(self) -> bool:
        return len(self.workers()) >= self.expected_workers

    def _name_connected(self, name: str) -> bool:
        """Whether a worker of this name is connected to the scheduler now (any certificate):
        admission refuses a second worker of the name (retry) while one is."""
        return any(n == name for n, _, _ in self.scheduler.connected())

    def federated_tls(self) -> Any:
        """Where XGBoost's federated server (boosting on this cluster) listens and its mutual
        TLS: a leader certificate from this cluster's in-memory CA, which also signs every
        admitted worker's certificate, so only admitted workers complete the handshake. Made
        once, as memory-only files (teenet.cluster.dask_tls.private_files), kept for the
        process lifetime."""
        with self._lock:
            if self._federated is None:
                from teenet.cluster.ca import cert_pem, key_pem, new_key
                from teenet.cluster.dask_tls import private_files
                from teenet.models.cluster import FederatedTLS

                key = new_key()
                cert = self.ca.issue("leader-federated", key.public_key(), hosts=(self._host,))
                ca_pem = cert_pem(self.ca.certificate)
                ca_file, cert_file, key_file = private_files({"ca.pem": ca_pem, "cert.pem": cert_pem(cert),
                                                               "key.pem": key_pem(key)})
                # The workers' client certificate for the communicator: from this CA, without
                # the RA-TLS evidence (too large for its gRPC handshake); it reaches only
                # admitted workers, inside the cluster's TLS, with the training task.
                client_key = new_key()
                client = self.ca.issue("cluster-federated-client", client_key.public_key())
                self._federated = FederatedTLS(self._host, ca_file, cert_file, key_file,
                                               client_cert_pem=cert_pem(client), client_key_pem=key_pem(client_key),
                                               ca_pem=ca_pem)
            return self._federated

    def close(self) -> None:
        for cj in list(self.jobs.values()):
            cj.closed.set()
        if self._client is not None:
            try:
                self._client.close(timeout=5)
            except Exception:  # closing at exit: nothing left to protect
                pass
        self.admission.close()
        self.scheduler.close()

    # ---- the cluster ----------------------------------------------------------------------
    def client(self) -> Any:
        from distributed import Client

        with self._lock:
            if self._client is None or self._client.status in ("closed", "closing"):
                self._client = Client(self.scheduler.address, security=self.scheduler.security, timeout=30,
                                      set_as_default=True)  # distributed.wait needs it
            return self._client

    def workers(self) -> list[tuple[str, str]]:
        """The admitted workers connected now, (name, address), by name: partition order."""
        return [(name, address) for name, address, _ in self._live()]

    def _live(self) -> list[tuple[str, str, int]]:
        """(name, address, certificate serial) of each connected worker whose TLS certificate
        is the one its name's latest admission issued, by name. A worker still presenting an
        earlier admission's certificate (one that was superseded while it was away) is closed:
        it is no longer that name's worker."""
        admitted = {name: a.certificate.serial_number for name, a in dict(self.admission.admitted).items()}
        live = []
        for name, address, serial in self.scheduler.connected():
            if serial is None:
                continue  # its stream is not up yet: not ready for tasks
            if admitted.get(name) == serial:
                live.append((name, address, serial))
                continue
            log.warning("cluster: worker '%s' at %s presents a certificate its name's latest admission did not "
                        "issue; closing it", name, address)
            try:
                self.scheduler.remove(address, "superseded")
            except Exception as exc:  # the scheduler drops it anyway when it goes
                log.warning("cluster: could not close worker '%s' (%s)", name, type(exc).__name__)
        return sorted(live)

    # ---- per job --------------------------------------------------------------------------
    def open_job(self, run: Any) -> ClusterJob:
        """Per-job keys on every worker, the partition key sealed to every input owner, and
        the cluster part of the offer signed with the leader's per-job key."""
        from teenet.cluster import jobs
        from teenet.cluster.partition import job_normalisation
        from teenet.negotiation import WorkerEntry, build_cluster_offer

        rt = self.rt
        spec = run.spec
        live = self._live()
        if len(live) < self.expected_workers:
            raise ClusterFailed("cluster.not_ready", "", f"{len(live)} of {self.expected_workers} workers are "
                                "connected")
        live = live[:self.expected_workers]
        workers = [(name, address) for name, address, _ in live]
        n = len(workers)
        partition_key = secrets.token_bytes(32)
        inputs = [(i.party, i.table, tuple(i.keys), tuple(dict.fromkeys(list(i.keys) + list(i.columns))))
                  for i in spec.inputs]
        norm = job_normalisation(spec.params)
        consortium_ca = rt.tls.read()[0]
        client = self.client()
        futures = [client.submit(jobs.open_job, run.job_id, index, n, partition_key, norm, inputs, rt.data_policy,
                                 consortium_ca, run.session.suite.value, workers=[address],
                                 allow_other_workers=False, pure=False)
                   for index, (_, address) in enumerate(workers)]
        _wait(futures, OPEN_TIMEOUT)
        entries = []
        for index, ((name, _), future) in enumerate(zip(workers, futures)):
            if future.status != "finished":
                client.cancel(futures)
                self._drop_on_workers(run.job_id, workers)
                raise ClusterFailed("cluster.worker_lost", name, f"worker {name} did not make its per-job keys")
            r = future.result()
            entries.append(WorkerEntry(r["name"], index, r["endpoint"], r["hpke_public_key"], r["signing_public_key"],
                                       r["evidence"], hashlib.sha256(r["certificate"]).digest(), r["certificate"]))
        owners = {p: rt.consortium.member(p).keys.hpke for p, _, _, _ in inputs}
        cluster = build_cluster_offer(run.session, rt.name, entries, partition_key, owners)
        del partition_key
        cj = ClusterJob(run.job_id, workers, cluster, inputs, serials=tuple(serial for _, _, serial in live))
        with self._lock:
            self.jobs[run.job_id] = cj
        rt.audit("cluster_job_opened", job_id=run.job_id, workers=[w for w, _ in workers], partitions=n)
        return cj

    def watch(self, cj: ClusterJob, on_complete: Callable[[], None], on_lost: Callable[[ClusterFailed], None]) -> None:
        """Follow the partitions arriving; `on_complete` once all have, `on_lost` if a worker
        leaves before the job ends (then, mid-run, the run's tasks are cut off too)."""
        threading.Thread(target=self._watch, args=(cj, on_complete, on_lost), daemon=True,
                         name=f"cluster-{cj.job_id[:8]}").start()

    def _watch(self, cj: ClusterJob, on_complete: Callable[[], None], on_lost: Callable[[ClusterFailed], None]) -> None:
        from teenet.cluster import jobs

        rt = self.rt
        client = self.client()
        waiting: dict[int, Any] = {}
        known = [0] * len(cj.workers)
        completed = False
        try:
            while not cj.closed.is_set():
                gone = self._gone(cj)
                if gone:
                    cj.lost = gone[0]
                    raise ClusterFailed("cluster.worker_lost", gone[0], f"worker {gone[0]} left the cluster "
                                        "mid-job; its partitions and keys are gone with it")
                if completed:
                    cj.closed.wait(WATCH_INTERVAL)
                    continue
                for index, (_, address) in enumerate(cj.workers):
                    if index not in waiting:
                        waiting[index] = client.submit(jobs.wait_arrivals, cj.job_id, known[index], 1.0,
                                                       workers=[address], allow_other_workers=False, pure=False)
                _wait(list(waiting.values()), WATCH_INTERVAL * 4, first=True)
                for index, future in list(waiting.items()):
                    if future.status == "pending":
                        continue
                    del waiting[index]
                    if future.status != "finished":
                        continue  # the presence check above names a lost worker
                    arrivals = future.result()
                    for a in arrivals[known[index]:]:
                        slot = cj.arrivals.setdefault((a["party"], a["table"]), {})
                        slot[index] = (int(a["rows"]), bytes.fromhex(a["root"]), a.get("shipped", b""))
                        # No row count per partition in the audit: every input owner holds the
                        # partition key, so another owner's count per partition would say which
                        # of its own keys that owner has (docs/threat-model.md). The lineage
                        # carries each input's total, rounded to k.
                        rt.audit("partition_received", job_id=cj.job_id, party=a["party"], table=a["table"],
                                 partition=index, worker=cj.workers[index][0])
                    known[index] = len(arrivals)
                if cj.complete():
                    completed = True
                    client.cancel(list(waiting.values()))
                    waiting.clear()
                    on_complete()
        except ClusterFailed as exc:
            if cj.closed.is_set():
                return
            log.warning("job %s: %s", cj.job_id[:16], exc)
            # Mid-run, the job's tasks wait on a partition that is gone: cut them off.
            self._reset_client()
            on_lost(exc)
        except Exception as exc:  # the cluster's own machinery failed: the job must not hang
            if not cj.closed.is_set():
                log.warning("job %s: cluster watch failed (%s)", cj.job_id[:16], type(exc).__name__)
                self._reset_client()
                on_lost(ClusterFailed("cluster.worker_lost", "", f"the cluster failed ({type(exc).__name__})"))

    def _gone(self, cj: ClusterJob) -> list[str]:
        """The job's workers no longer in the cluster: not connected, or its name now held by
        another admission (a restarted worker is a new worker: it has none of the job)."""
        present = {(name, addr, serial) for name, addr, serial in self._live()}
        serials = cj.serials or (None,) * len(cj.workers)
        return [name for (name, addr), serial in zip(cj.workers, serials)
                if not any(p[0] == name and p[1] == addr and (serial is None or p[2] == serial) for p in present)]

    def _reset_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close(timeout=5)
            except Exception:  # already broken: the point is that its calls end
                pass

    def run_job(self, run: Any, params: dict, requests: list, rules: Any) -> list:
        """models.cluster over the job's partitions, where they are; ClusterFailed if a worker
        is lost meanwhile."""
        from teenet.cluster import jobs
        from teenet.models.cluster import ClusterPartyInput, run_function_on_cluster

        cj = run.cluster
        client = self.client()
        futures = []
        try:
            inputs = []
            for party, table, _, _ in cj.inputs:
                spec = next(i for i in run.spec.inputs if i.party == party and i.table == table)
                parts = tuple(client.submit(jobs.partition_table, cj.job_id, party, table, workers=[address],
                                            allow_other_workers=False, pure=False) for _, address in cj.workers)
                futures.extend(parts)
                inputs.append(ClusterPartyInput(party, table, tuple(spec.keys), tuple(spec.columns), parts))
            return run_function_on_cluster(run.spec.function, inputs, params, requests, rules, client,
                                           federated_tls=self.federated_tls())
        except TeenetError:
            if cj.lost:
                raise self._lost(cj) from None
            raise
        except Exception as exc:
            if cj.lost or client.status != "running":
                raise self._lost(cj) from None
            raise exc
        finally:
            try:
                client.cancel(futures)
            except Exception:  # a closed client: the futures went with it
                pass

    def _lost(self, cj: ClusterJob) -> ClusterFailed:
        return ClusterFailed("cluster.worker_lost", cj.lost, f"worker {cj.lost or '?'} left the cluster mid-run")

    def drop_job(self, cj: ClusterJob) -> None:
        """Every worker drops the job's partitions and keys; the leader audits which did."""
        cj.closed.set()
        with self._lock:
            self.jobs.pop(cj.job_id, None)
        dropped, unreachable = self._drop_on_workers(cj.job_id, cj.workers)
        self.rt.audit("cluster_partitions_dropped", job_id=cj.job_id, workers=dropped, unreachable=unreachable)

    def _drop_on_workers(self, job_id: str, workers: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
        from teenet.cluster import jobs

        try:
            client = self.client()
            present = set(self.workers())
            live = [(name, addr) for name, addr in workers if (name, addr) in present]
            futures = {name: client.submit(jobs.drop_job, job_id, workers=[addr], allow_other_workers=False,
                                           pure=False) for name, addr in live}
            _wait(list(futures.values()), DROP_TIMEOUT)
        except Exception as exc:  # the scheduler itself is gone: nothing is reachable
            log.warning("job %s: could not reach the workers to drop it (%s)", job_id[:16], type(exc).__name__)
            return [], [name for name, _ in workers]
        dropped = [name for name, f in futures.items() if f.status == "finished"]
        return dropped, [name for name, _ in workers if name not in dropped]


def owner_policies(rt: Any) -> list[tuple[str, Any]]:
    """Every policy of the owners the leader can know, to admit a worker under (besides its
    own measurement): the consortium file's `attestation` section (the compute policy every
    member holds, the one recipients check a result's evidence with) and, when this node's
    config has one, its `policy.compute_attestation`. The consortium file publishes no
    per-member compute policy; a data owner's own `policy.compute_attestation` is in its own
    config only, and it applies it to every worker's per-job evidence in the offer."""
    policies: list[tuple[str, Any]] = [("consortium attestation policy", rt.consortium.result_policy())]
    own = rt.config.policy.compute_attestation if rt.config.policy is not None else None
    if own is not None:
        policies.append(("leader policy.compute_attestation", rt.compute_policy))
    return policies


def start_cluster(rt: Any) -> ClusterLeader | None:
    """The cluster this compute node leads, or None for a single-process node (the default)."""
    return ClusterLeader(rt) if getattr(rt.config, "cluster", None) is not None else None
