"""Gradient boosting with XGBoost (`model: xgboost`), on a single node and on a cluster.

Single node: the Pipeline of models/learning.py (SimpleImputer(median) for numbers, no
scaler, OneHotEncoder for categories) ending in `XGBClassifier` / `XGBRegressor` with
tree_method "hist". Classes are the label's sorted distinct values (XGBoost itself wants
0..K-1; `Classifier` encodes them and reports the labels as `classes_`).

Cluster: each worker puts its training rows through the leader-fitted preprocessing and
calls `xgboost.train` with the same parameters inside XGBoost's *federated* communicator:
every histogram allreduce and quantile-sketch merge goes over gRPC with mutual TLS to a
federated server the leader runs, whose certificate and trust anchor are the cluster's
(`FederatedTLS`), and each worker presents the certificate of its Dask TLS identity.
`xgboost.dask` is not used: its collective is XGBoost's Rabit tracker and TCP ring,
which have no TLS (xgboost 3.2: tracker.py and the C++ socket comm open plain sockets),
so its traffic would leave Dask's encrypted transport. Every worker ends with the same
booster (it is checked); its JSON is loaded into the same estimator class a single node
fits, so the release is identical in form. The quantile cut points come from a merged
sketch, so the cluster's trees are close to, not equal to, a single node's.

k: a leaf never holds fewer than k training rows. XGBoost has no row minimum, so
min_child_weight (a minimum hessian sum per child) is raised to k times the largest
hessian one row can have: 1 for squared error, 0.25 for the logistic loss, 0.5 for
softprob (XGBoost's 2p(1-p)). Depth and tree count are capped by the owners' rules and the
node bound is refused before the fit, as for the other tree models.

The model is released as ONNX by `onnx_models`'s XGBoost converter (trees read from the
booster's JSON, never pickled).
"""

from __future__ import annotations

import functools
import socket
import threading
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from teenet.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from teenet.models.cluster import FederatedTLS

# name -> (integer?, lowest allowed, lowest excluded?), as models/train.py reads them
HYPERPARAMETERS: Mapping[str, tuple[bool, float, bool]] = {
    "n_estimators": (True, 1, False), "learning_rate": (False, 0.0, True), "max_depth": (True, 1, False),
    "min_child_weight": (False, 0.0, False), "subsample": (False, 0.0, True),
    "colsample_bytree": (False, 0.0, True), "reg_lambda": (False, 0.0, False), "reg_alpha": (False, 0.0, False),
    "gamma": (False, 0.0, False), "max_bin": (True, 2, False),
}
AT_MOST = {"subsample": 1.0, "colsample_bytree": 1.0}
# teenet's defaults (XGBoost's own, with n_estimators 100 and max_depth 6 stated)
DEFAULTS: Mapping[str, float] = {"n_estimators": 100, "learning_rate": 0.3, "max_depth": 6, "min_child_weight": 1.0,
                                 "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0, "reg_alpha": 0.0,
                                 "gamma": 0.0, "max_bin": 256}
# the largest hessian of one row, per objective: min_child_weight = k x this keeps k rows a leaf
MAX_ROW_HESSIAN = {"regression": 1.0, "binary": 0.25, "multiclass": 0.5}


def check_hyperparameters(values: Mapping[str, Any], field: str) -> None:
    """Upper bounds models/train.py's reader does not know."""
    for name, high in AT_MOST.items():
        if name in values and values[name] > high:
            raise InputError(f"{name} is a share of rows or columns (expected a number in (0, 1], found "
                             f"{values[name]:g})", field=f"{field}.{name}")


def enforce_leaf_rows(hyperparameters: Mapping[str, Any], task: str, classes: int) -> dict[str, Any]:
    """The tree settings' min_samples_leaf (>= k) as XGBoost's min_child_weight."""
    out = dict(hyperparameters)
    rows = int(out.pop("min_samples_leaf", 1))
    kind = "regression" if task == "regression" else ("binary" if classes <= 2 else "multiclass")
    out["min_child_weight"] = max(float(out.get("min_child_weight", DEFAULTS["min_child_weight"])),
                                  rows * MAX_ROW_HESSIAN[kind])
    return out


def _xgb_params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    values = {**DEFAULTS, **{k: v for k, v in hyperparameters.items() if k in DEFAULTS}}
    values["n_estimators"] = int(values["n_estimators"])
    values["max_depth"] = int(values["max_depth"])
    values["max_bin"] = int(values["max_bin"])
    return values


def estimator(task: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """The unfitted XGBoost estimator of a single node's Pipeline."""
    cls = classifier_class() if task == "classification" else regressor_class()
    return cls(tree_method="hist", random_state=seed, **_xgb_params(hyperparameters))


_CLASSES: dict[str, type] = {}


def classifier_class() -> type:
    """XGBClassifier taking any sorted labels (encoded to 0..K-1 for XGBoost) and reporting them."""
    if "classifier" not in _CLASSES:
        from xgboost import XGBClassifier

        class Classifier(XGBClassifier):
            def fit(self, X: Any, y: Any, **kwargs: Any) -> Any:
                labels, codes = np.unique(np.asarray(y), return_inverse=True)
                self._teenet_classes = None
                super().fit(X, codes, **kwargs)
                self._teenet_classes = labels
                return self

            @property
            def classes_(self) -> np.ndarray:
                labels = getattr(self, "_teenet_classes", None)
                return np.arange(self.n_classes_) if labels is None else labels

        Classifier.__module__ = __name__
        Classifier.__qualname__ = "Classifier"
        _CLASSES["classifier"] = Classifier
    return _CLASSES["classifier"]


def regressor_class() -> type:
    if "regressor" not in _CLASSES:
        from xgboost import XGBRegressor

        class Regressor(XGBRegressor):
            pass

        Regressor.__module__ = __name__
        Regressor.__qualname__ = "Regressor"
        _CLASSES["regressor"] = Regressor
    return _CLASSES["regressor"]


def __getattr__(name: str) -> Any:  # pickle (inside a cluster only) finds the classes by name
    if name == "Classifier":
        return classifier_class()
    if name == "Regressor":
        return regressor_class()
    raise AttributeError(name)


# ---- on a cluster ------------------------------------------------------------------------


def require_federated_tls(federated_tls: "FederatedTLS | None") -> None:
    if federated_tls is None:
        raise InputError("xgboost on a compute cluster needs the federated communicator's TLS settings (its "
                         "allreduce must not run unencrypted); the compute node passes them", field="federated_tls")


def _booster_params(task: str, classes: int, hyperparameters: Mapping[str, Any], seed: int) -> tuple[dict, int]:
    """The xgboost.train parameters and rounds the single node's estimator uses."""
    values = _xgb_params(hyperparameters)
    params = {"tree_method": "hist", "seed": seed, "eta": values["learning_rate"], "max_depth": values["max_depth"],
              "min_child_weight": values["min_child_weight"], "subsample": values["subsample"],
              "colsample_bytree": values["colsample_bytree"], "lambda": values["reg_lambda"],
              "alpha": values["reg_alpha"], "gamma": values["gamma"], "max_bin": values["max_bin"]}
    if task == "regression":
        params["objective"] = "reg:squarederror"
    elif classes == 2:
        params["objective"] = "binary:logistic"
    else:
        params["objective"] = "multi:softprob"
        params["num_class"] = classes
    return params, values["n_estimators"]


def _worker_task(fn: Any) -> Any:
    """models/cluster.py's worker_task around a task of this module (imported when the task
    runs: cluster.py's own imports reach this module, so it cannot be imported at its top)."""
    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> Any:
        from teenet.models.cluster import worker_task

        return worker_task(fn)(*args, **kwargs)
    return task


@_worker_task
def _train_worker(part: Any, prepare: Any, classes: np.ndarray | None, params: Mapping[str, Any], rounds: int,
                  rank: int, world: int, address: str, ca_file: str, pems: tuple[bytes, bytes, bytes] = (b"", b"", b"")
                  ) -> bytes:
    """On a worker: its training rows through the preprocessing, then xgboost.train in the
    federated communicator (mutual TLS with this worker's Dask certificate)."""
    import xgboost
    from distributed import get_worker
    from xgboost import collective

    frame, label = part.rows("train")
    x = prepare.transform(frame) if len(label) else np.zeros((0, len(prepare.get_feature_names_out())))
    y = np.searchsorted(classes, label) if classes is not None else np.asarray(label, dtype=np.float64)
    security = get_worker().security
    cert_file, key_file = security.tls_worker_cert, security.tls_worker_key
    own: tuple[str, ...] = ()
    if all(pems):  # the leader's federated client certificate (see FederatedTLS), as memory-only files
        from teenet.cluster.dask_tls import private_files

        own = ca_file, cert_file, key_file = private_files({"ca.pem": pems[0], "cert.pem": pems[1],
                                                            "key.pem": pems[2]})
    args = {"dmlc_communicator": "federated", "federated_server_address": address, "federated_world_size": world,
            "federated_rank": rank, "federated_secure": True, "federated_server_cert_path": ca_file,
            "federated_client_key_path": key_file,
            "federated_client_cert_path": cert_file}
    if not (args["federated_client_key_path"] and args["federated_client_cert_path"]):
        raise InputError("this worker has no TLS certificate for the federated communicator", field="federated_tls")
    worker_params = {**params, "nthread": max(1, int(get_worker().state.nthreads))}  # this worker's threads
    try:
        with collective.CommunicatorContext(**args):
            booster = xgboost.train(worker_params, xgboost.QuantileDMatrix(np.asarray(x, dtype=np.float32), y),
                                    num_boost_round=rounds)
    finally:
        if own:  # the communicator is done with them
            from teenet.cluster.dask_tls import release

            release(own)
    return bytes(booster.save_raw("json"))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_federated_server(federated_tls: "FederatedTLS", world: int) -> tuple[str, Any]:
    """XGBoost's federated server for `world` workers, mutual TLS only: it presents the
    leader's certificate and accepts a client only with a certificate from the cluster CA.
    XGBoost binds it on every interface (it takes no bind address); the handshake, not the
    address, keeps other peers out. Returns the address workers dial, and the server."""
    from xgboost.federated import FederatedTracker

    require_federated_tls(federated_tls)
    port = _free_port(federated_tls.server_host)
    server = FederatedTracker(n_workers=world, port=port, secure=True, server_key_path=federated_tls.server_key_file,
                              server_cert_path=federated_tls.server_cert_file,
                              client_cert_path=federated_tls.ca_file, timeout=300)
    server.start()
    return f"{federated_tls.server_host}:{port}", server


def stop_federated_server(server: Any) -> None:
    threading.Thread(target=server.free, daemon=True).start()


def fit_on_cluster(cluster: Any, parts: Sequence[Any], pipeline: Any, task: str, classes: np.ndarray | None,
                   hyperparameters: Mapping[str, Any], seed: int, federated_tls: "FederatedTLS") -> None:
    """Train the booster across the workers and set it into the pipeline's estimator."""
    params, rounds = _booster_params(task, len(classes) if classes is not None else 1, hyperparameters, seed)
    world = len(parts)
    address, server = start_federated_server(federated_tls, world)
    prepare = pipeline.named_steps["prepare"]
    try:
        futures = [cluster.client.submit(_train_worker, part, prepare, classes, params, rounds, rank, world, address,
                                         federated_tls.ca_file, (federated_tls.ca_pem, federated_tls.client_cert_pem,
                                                                 federated_tls.client_key_pem),
                                         pure=False, **cluster.where(rank))
                   for rank, part in enumerate(parts)]
        models = cluster.client.gather(futures)
    finally:
        stop_federated_server(server)
    if any(m != models[0] for m in models[1:]):
        raise InputError("the workers' boosters differ (the federated allreduce did not keep them in step)",
                         field="params.model")
    est = pipeline.named_steps["model"]
    est.load_model(bytearray(models[0]))
    if task == "classification":
        est._teenet_classes = classes
