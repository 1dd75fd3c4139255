"""The `cluster:` section of a compute node's config (docs/deploy-cluster.md)."""

from __future__ import annotations

import pytest

from teenet.config import load_node_config
from teenet.errors import InputError

from config_sandbox import Sandbox
from test_config_loaders import edited


def test_single_process_is_the_default(sandbox: Sandbox) -> None:
    assert load_node_config(sandbox.root / "compute-1/node.yaml").cluster is None


def test_compute_node_may_lead_a_cluster(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "compute-1/node.yaml", "policy:",
                     "cluster: {workers: 2, admission_listen: 127.0.0.1:7310, allow_simulated: true}\npolicy:")
    cluster = load_node_config(path).cluster
    assert (cluster.workers, cluster.admission_listen, cluster.allow_simulated) == (2, "127.0.0.1:7310", True)
    assert cluster.worker_ttl == 30  # seconds of silence before a worker counts as lost


def test_the_worker_ttl_may_be_set(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "compute-1/node.yaml", "policy:",
                     "cluster: {workers: 2, admission_listen: 127.0.0.1:7310, worker_ttl: 8}\npolicy:")
    assert load_node_config(path).cluster.worker_ttl == 8


@pytest.mark.parametrize("section, field, message", [
    ("{workers: 0, admission_listen: 127.0.0.1:7310}", "cluster.workers", "an integer from 1 to 256"),
    ("{workers: 2}", "cluster.admission_listen", "missing required field 'admission_listen'"),
    ("{workers: 2, admission_listen: nowhere}", "cluster.admission_listen", "not an endpoint"),
    ("{workers: 2, admission_listen: 127.0.0.1:7310, dashboard: on}", "cluster.dashboard", "unknown field"),
    ("{workers: 2, admission_listen: 127.0.0.1:7310, worker_ttl: 1}", "cluster.worker_ttl", "from 2 to 3600"),
])
def test_bad_cluster_fields_are_named(sandbox: Sandbox, section: str, field: str, message: str) -> None:
    path, line = edited(sandbox, "compute-1/node.yaml", "policy:", f"cluster: {section}\npolicy:")
    with pytest.raises(InputError) as info:
        load_node_config(path)
    assert info.value.field == field and message in str(info.value) and info.value.line == line


def test_a_data_node_cannot_lead_a_cluster(sandbox: Sandbox) -> None:
    path, _ = edited(sandbox, "bank/node.yaml", "policy:",
                     "cluster: {workers: 2, admission_listen: 127.0.0.1:7310}\npolicy:")
    with pytest.raises(InputError, match="only a compute node can lead a cluster"):
        load_node_config(path)
