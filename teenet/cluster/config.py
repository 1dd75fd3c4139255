"""A compute-worker's config file, and the `cluster` section of a leader's config.

    node: compute-worker-2
    role: compute-worker
    leader: 127.0.0.1:7300        # the leader's cluster admission endpoint
    listen: 127.0.0.1             # the host this worker's Dask worker listens on
    enclave: {backend: sim, sim_dir: ../sim-platform}
    allow_simulated: true         # only then does simulated evidence verify (logged loudly)

    # in the leader's (compute node's) config:
    cluster: {workers: 2, admission_listen: 127.0.0.1:7300, allow_simulated: true, worker_ttl: 30}

`worker_ttl` (seconds, default 30) is how long the leader's scheduler waits for a silent
worker's heartbeat before it counts the worker as lost (a frozen or network-partitioned
worker then fails its jobs with `cluster.worker_lost`, as a killed one does at once).

Errors name the file, line and field (teenet.yamlload).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from teenet.config import ENCLAVE_BACKENDS, EnclaveConfig, endpoint, resolve_path
from teenet.errors import InputError
from teenet.yamlload import Located, load_yaml

WORKER_ROLE = "compute-worker"
MAX_WORKERS = 256
DEFAULT_WORKER_TTL = 30  # seconds without a heartbeat before the scheduler drops a worker
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")


@dataclass(frozen=True)
class WorkerConfig:
    node: str
    leader: str
    listen: str
    enclave: EnclaveConfig
    allow_simulated: bool
    source: str
    upload_port: int = 0  # the upload service's port on `listen` (0: any free port)


@dataclass(frozen=True)
class ClusterSection:
    workers: int
    admission_listen: str
    allow_simulated: bool
    worker_ttl: int = DEFAULT_WORKER_TTL


def _enclave(node: Located, base: Path) -> EnclaveConfig:
    f = node.mapping(required=("backend",), optional=("sim_dir",), what="a mapping {backend, sim_dir}")
    backend = f["backend"].string(choices=ENCLAVE_BACKENDS)
    if backend == "sim" and "sim_dir" not in f:
        raise node.child("sim_dir", None).error("missing required field 'sim_dir' (the sim backend needs it)")
    return EnclaveConfig(backend=backend, sim_dir=resolve_path(f["sim_dir"], base) if "sim_dir" in f else None)


def load_worker_config(path: str | Path) -> WorkerConfig:
    path = Path(path)
    root = load_yaml(path).root()
    f = root.mapping(required=("node", "role", "leader", "listen", "enclave"), optional=("allow_simulated", "upload_port"),
                     what="a compute-worker config mapping")
    role = f["role"].string(choices=(WORKER_ROLE,))
    assert role == WORKER_ROLE
    node = f["node"].string(pattern=WORKER_NAME, what="a worker name (letters, digits, '-', '_'; at most 64)")
    leader = endpoint(f["leader"])
    listen = f["listen"].string(pattern=_HOST, what="a host name or IP address to listen on")
    enclave = _enclave(f["enclave"], path.parent)
    allow_sim = f["allow_simulated"].boolean() if "allow_simulated" in f else False
    if enclave.backend == "sim" and not allow_sim:
        raise f["enclave"].child("backend", "sim").error(
            "the sim backend is simulated attestation; set 'allow_simulated: true' to use it (never in production)")
    upload_port = f["upload_port"].integer(minimum=0, maximum=65535) if "upload_port" in f else 0
    return WorkerConfig(node=node, leader=leader, listen=listen, enclave=enclave, allow_simulated=allow_sim,
                        source=str(path), upload_port=upload_port)


def cluster_section(node: Located) -> ClusterSection:
    f = node.mapping(required=("workers", "admission_listen"), optional=("allow_simulated", "worker_ttl"),
                     what="a mapping {workers, admission_listen, allow_simulated, worker_ttl}")
    return ClusterSection(workers=f["workers"].integer(minimum=1, maximum=MAX_WORKERS),
                          admission_listen=endpoint(f["admission_listen"]),
                          allow_simulated=f["allow_simulated"].boolean() if "allow_simulated" in f else False,
                          worker_ttl=(f["worker_ttl"].integer(minimum=2, maximum=3600) if "worker_ttl" in f
                                      else DEFAULT_WORKER_TTL))


def is_worker_config(path: str | Path) -> bool:
    """True when the file's `role` is compute-worker (for `teenet node serve` to dispatch)."""
    try:
        value = load_yaml(Path(path)).root().value
    except InputError:
        return False
    return isinstance(value, dict) and value.get("role") == WORKER_ROLE
