"""model: xgboost on a single node and on a 2-worker TLS cluster (XGBoost's federated
communicator over mutual TLS); the released ONNX scores as xgboost does."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import numpy as np
import pytest

from teenet.errors import InputError
from teenet.models import learning, run_function
from teenet.models.cluster import FederatedTLS, run_function_on_cluster
from teenet.models.features import onnx_feeds
from teenet.models.onnx_models import export_pipeline, load_model
from teenet.models.train import parse_params

from cluster_helpers import make_ca_files, scatter_inputs, tls_security
from test_cluster_train import BOTH, RULES, _tables

FEATURES = ["x1", "region", "x2", "x3"]
HYPER = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.2}


def _params(label="label", **extra):
    return {"model": "xgboost", "label": {"party": "bank", "column": label}, "features": FEATURES,
            "hyperparameters": dict(HYPER), **extra}


def _fitted(inputs, params):
    """The single node's pipeline for these params, fitted on every joined row."""
    parsed = parse_params(params, [i.spec for i in inputs], frozenset({"model"}))
    rows = learning.pooled_rows(inputs, parsed)
    task = learning.resolve_task(parsed, rows.label)
    label = rows.label if task == "classification" else rows.label.astype(float)
    pipeline = learning.build_pipeline("xgboost", task, rows.layout, {**HYPER, "min_child_weight": 2.5}, 0)
    pipeline.fit(rows.frame, label)
    learning.as_simple_imputers(pipeline)
    return pipeline, rows


@pytest.mark.parametrize("classes,label,task", [(2, "label", None), (3, "label", None),
                                                (2, "amount", "regression")])
def test_released_onnx_scores_equal_xgboosts_own_to_float32(classes, label, task):
    inputs = _tables(n=1500, classes=classes)
    pipeline, rows = _fitted(inputs, _params(label, **({"task": task} if task else {})))
    model = load_model(export_pipeline(pipeline, rows.layout, {"features": list(rows.layout.features)}))
    feeds = {model.input_names[f]: v for f, v in onnx_feeds(rows.frame, rows.layout).items()}
    out = dict(zip(model.outputs, model.session.run(None, feeds)))
    if task is None:
        expected = pipeline.predict_proba(rows.frame)
        got = out["probabilities"]
        # the same trees on the same float32 values: probabilities agree to float32 rounding
        assert np.abs(got - expected).max() <= 1e-6
        assert (out["label"].astype(str) == pipeline.classes_[expected.argmax(axis=1)].astype(str)).all()
    else:
        expected = pipeline.predict(rows.frame)
        got = out["variable"].ravel()
        # a float32 sum of one leaf per tree in another order: at most ~one float32 rounding per tree
        bound = 2 * HYPER["n_estimators"] * np.finfo(np.float32).eps * np.maximum(1.0, np.abs(expected))
        assert (np.abs(got - expected) <= bound).all()


def test_single_node_xgboost_release_and_leaf_rows():
    inputs = _tables(n=1500)
    model, metrics = run_function("train", inputs, _params(), BOTH, RULES)
    document = json.loads(metrics.payload)
    assert document["model"] == "xgboost" and document["auc"] > 0.85
    assert model.summary["classes"] == ["no", "yes"]
    # k = 10 rows a leaf: min_child_weight = 10 x 0.25, the largest logistic hessian of a row
    assert model.summary["enforced_hyperparameters"]["min_child_weight"] == 2.5
    assert model.media_type == "application/onnx" and load_model(model.payload).is_classifier


@pytest.mark.parametrize("hyper,field", [({"subsample": 1.5}, "params.hyperparameters.subsample"),
                                         ({"max_bin": 1}, "params.hyperparameters.max_bin"),
                                         ({"min_samples_leaf": 3}, "params.hyperparameters.min_samples_leaf")])
def test_hyperparameters_validated_naming_the_field(hyper, field):
    inputs = _tables(n=200)
    with pytest.raises(InputError) as caught:
        run_function("train", inputs, {**_params(), "hyperparameters": hyper}, BOTH, RULES)
    assert caught.value.field == field


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    from distributed import Client, LocalCluster

    files = make_ca_files(tmp_path_factory.mktemp("boost-ca"))
    security = tls_security(files)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tls://",
                           security=security, dashboard_address=None, host="127.0.0.1")
    client = Client(cluster, security=security)
    client.wait_for_workers(2, timeout=120)
    yield client, files
    client.close()
    cluster.close()


@pytest.mark.slow
def test_cluster_boosting_auc_within_0002_of_single_node(tls_cluster):
    client, files = tls_cluster
    federated = FederatedTLS("127.0.0.1", files["ca"], files["cert"], files["key"])
    inputs = _tables(n=3000, seed=2)
    single = run_function("train", inputs, _params(), BOTH, RULES)
    cluster = run_function_on_cluster("train", scatter_inputs(client, inputs), _params(), BOTH, RULES, client,
                                      federated_tls=federated)
    a, b = json.loads(single[1].payload), json.loads(cluster[1].payload)
    assert (b["rows"], b["train_rows"], b["test_rows"]) == (a["rows"], a["train_rows"], a["test_rows"])
    assert abs(a["auc"] - b["auc"]) <= 0.002
    assert cluster[0].summary["enforced_hyperparameters"] == single[0].summary["enforced_hyperparameters"]
    assert load_model(cluster[0].payload).is_classifier
    # without the federated TLS settings the cluster refuses (no unencrypted allreduce)
    with pytest.raises(InputError) as caught:
        run_function_on_cluster("train", scatter_inputs(client, inputs), _params(), BOTH, RULES, client)
    assert caught.value.field == "federated_tls"


def _first_bytes(address: str, ca: str, cert: str | None = None, key: str | None = None) -> bytes:
    """A TLS (h2) handshake with the server, the HTTP/2 preface, then what the server sends
    first: a SETTINGS frame once a client is accepted, nothing (or an error) otherwise."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    if cert:
        context.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(PREFACE)
                return tls.recv(64)
    except (ssl.SSLError, ConnectionError):
        return b""


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _wait_listening(address: str) -> None:
    host, port = address.rsplit(":", 1)
    for _ in range(200):  # the server starts listening on its own thread
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
            return
        except ConnectionRefusedError:
            threading.Event().wait(0.05)
    raise AssertionError("the federated server never listened")


@pytest.mark.slow
def test_federated_server_takes_only_cluster_certificates(tmp_path):
    from teenet.models.boosting import start_federated_server, stop_federated_server

    files = make_ca_files(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_ca_files(tmp_path / "other")
    address, server = start_federated_server(FederatedTLS("127.0.0.1", files["ca"], files["cert"], files["key"]), 2)
    try:
        _wait_listening(address)
        member = _first_bytes(address, files["ca"], files["cert"], files["key"])
        assert len(member) >= 9 and member[3] == 0x04  # an HTTP/2 SETTINGS frame: accepted
        assert _first_bytes(address, files["ca"]) == b""  # no client certificate: dropped
        assert _first_bytes(address, files["ca"], other["cert"], other["key"]) == b""  # another CA's
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as plain:  # no TLS at all
            plain.sendall(PREFACE)
            try:
                answer = plain.recv(64)
            except ConnectionError:
                answer = b""
        # closed, or a TLS alert record (0x15): never an HTTP/2 frame of the gRPC service
        assert answer == b"" or answer[0] == 0x15
    finally:
        stop_federated_server(server)
