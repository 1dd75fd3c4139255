"""predict: scores for the ids in every table, and models an enclave must not open."""

from __future__ import annotations

import numpy as np
import onnx
import pyarrow as pa
import pytest
from onnx import external_data_helper, helper

from teenet.errors import InputError
from teenet.models import PartyInput, ReleaseRequest, run_function
from teenet.models.payloads import read_arrow

from models_helpers import rules_for

RULES = rules_for({"model": {"bank"}, "scores": {"bank"}}, {"bank", "telco"}, k=3)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(4)
    n = 300
    x = rng.normal(size=(n, 2))
    bank = PartyInput("bank", "customers", ("customer",), ("x1", "y"),
                      pa.table({"customer": [f"c{i:04d}" for i in range(n)], "x1": x[:, 0],
                                "y": (x[:, 0] + x[:, 1] > 0).astype(int)}))
    telco = PartyInput("telco", "usage", ("cust",), ("x2",),
                       pa.table({"cust": [f"C{i:04d} " for i in range(n)][::-1], "x2": x[::-1, 1]}))
    norm = {"trim": True, "case": "lower"}
    (model,) = run_function("train", [bank, telco], {"model": "logistic_regression", "normalise": norm,
                                                      "label": {"party": "bank", "column": "y"}},
                            [ReleaseRequest("model", ("bank",))], RULES)
    return model.payload, bank, telco, norm


def _predict(inputs, model_bytes, **params):
    (out,) = run_function("predict", inputs, {"model_onnx": model_bytes, "ids_from": "bank", **params},
                          [ReleaseRequest("scores", ("bank",))], RULES)
    return out


def test_scores_cover_the_ids_in_every_table_with_the_owners_key_names(trained):
    model, bank, telco, norm = trained
    fewer = PartyInput("telco", "usage", telco.keys, telco.columns, telco.data.slice(0, 120))
    out = _predict([bank, fewer], model, normalise=norm)
    scores = read_arrow(out.payload)
    assert out.media_type == "application/vnd.apache.arrow.stream" and out.summary["owner"] == "bank"
    assert scores.column_names == ["customer", "score", "label"]
    expected = sorted(c.strip().lower() for c in fewer.data.column("cust").to_pylist())
    assert scores.column("customer").to_pylist() == expected
    probabilities = np.array(scores.column("score").to_pylist())
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_model_bytes_that_are_not_onnx_are_refused(trained):
    _, bank, telco, norm = trained
    with pytest.raises(InputError, match="not a valid ONNX model") as err:
        _predict([bank, telco], b"\x08\x07garbage", normalise=norm)
    assert err.value.field == "params.model_onnx"


def test_a_model_reading_tensors_from_outside_is_refused(trained):
    model_bytes, bank, telco, norm = trained
    model = onnx.load_model_from_string(model_bytes)
    tensor = helper.make_tensor("stolen", onnx.TensorProto.FLOAT, [1], np.zeros(1, np.float32).tobytes(), raw=True)
    external_data_helper.set_external_data(tensor, location="../../../etc/passwd")
    tensor.ClearField("raw_data")
    model.graph.initializer.append(tensor)
    with pytest.raises(InputError, match="tensors stored outside it"):
        _predict([bank, telco], model.SerializeToString(), normalise=norm)


def test_a_model_with_custom_operators_is_refused(trained):
    model_bytes, bank, telco, norm = trained
    model = onnx.load_model_from_string(model_bytes)
    model.graph.node.append(helper.make_node("Exfiltrate", [model.graph.output[0].name], ["leak"], domain="com.evil"))
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    with pytest.raises(InputError, match="operator domain\\(s\\) com.evil"):
        _predict([bank, telco], model.SerializeToString(), normalise=norm)


def test_a_model_needing_a_column_nobody_ships_is_refused(trained):
    model, bank, telco, norm = trained
    with pytest.raises(InputError, match="needs column\\(s\\) x2, which no input ships") as err:
        _predict([bank], model)
    assert err.value.field == "params.model"


def test_predict_params_are_checked(trained):
    model, bank, telco, _ = trained
    with pytest.raises(InputError) as err:
        _predict([bank, telco], model, ids_from="insurer")
    assert err.value.field == "params.ids_from"
    with pytest.raises(InputError) as err:
        run_function("predict", [bank, telco], {"ids_from": "bank"}, [ReleaseRequest("scores", ("bank",))], RULES)
    assert err.value.field == "params.model"


def test_scoring_fewer_than_k_ids_is_refused_and_scores_cover_only_the_recipients_rows(trained):
    from teenet.errors import ReleaseRefused

    model, bank, telco, norm = trained
    probe = PartyInput("telco", "usage", telco.keys, telco.columns, telco.data.slice(0, 2))
    with pytest.raises(ReleaseRefused, match=r"the set of scored rows has fewer ids than the owners' minimum group "
                                             r"size \(expected >= 3\)"):
        _predict([bank, probe], model, normalise=norm)
    # the bank receives scores only for keys it shipped itself (telco's other rows never appear)
    fewer_bank = PartyInput("bank", "customers", bank.keys, bank.columns, bank.data.slice(0, 50))
    scores = read_arrow(_predict([fewer_bank, telco], model, normalise=norm).payload)
    assert set(scores.column("customer").to_pylist()) == set(fewer_bank.data.column("customer").to_pylist())
