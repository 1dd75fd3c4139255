"""What crosses a cluster's internal network to the leader, and what a failed task carries.

The compute node's operator controls the network between the leader and the worker VMs
and sees TLS record lengths. So a job whose merged result is below k must move only
fixed-size counts to the leader before it is refused (never ids, scored rows or join keys),
a DP aggregate's partials must have the same size whatever a partition's number of groups,
and an exception leaving a worker (logged by Dask, kept by the scheduler, pickled to the
leader) must not carry its message or a traceback that quotes a cell value.

A real TLS Dask cluster in-process (cluster_helpers), 2 workers. Which tasks ran is read by
a scheduler plugin; what the leader gathered, by wrapping the client's own gather.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import traceback

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from teenet.errors import InputError, ReleaseRefused
from teenet.models import PartyInput, ReleaseRequest, run_function
from teenet.models.cluster import (ClusterPartyInput, WorkerTaskFailed, run_function_on_cluster,
                                   worker_task)

from cluster_helpers import scatter_inputs, tls_client, tls_security
from models_helpers import rules_for

SECRET = "cell-4242-SECRET"
PSI_RULES = rules_for({"size": {"bank", "telco"}, "ids": {"bank", "telco"}, "sums": {"bank"}},
                      {"bank", "telco"}, k=10)


@pytest.fixture(scope="module")
def ca_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gathers-ca")


@pytest.fixture(scope="module")
def client(ca_folder):
    yield from tls_client(ca_folder, 2)


class _Recorder:
    """The names of the tasks that ran (a scheduler plugin) and every value the leader gathered."""

    def __init__(self, client, monkeypatch) -> None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        ran = self.ran = []

        class Ran(SchedulerPlugin):
            name = "teenet-test-ran"

            def transition(self, key, start, finish, *args, **kwargs):
                if start == "processing" and finish in ("memory", "erred"):
                    ran.append(str(key).split("-", 1)[0])  # "<function>-<uuid>" (pure=False)

        self.scheduler = client.cluster.scheduler
        self.scheduler.add_plugin(Ran())
        self.gathered = []
        real = client.gather

        def gather(futures, *args, **kwargs):
            out = real(futures, *args, **kwargs)
            self.gathered.extend(out if isinstance(out, list) else [out])
            return out

        monkeypatch.setattr(client, "gather", gather)

    def close(self) -> None:
        self.scheduler.remove_plugin(name="teenet-test-ran")


@pytest.fixture
def recorder(client, monkeypatch):
    rec = _Recorder(client, monkeypatch)
    yield rec
    rec.close()


def _only_counts(values) -> None:
    """Every value is one int64: 8 bytes on the wire whatever the number."""
    assert values
    for v in values:
        assert isinstance(v, np.ndarray) and v.dtype == np.int64 and v.shape == (1,), type(v)


def _tables(n: int = 300, seed: int = 3) -> list[PartyInput]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n) * 7 + 1
    x = rng.normal(size=n)
    bank = pd.DataFrame({"id": ids, "x": x, "balance": rng.integers(0, 100, n),
                         "label": np.where(x + rng.normal(0, .5, n) > 0, "yes", "no")})
    telco = pd.DataFrame({"id": ids, "y": rng.normal(size=n)})
    return [PartyInput("bank", "customers", ("id",), ("x", "balance", "label"),
                       pa.Table.from_pandas(bank, preserve_index=False)),
            PartyInput("telco", "usage", ("id",), ("y",), pa.Table.from_pandas(telco, preserve_index=False))]


def _probe(bank: PartyInput, rows: int) -> PartyInput:
    ids = bank.data.column("id").to_numpy()[:rows]
    return PartyInput("telco", "probe", ("id",), (), pa.table({"id": pa.array(ids, pa.int64())}))


def test_psi_below_k_gathers_only_counts(client, recorder):
    bank = _tables()[0]
    requests = [ReleaseRequest("size", ("bank",)), ReleaseRequest("ids", ("bank",)), ReleaseRequest("sums", ("bank",))]
    params = {"payload": [{"party": "bank", "column": "balance"}]}
    with pytest.raises(ReleaseRefused, match="min_group_size"):
        run_function_on_cluster("psi", scatter_inputs(client, [bank, _probe(bank, 7)]), params, requests,
                                PSI_RULES, client)
    assert set(recorder.ran) == {"_psi_partition", "_count"} and recorder.ran.count("_count") == 2
    _only_counts(recorder.gathered)
    # The same job with 12 common ids passes k: only then do the ids and sums move.
    recorder.ran.clear()
    recorder.gathered.clear()
    run_function_on_cluster("psi", scatter_inputs(client, [bank, _probe(bank, 12)]), params, requests, PSI_RULES,
                            client)
    assert "_item" in recorder.ran and any(isinstance(v, pa.Table) for v in recorder.gathered)


def test_predict_below_k_gathers_only_counts(client, recorder):
    inputs = _tables()
    rules = rules_for({"model": {"bank"}, "scores": {"bank"}}, {"bank", "telco"}, k=10)
    (model,) = run_function("train", inputs, {"model": "logistic_regression", "features": ["x", "y"],
                                              "label": {"party": "bank", "column": "label"}},
                            [ReleaseRequest("model", ("bank",))], rules)
    few = PartyInput("telco", "usage", ("id",), ("y",), inputs[1].data.slice(0, 6))
    with pytest.raises(ReleaseRefused, match="min_group_size"):
        run_function_on_cluster("predict", scatter_inputs(client, [inputs[0], few]),
                                {"model_onnx": model.payload, "ids_from": "bank"},
                                [ReleaseRequest("scores", ("bank",))], rules, client)
    assert set(recorder.ran) == {"_predict_partition", "_count"}
    _only_counts(recorder.gathered)


def _no_rows(values) -> None:
    for v in values:
        assert not isinstance(v, (pa.Table, pd.DataFrame))
        if isinstance(v, dict):
            assert set(v) == {"rows", "dropped", "layout", "label_kind"}
            assert isinstance(v["rows"], np.int64) and isinstance(v["dropped"], np.int64)


@pytest.mark.parametrize("k,refusal", [(500, ReleaseRefused), (100, InputError)])
def test_train_refused_on_counts_moves_no_key(client, recorder, k, refusal):
    # 300 joined rows: below k = 500 (release.min_group_size), or too few to hold out and
    # train on k = 100 each (params.test_fraction): both refused from the counts alone.
    rules = rules_for({"model": {"bank"}}, {"bank", "telco"}, k=k)
    params = {"model": "logistic_regression", "features": ["x", "y"], "label": {"party": "bank", "column": "label"},
              "test_fraction": 0.25}
    with pytest.raises(refusal):
        run_function_on_cluster("train", scatter_inputs(client, _tables()), params,
                                [ReleaseRequest("model", ("bank",))], rules, client)
    assert set(recorder.ran) == {"_load", "_summary"}
    _no_rows(recorder.gathered)


def test_train_without_hold_out_never_gathers_keys(client, recorder):
    rules = rules_for({"model": {"bank"}}, {"bank", "telco"}, k=10)
    params = {"model": "linear_regression", "features": ["x"], "label": {"party": "telco", "column": "y"},
              "test_fraction": 0.0}
    run_function_on_cluster("train", scatter_inputs(client, _tables()), params, [ReleaseRequest("model", ("bank",))],
                            rules, client)
    assert "_summary" in recorder.ran and "_keys" not in recorder.ran
    # with a hold-out the keys do move, once the counts passed
    recorder.ran.clear()
    run_function_on_cluster("train", scatter_inputs(client, _tables()), {**params, "test_fraction": 0.25},
                            [ReleaseRequest("model", ("bank",))], rules, client)
    assert recorder.ran.count("_keys") == 2


@pytest.mark.parametrize("dp", [True, False])
def test_aggregate_partials_have_one_size_whatever_the_groups(client, recorder, dp):
    # Partition 0 holds one group; partition 1 holds 40 groups with long labels.
    workers = sorted(client.scheduler_info()["workers"])
    one = pd.DataFrame({"id": np.arange(60), "region": "n", "income": np.linspace(1, 9, 60)})
    many = pd.DataFrame({"id": np.arange(60, 120), "region": [f"region-with-a-long-name-{i % 40}" for i in range(60)],
                         "income": np.linspace(1, 9, 60)})
    parts = tuple(client.scatter(pa.Table.from_pandas(t, preserve_index=False), workers=[w], broadcast=False,
                                 hash=False) for t, w in zip((one, many), workers))
    inputs = [ClusterPartyInput("bank", "customers", ("id",), ("region", "income"), parts)]
    params = {"group_by": ["region"], "metrics": [{"column": "income", "stats": ["count", "sum"]}]}
    if dp:
        params["dp"] = {"epsilon": 1.0, "delta": 1e-6, "bounds": {"income": [0, 10]}}
    rules = rules_for({"aggregate": {"analyst"}}, {"bank"}, k=5)
    run_function_on_cluster("aggregate", inputs, params, [ReleaseRequest("aggregate", ("analyst",))], rules, client)
    lengths = [int(v[0]) for v in recorder.gathered if isinstance(v, np.ndarray)]
    padded = [v for v in recorder.gathered if isinstance(v, bytes)]
    assert len(lengths) == 2 and lengths[0] < lengths[1]  # the partials themselves differ...
    assert len(padded) == 2 and len(padded[0]) == len(padded[1])  # ...what crosses the network does not
    size = len(padded[0])
    assert size & (size - 1) == 0 and size >= lengths[1] + 8
    assert not any(isinstance(v, pd.DataFrame) for v in recorder.gathered)


@worker_task
def _quotes_a_cell(table: pa.Table) -> None:
    raise ValueError(f"could not read {table.column('id')[0].as_py()!r}")


@worker_task
def _refuses_quoting_a_cell(table: pa.Table) -> None:
    raise InputError(f"value {table.column('id')[0].as_py()!r} is not valid", field="inputs[0].keys")


def _unwrapped_quotes_a_cell(table: pa.Table) -> None:
    raise ValueError(f"could not read {table.column('id')[0].as_py()!r}")


def _secret_table() -> pa.Table:
    return pa.table({"id": [SECRET]})


def test_task_error_reaches_the_leader_without_the_cell(client):
    data = client.scatter(_secret_table(), broadcast=False, hash=False)
    future = client.submit(_quotes_a_cell, data, pure=False)
    with pytest.raises(WorkerTaskFailed) as caught:
        future.result()
    exc = caught.value
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert SECRET not in text and "ValueError" in str(exc)
    assert exc.__context__ is None and exc.__cause__ is None
    # the scheduler keeps the erred task's exception text and traceback too
    state = client.cluster.scheduler.tasks[future.key]
    assert SECRET not in (state.exception_text or "") + (state.traceback_text or "")
    assert SECRET.encode() not in pickle.dumps(exc)
    # a teenet refusal keeps its type and field (what Reason.of reads), never its words
    future = client.submit(_refuses_quoting_a_cell, data, pure=False)
    with pytest.raises(InputError) as refused:
        future.result()
    assert refused.value.field == "inputs[0].keys" and SECRET not in str(refused.value)
    assert "input.value" in str(refused.value)


def test_worker_log_keeps_no_task_error_text(client, ca_folder):
    """A worker started as teenet starts one (run_worker) logs no failed task's text, even for a
    task that is not wrapped."""
    import copy

    import dask

    from teenet.cluster.dask_tls import run_worker

    config = copy.deepcopy(dask.config.config)  # run_worker hardens Dask's (global) config
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("distributed")
    worker_logger = logging.getLogger("distributed.worker")
    filters = list(worker_logger.filters)
    root.addHandler(handler)
    security = tls_security({"ca": str(ca_folder / "ca.pem"), "cert": str(ca_folder / "member.pem"),
                             "key": str(ca_folder / "member.key")})
    before = set(client.scheduler_info()["workers"])
    address = None
    thread = threading.Thread(target=asyncio.run, args=(run_worker(client.scheduler.address, security, "log-check"),),
                              daemon=True)
    thread.start()
    try:
        client.wait_for_workers(len(before) + 1, timeout=30)
        (address,) = set(client.scheduler_info()["workers"]) - before
        data = client.scatter(_secret_table(), workers=[address], broadcast=False, hash=False)
        for task in (_unwrapped_quotes_a_cell, _quotes_a_cell):
            future = client.submit(task, data, workers=[address], allow_other_workers=False, pure=False)
            with pytest.raises(Exception):
                future.result()
        assert not any(SECRET in r for r in records)
    finally:
        root.removeHandler(handler)
        worker_logger.filters[:] = filters
        if address is not None:
            client.retire_workers(workers=[address], close_workers=True)
        thread.join(timeout=20)
        dask.config.config.clear()
        dask.config.config.update(config)
