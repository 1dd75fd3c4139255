"""The compute-worker process: attest, get admitted by the leader, join its Dask scheduler.

    python -m teenet.cluster.worker --config compute-worker-2.yaml
    (also `teenet node serve --config compute-worker-2.yaml`)

The worker makes a fresh TLS key, binds it in its evidence, and joins only a leader whose
own evidence verifies against the measurement this worker runs. While the leader cannot be
reached (or says a worker of this name is still connected, as after a restart the
scheduler has not noticed yet) it tries again with backoff, logging each try; it exits 1,
with the refused check named, when admission is refused for a security reason (a
measurement, evidence, a certificate that is not the leader's CA).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import time
from typing import Callable

from teenet.attestation.evidence import Attester, TrustRoots
from teenet.cluster.admission import AdmissionRefused, AdmissionRetry, request_admission, verifier_policy
from teenet.cluster.ca import key_pem, new_key
from teenet.cluster.config import WorkerConfig, load_worker_config
from teenet.errors import InputError

log = logging.getLogger("teenet.cluster.worker")
FIRST_RETRY = 0.5   # seconds before the second try; doubled each time up to MAX_RETRY
MAX_RETRY = 15.0


def attester_and_roots(enclave, allow_simulated: bool) -> tuple[Attester, TrustRoots, bytes]:
    """This process's attester, the roots it verifies peers with, and its own measurement,
    from the same enclave runtime compute and data nodes use (node/enclave.py)."""
    from teenet.node.enclave import build_enclave

    if enclave.backend == "sim" and not allow_simulated:
        raise InputError("the sim backend needs 'allow_simulated: true'", field="allow_simulated")
    runtime = build_enclave(enclave.backend, enclave.sim_dir)
    if enclave.backend == "sim":
        log.warning("INSECURE: cluster attestation is SIMULATED (allow_simulated: true)")
    return runtime.attester, runtime.roots, bytes.fromhex(runtime.measurement)


def admit(config: WorkerConfig, key, attester: Attester, roots: TrustRoots, measurement: bytes, *,
          sleep: Callable[[float], None] = time.sleep, give_up_after: float | None = None) -> tuple[bytes, bytes, str]:
    """request_admission until admitted: tries again with backoff (FIRST_RETRY doubling to
    MAX_RETRY) while the leader is unreachable, the connection breaks, or the leader says
    retry; raises AdmissionRefused (not retried) when refused for a security reason, and
    AdmissionRetry once `give_up_after` seconds have passed (None: never)."""
    delay, tries, started = FIRST_RETRY, 0, time.monotonic()
    while True:
        tries += 1
        try:
            return request_admission(config.leader, config.node, key, attester, roots, verifier_policy(measurement))
        except AdmissionRetry as exc:
            why = str(exc)
        except (OSError, ssl.SSLError) as exc:  # the connection broke mid-exchange (leader restarting)
            why = f"the admission connection to {config.leader} broke ({type(exc).__name__})"
        if give_up_after is not None and time.monotonic() - started + delay > give_up_after:
            raise AdmissionRetry(f"{why}; gave up after {tries} tries")
        log.warning("worker '%s': admission to leader %s not possible yet (%s); try %d failed, retrying in %.1fs",
                    config.node, config.leader, why, tries, delay)
        sleep(delay)
        delay = min(delay * 2, MAX_RETRY)


def serve_worker(config: WorkerConfig) -> int:
    attester, roots, measurement = attester_and_roots(config.enclave, config.allow_simulated)
    # A fresh key per process: a restarted worker is admitted with new evidence over a new key.
    key = new_key()
    try:
        ca, cert, scheduler = admit(config, key, attester, roots, measurement)
    except AdmissionRefused as exc:
        print(f"{config.source}: admission to leader {config.leader} refused (not retried): {exc}", file=sys.stderr)
        return 1
    log.info("worker '%s' admitted by leader %s; joining scheduler %s", config.node, config.leader, scheduler)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from teenet.cluster import jobs
    from teenet.cluster.dask_tls import run_worker, security_for
    from teenet.cluster.upload import UploadService

    # The upload service presents this worker's cluster certificate (with its evidence);
    # until a job hands it the consortium CA it trusts only the cluster CA.
    upload = UploadService(cert, key_pem(key), ca, config.listen, config.upload_port).start()
    der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    jobs.set_context(jobs.WorkerContext(config.node, attester, roots, der, upload))
    security = security_for(ca, cert, key_pem(key))
    print(f"worker {config.node} admitted; scheduler {scheduler}; upload service {upload.endpoint}", flush=True)
    asyncio.run(run_worker(scheduler, security, config.node, host=config.listen))
    # The worker ends only when the scheduler closed it: the leader stopped, or dropped this
    # worker as lost (silent past its worker_ttl, e.g. frozen or cut off). The jobs' keys and
    # partitions were only in this process and end with it; a new process is admitted again.
    print(f"{config.source}: worker {config.node} was closed by the leader's scheduler (the leader stopped, "
          "or lost contact with this worker); its job keys and partitions end with this process; "
          "start it again to be admitted again", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teenet-cluster-worker")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_worker_config(args.config)
        return serve_worker(config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
