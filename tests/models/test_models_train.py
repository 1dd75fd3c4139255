"""train: joint models equal scikit-learn on the pooled plaintext; ONNX scores equal the model's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from teenet.errors import InputError, ReleaseRefused
from teenet.models import PartyInput, ReleaseRequest, run_function
from teenet.models.payloads import read_arrow

from models_helpers import rule, rules_for, split_horizontally, split_vertically

RULES = rules_for({"model": {"bank", "analyst"}, "metrics": {"bank", "analyst"}, "scores": {"bank"}},
                  {"bank", "telco", "insurer"}, k=5)
BOTH = [ReleaseRequest("model", ("analyst",)), ReleaseRequest("metrics", ("analyst",))]


def reference_pipeline(estimator, numeric, categorical=(), scale=True):
    """The preprocessing `train` documents, built here independently from scikit-learn."""
    steps = [("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else [])
    parts = [("numeric", Pipeline(steps), list(numeric))]
    if categorical:
        parts.append(("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(categorical)))
    return Pipeline([("prepare", ColumnTransformer(parts, sparse_threshold=0.0)), ("model", estimator)])


def _train(inputs, params):
    model, metrics = run_function("train", inputs, params, BOTH, RULES)
    return model, json.loads(metrics.payload)


def _reference_split(pooled, features, label, seed, fraction=0.25):
    return train_test_split(pooled[features], pooled[label].to_numpy(), test_size=fraction, random_state=seed,
                            shuffle=True)


def _named(entries):
    """The summary's [{feature, value}, ...] (in feature order) as a mapping."""
    return {e["feature"]: e["value"] for e in entries}


def _coefficients(summary, features, prefix="numeric__"):
    return np.array([_named(summary["coefficients"])[prefix + f] for f in features])


def _scores(model_bytes, inputs, keep_ids):
    """Score through `predict`, restricted to the given ids, sorted by id."""
    restricted = [PartyInput(i.party, i.table, i.keys, i.columns,
                             i.data.filter(pa.compute.is_in(i.data.column("id"), value_set=pa.array(keep_ids))))
                  for i in inputs]
    (out,) = run_function("predict", restricted, {"model_onnx": model_bytes, "ids_from": "bank"},
                          [ReleaseRequest("scores", ("bank",))], RULES)
    return read_arrow(out.payload).to_pandas()


@pytest.mark.parametrize("parties", [["bank", "telco"], ["bank", "telco", "insurer"]])
def test_vertical_logistic_regression_equals_pooled_plaintext(breast_cancer, parties):
    split = split_vertically(breast_cancer, "target", parties, seed=len(parties))
    model, metrics = _train(split.inputs, {"model": "logistic_regression", "seed": 4,
                                           "label": {"party": "bank", "column": "target"}})
    x_train, x_test, y_train, y_test = _reference_split(split.pooled, split.features, "target", seed=4)
    reference = reference_pipeline(LogisticRegression(max_iter=1000), split.features).fit(x_train, y_train)
    estimator = reference.named_steps["model"]
    np.testing.assert_allclose(_coefficients(model.summary, split.features), estimator.coef_[0], rtol=1e-6)
    assert model.summary["intercept"] == pytest.approx(estimator.intercept_[0], rel=1e-6)
    proba = reference.predict_proba(x_test)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_test, reference.predict(x_test)), abs=1e-12)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y_test, proba[:, 1]), abs=1e-9)
    assert metrics["log_loss"] == pytest.approx(log_loss(y_test, proba), rel=1e-6)
    assert (metrics["rows"], metrics["test_rows"]) == (len(split.pooled), len(y_test))
    assert len(split.pooled) < len(breast_cancer)  # the ids only partly overlap

    # The released ONNX model gives the in-enclave model's scores on the held-out rows.
    scores = _scores(model.payload, split.inputs, pa.array(split.pooled.loc[x_test.index, "id"].to_numpy()))
    order = np.argsort(split.pooled.loc[x_test.index, "id"].to_numpy())
    assert scores["id"].tolist() == sorted(split.pooled.loc[x_test.index, "id"])
    np.testing.assert_allclose(scores["score"].to_numpy(), proba[order, 1], atol=1e-5)  # float32 in ONNX
    assert (scores["label"].to_numpy() == reference.predict(x_test)[order]).mean() > 0.99


@pytest.mark.parametrize("model,estimator", [("linear_regression", LinearRegression()), ("ridge", Ridge(alpha=1.0))])
def test_vertical_linear_models_equal_pooled_plaintext(diabetes, model, estimator):
    split = split_vertically(diabetes, "target", ["bank", "telco", "insurer"], seed=9, keep=0.85)
    released, metrics = _train(split.inputs, {"model": model, "label": {"party": "bank", "column": "target"},
                                              "seed": 2, "test_fraction": 0.3})
    x_train, x_test, y_train, y_test = _reference_split(split.pooled, split.features, "target", 2, 0.3)
    reference = reference_pipeline(estimator, split.features).fit(x_train, y_train)
    np.testing.assert_allclose(_coefficients(released.summary, split.features), reference.named_steps["model"].coef_,
                               rtol=1e-6)
    predicted = reference.predict(x_test)
    assert metrics["r2"] == pytest.approx(r2_score(y_test, predicted), rel=1e-9)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y_test, predicted), rel=1e-9)
    scores = _scores(released.payload, split.inputs, pa.array(split.pooled.loc[x_test.index, "id"].to_numpy()))
    order = np.argsort(split.pooled.loc[x_test.index, "id"].to_numpy())
    np.testing.assert_allclose(scores["score"].to_numpy(), predicted[order], rtol=1e-5)


def test_horizontal_logistic_regression_equals_pooled_plaintext(breast_cancer):
    inputs, pooled = split_horizontally(breast_cancer, ["bank", "telco", "insurer"], seed=1)
    features = [c for c in breast_cancer.columns if c != "target"]
    model, metrics = _train(inputs, {"layout": "horizontal", "model": "logistic_regression", "seed": 7,
                                     "label": {"column": "target"}, "hyperparameters": {"C": 0.5}})
    x_train, x_test, y_train, y_test = _reference_split(pooled, features, "target", 7)
    reference = reference_pipeline(LogisticRegression(C=0.5, max_iter=1000), features).fit(x_train, y_train)
    np.testing.assert_allclose(_coefficients(model.summary, features), reference.named_steps["model"].coef_[0],
                               rtol=1e-6)
    assert metrics["log_loss"] == pytest.approx(log_loss(y_test, reference.predict_proba(x_test)), rel=1e-6)


def test_gradient_boosting_predicts_identically_at_the_same_seed(breast_cancer):
    split = split_vertically(breast_cancer, "target", ["bank", "telco"], seed=3)
    model, metrics = _train(split.inputs, {"model": "hist_gradient_boosting", "seed": 5,
                                           "label": {"party": "bank", "column": "target"}})
    x_train, x_test, y_train, y_test = _reference_split(split.pooled, split.features, "target", 5)
    reference = reference_pipeline(HistGradientBoostingClassifier(random_state=5), split.features, scale=False).fit(x_train, y_train)
    proba = reference.predict_proba(x_test)
    assert metrics["accuracy"] == accuracy_score(y_test, reference.predict(x_test))
    assert metrics["log_loss"] == pytest.approx(log_loss(y_test, proba), rel=1e-12)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y_test, proba[:, 1]), rel=1e-12)
    assert model.summary["importance_method"].startswith("permutation on the first ")
    assert [e["feature"] for e in model.summary["feature_importances"]] == split.features
    scores = _scores(model.payload, split.inputs, pa.array(split.pooled.loc[x_test.index, "id"].to_numpy()))
    order = np.argsort(split.pooled.loc[x_test.index, "id"].to_numpy())
    # 100 trees' raw scores summed in float32 before the logistic: a little over 1e-5 at worst
    np.testing.assert_allclose(scores["score"].to_numpy(), proba[order, 1], atol=3e-5)


def test_random_forest_regressor_predicts_identically_at_the_same_seed(diabetes):
    split = split_vertically(diabetes, "target", ["bank", "telco"], seed=8)
    model, metrics = _train(split.inputs, {"model": "random_forest", "seed": 6, "hyperparameters": {"n_estimators": 30},
                                           "label": {"party": "bank", "column": "target"}})
    assert model.summary["task"] == "regression"  # inferred from the floating-point label
    x_train, x_test, y_train, y_test = _reference_split(split.pooled, split.features, "target", 6)
    # leaves of at least k = 5 rows, as the enclave enforces whatever the spec says
    reference = reference_pipeline(RandomForestRegressor(n_estimators=30, min_samples_leaf=5, random_state=6),
                                   split.features, scale=False).fit(x_train, y_train)
    assert metrics["r2"] == r2_score(y_test, reference.predict(x_test))
    assert model.summary["enforced_hyperparameters"] == {"min_samples_leaf": 5, "n_estimators": 30}
    importances = [_named(model.summary["feature_importances"])["numeric__" + f] for f in split.features]
    assert importances == reference.named_steps["model"].feature_importances_.tolist()
    scores = _scores(model.payload, split.inputs, pa.array(split.pooled.loc[x_test.index, "id"].to_numpy()))
    order = np.argsort(split.pooled.loc[x_test.index, "id"].to_numpy())
    np.testing.assert_allclose(scores["score"].to_numpy(), reference.predict(x_test)[order], rtol=1e-5)


@pytest.fixture(scope="module")
def mixed():
    """Numeric and string features with missing values, split across two parties."""
    rng = np.random.default_rng(21)
    n = 1200
    frame = pd.DataFrame({"id": np.arange(n), "age": rng.integers(18, 90, n).astype(float),
                          "segment": rng.choice(["retail", "sme", "corp"], n), "plan": rng.choice(["a", "b", "c"], n),
                          "spend": rng.gamma(2.0, 20.0, n)})
    logit = 0.04 * (frame.age - 50) + (frame.segment == "sme") * 1.2 - 0.02 * frame.spend + (frame.plan == "c")
    frame["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.loc[rng.choice(n, 60, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, 60, replace=False), "segment"] = None
    bank = PartyInput("bank", "customers", ("id",), ("age", "segment", "churn"),
                      pa.Table.from_pandas(frame[["id", "age", "segment", "churn"]].sample(frac=1, random_state=1),
                                           preserve_index=False))
    telco = PartyInput("telco", "usage", ("id",), ("plan", "spend"),
                       pa.Table.from_pandas(frame[["id", "plan", "spend"]].sample(frac=1, random_state=2),
                                            preserve_index=False))
    return frame, [bank, telco]


def test_categoricals_and_missing_values_match_reference_and_onnx(mixed):
    frame, inputs = mixed
    model, metrics = _train(inputs, {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"},
                                     "test_fraction": 0.5})
    assert model.summary["categorical"] == ["segment", "plan"]
    pooled = frame.assign(segment=frame.segment.fillna(""))
    features = ["age", "segment", "plan", "spend"]
    x_train, x_test, y_train, y_test = _reference_split(pooled, features, "churn", 0, 0.5)
    reference = reference_pipeline(LogisticRegression(max_iter=1000), ["age", "spend"],
                                   ["segment", "plan"]).fit(x_train, y_train)
    names = reference.named_steps["prepare"].get_feature_names_out()
    assert [e["feature"] for e in model.summary["coefficients"]] == list(names)  # feature order, not alphabetical
    np.testing.assert_allclose([_named(model.summary["coefficients"])[n] for n in names],
                               reference.named_steps["model"].coef_[0], rtol=1e-6)
    assert "categorical__segment_" in names  # missing is its own category
    scores = _scores(model.payload, inputs, pa.array(np.sort(pooled.loc[x_test.index, "id"].to_numpy())))
    np.testing.assert_allclose(scores["score"].to_numpy(),
                               reference.predict_proba(x_test.sort_index())[:, 1], atol=1e-5)
    assert len(metrics["roc"]["fpr"]) <= 200 and metrics["roc"]["fpr"][0] == 0.0 and metrics["roc"]["tpr"][-1] == 1.0
    assert set(metrics) >= {"auc", "accuracy", "log_loss", "f1", "roc", "classes"}


def test_roc_curve_is_decimated_to_200_points():
    rng = np.random.default_rng(2)
    n = 6000
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(int)
    table = pa.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})
    inp = PartyInput("bank", "t", ("id",), ("a", "b", "c", "y"), table)
    _, metrics = _train([inp], {"model": "logistic_regression", "label": {"party": "bank", "column": "y"}})
    roc = metrics["roc"]
    assert 100 < len(roc["fpr"]) <= 200 and len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert roc["thresholds"][0] is None  # scikit-learn's +inf first threshold, as JSON null
    assert roc["fpr"] == sorted(roc["fpr"]) and (roc["fpr"][0], roc["fpr"][-1]) == (0.0, 1.0)


def test_multiclass_scores_have_one_column_per_class():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_").strip("()_"))
    frame.insert(0, "id", np.arange(len(frame)))
    inp = PartyInput("bank", "t", ("id",), tuple(c for c in frame.columns if c != "id"),
                     pa.Table.from_pandas(frame, preserve_index=False))
    model, metrics = _train([inp], {"model": "random_forest", "label": {"party": "bank", "column": "target"},
                                    "hyperparameters": {"n_estimators": 10}})
    assert metrics["classes"] == [0, 1, 2] and "roc" not in metrics
    scores = _scores(model.payload, [inp], pa.array(np.arange(150)))
    assert scores.columns.tolist() == ["id", "score_0", "score_1", "score_2", "label"]
    np.testing.assert_allclose(scores[["score_0", "score_1", "score_2"]].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("params,field,message", [
    ({"model": "svm"}, "params.model", "expected one of logistic_regression"),
    ({"label": {"party": "bank", "column": "income"}}, "params.label.column", "not among the columns bank ships"),
    ({"label": {"party": "nobody", "column": "churn"}}, "params.label.column", "'nobody' has no input"),
    ({"test_fraction": -0.1}, "params.test_fraction", ">= 0"),
    ({"test_fraction": 1.5}, "params.test_fraction", "< 1"),
    ({"features": ["age", "churn"]}, "params.features[1]", "label 'churn' cannot also be a feature"),
    ({"features": ["ssn"]}, "params.features[0]", "not among the shipped columns"),
    ({"categorical": ["plan"]}, "params.categorical", "'segment' is non-numeric .* has no encoding"),
    ({"task": "regression"}, "params.task", "does only classification"),
    ({"hyperparameters": {"gamma": 1}}, "params.hyperparameters.gamma", "not a hyperparameter"),
    ({"hyperparameters": {"C": -1}}, "params.hyperparameters.C", "> 0"),
    ({"seed": "x"}, "params.seed", "expected an integer"),
    ({"layout": "diagonal"}, "params.layout", "vertical, horizontal"),
])
def test_bad_params_name_the_field(mixed, params, field, message):
    _, inputs = mixed
    base = {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"}}
    with pytest.raises(InputError, match=message) as err:
        _train(inputs, {**base, **params})
    assert err.value.field == field


def test_empty_intersection_is_refused_clearly(mixed):
    _, (bank, telco) = mixed
    moved = telco.data.set_column(0, "id", pa.compute.add(telco.data.column("id"), 100_000))
    with pytest.raises(InputError, match="keys do not intersect") as err:
        _train([bank, PartyInput("telco", "usage", telco.keys, telco.columns, moved)],
               {"model": "ridge", "label": {"party": "bank", "column": "age"}})
    assert err.value.field == "inputs"


def test_a_hold_out_below_k_names_the_fractions_that_meet_k(mixed):
    _, (bank, telco) = mixed
    few = PartyInput("telco", "usage", telco.keys, telco.columns, telco.data.slice(0, 40))
    # 40 joined rows, k = 5: a 0.1 hold-out is 4 rows; 5/40 = 0.125 is the smallest that meets k
    with pytest.raises(InputError, match=r"test_fraction 0.1 leaves fewer held-out rows than k \(5\) \(expected "
                                         r"between 0.125 and 0.875, or 0 to train on every row\)") as err:
        _train([bank, few], {"model": "logistic_regression", "test_fraction": 0.1,
                             "label": {"party": "bank", "column": "churn"}})
    assert err.value.field == "params.test_fraction"
    _, metrics = _train([bank, few], {"model": "logistic_regression", "test_fraction": 0.125,
                                      "label": {"party": "bank", "column": "churn"}})
    assert metrics["test_rows"] == 5
    tiny = PartyInput("telco", "usage", telco.keys, telco.columns, telco.data.slice(0, 3))
    with pytest.raises(ReleaseRefused, match=r"the training rows are fewer than the owners' minimum group size "
                                             r"\(expected >= 5\)") as refused:
        _train([bank, tiny], {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"}})
    assert "3" not in str(refused.value)


def test_test_fraction_0_trains_on_every_row_and_labels_its_metrics(mixed):
    frame, inputs = mixed
    (model,) = run_function("train", inputs, {"model": "logistic_regression", "test_fraction": 0,
                                              "label": {"party": "bank", "column": "churn"}},
                            [ReleaseRequest("model", ("analyst",))], RULES)
    assert (model.summary["train_rows"], model.summary["test_rows"]) == (len(frame), 0)
    pooled = frame.assign(segment=frame.segment.fillna("")).sort_values("id")
    reference = reference_pipeline(LogisticRegression(max_iter=1000), ["age", "spend"], ["segment", "plan"]).fit(
        pooled[["age", "segment", "plan", "spend"]], pooled["churn"].to_numpy())
    names = reference.named_steps["prepare"].get_feature_names_out()
    np.testing.assert_allclose([_named(model.summary["coefficients"])[n] for n in names],
                               reference.named_steps["model"].coef_[0], rtol=1e-6)
    _, metrics = _train(inputs, {"model": "logistic_regression", "test_fraction": 0,
                                 "label": {"party": "bank", "column": "churn"}})
    assert metrics["evaluated_on"] == "training_rows" and metrics["rows"] == metrics["train_rows"] == len(frame)


def test_repeated_keys_and_shared_column_names_are_refused(mixed):
    _, (bank, telco) = mixed
    doubled = PartyInput("telco", "usage", telco.keys, telco.columns, pa.concat_tables([telco.data, telco.data]))
    with pytest.raises(InputError, match="a key appears in more than one row") as err:
        _train([bank, doubled], {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"}})
    assert err.value.field == "inputs[1].keys"
    clash = PartyInput("telco", "usage", ("id",), ("age",), pa.table({"id": [1], "age": [3.0]}))
    with pytest.raises(InputError, match="'age' is shipped by both bank.customers and telco.usage"):
        _train([bank, clash], {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"}})


def _onnx_leaves(model_bytes):
    """Every tree of a released ensemble as {node id: (mode, feature, threshold, true, false)},
    from ai.onnx.ml's TreeEnsembleRegressor/Classifier (float32) or its opset-5 TreeEnsemble
    (float64, gradient boosting), whose leaves are numbered here after its internal nodes."""
    import onnx

    graph = onnx.load_model_from_string(model_bytes).graph
    (node,) = [n for n in graph.node if n.op_type.startswith("TreeEnsemble")]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    trees: dict[int, dict[int, tuple]] = {}
    if node.op_type == "TreeEnsemble":
        splits = onnx.numpy_helper.to_array(attrs["nodes_splits"])
        modes = onnx.numpy_helper.to_array(attrs["nodes_modes"])
        leaves = len(onnx.numpy_helper.to_array(attrs["leaf_weights"]))
        roots = list(attrs["tree_roots"]) + [len(splits)]
        for t in range(len(roots) - 1):
            tree = trees.setdefault(t, {})
            for i in range(roots[t], roots[t + 1]):
                assert modes[i] == 0  # BRANCH_LEQ
                ends = []
                for ids, is_leaf in (("nodes_truenodeids", "nodes_trueleafs"), ("nodes_falsenodeids", "nodes_falseleafs")):
                    j = attrs[ids][i]
                    ends.append(len(splits) + j if attrs[is_leaf][i] else j)
                    if attrs[is_leaf][i]:
                        tree[len(splits) + j] = ("LEAF", None, None, None, None)
                tree[i] = ("BRANCH_LEQ", attrs["nodes_featureids"][i], splits[i], ends[0], ends[1])
            trees[t] = {"root": roots[t], **tree}
        assert sum(len([v for v in tr.values() if isinstance(v, tuple) and v[0] == "LEAF"]) for tr in trees.values()) == leaves
        return trees
    for i, tree in enumerate(attrs["nodes_treeids"]):
        mode = attrs["nodes_modes"][i].decode()
        trees.setdefault(tree, {"root": 0})[attrs["nodes_nodeids"][i]] = (
            mode, attrs["nodes_featureids"][i], np.float32(attrs["nodes_values"][i]),
            attrs["nodes_truenodeids"][i], attrs["nodes_falsenodeids"][i])
    return trees


def _rows_per_leaf(tree, x):
    """How many rows of x reach each leaf, walking the ONNX tree as onnxruntime does (in the
    tree's own precision: float32 thresholds take float32 inputs)."""
    counts: dict[int, int] = {}
    nodes = {n: v for n, v in tree.items() if n != "root"}
    double = any(v[0] != "LEAF" and isinstance(v[2], np.float64) for v in nodes.values())
    for row in (x if double else x.astype(np.float32)):
        node = tree["root"]
        while nodes[node][0] != "LEAF":
            mode, feature, threshold, true, false = nodes[node]
            go = row[feature] <= threshold if mode == "BRANCH_LEQ" else row[feature] < threshold
            node = true if go else false
        counts[node] = counts.get(node, 0) + 1
    leaves = [n for n, v in nodes.items() if v[0] == "LEAF"]
    return [counts.get(n, 0) for n in leaves]


@pytest.mark.parametrize("model,hyper", [
    ("random_forest", {"n_estimators": 20, "min_samples_leaf": 1}),      # the spec asks for leaves of one row
    ("random_forest", {"n_estimators": 20}),                             # scikit-learn's default: leaves of one row
    ("hist_gradient_boosting", {"max_iter": 20, "min_samples_leaf": 2, "max_leaf_nodes": 63}),
])
def test_a_tree_model_released_under_k_10_has_no_leaf_fitted_from_fewer_than_10_rows(model, hyper):
    """Walk the released ONNX trees and count the training rows that reach each leaf."""
    rng = np.random.default_rng(11)
    n = 400
    x = rng.integers(0, 1000, size=(n, 3)).astype(float)  # exact in float32: no row moves across a split
    y = np.round(x[:, 0] * 3 + rng.normal(0, 50, n))
    inp = PartyInput("bank", "t", ("id",), ("a", "b", "c", "y"),
                     pa.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}))
    rules = rules_for({"model": {"analyst"}}, {"bank"}, k=10)
    (released,) = run_function("train", [inp], {"model": model, "seed": 3, "hyperparameters": hyper,
                                                 "label": {"party": "bank", "column": "y"}},
                               [ReleaseRequest("model", ("analyst",))], rules)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=3, shuffle=True)
    trees = _onnx_leaves(released.payload)
    assert len(trees) == 20
    smallest = min(min(_rows_per_leaf(tree, x_train)) for tree in trees.values())
    assert smallest >= 10
    assert released.summary["enforced_hyperparameters"]["min_samples_leaf"] >= 10
    # no training label appears verbatim as a leaf value (a leaf of one row would carry it)
    import onnx

    graph = onnx.load_model_from_string(released.payload).graph
    (node,) = [nd for nd in graph.node if nd.op_type.startswith("TreeEnsemble")]
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    weights = np.array(values["target_weights"]) if "target_weights" in values \
        else onnx.numpy_helper.to_array(values["leaf_weights"])
    if model == "random_forest":
        assert len(set(np.float32(y_train).tolist()) & set(np.float32(weights).tolist())) < 0.05 * len(y_train)


def test_tree_caps_from_the_rule_and_the_release_size_are_enforced_before_the_fit():
    from teenet.models.rules import RuleRefused

    rng = np.random.default_rng(2)
    n = 2000
    x = rng.normal(size=(n, 2))
    inp = PartyInput("bank", "t", ("id",), ("a", "b", "y"),
                     pa.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] > 0).astype(int)}))
    request = [ReleaseRequest("model", ("analyst",))]
    capped = rules_for({"model": {"analyst"}}, {"bank"}, k=10,
                       analysis=(rule("bank", "t", max_tree_depth=3, max_trees=5),))
    (model,) = run_function("train", [inp], {"model": "random_forest", "label": {"party": "bank", "column": "y"}},
                            request, capped)
    assert model.summary["enforced_hyperparameters"] == {"max_depth": 3, "min_samples_leaf": 10, "n_estimators": 5}
    assert len(_onnx_leaves(model.payload)) == 5
    assert max(len(t) for t in _onnx_leaves(model.payload).values()) <= 2 ** 4 - 1
    with pytest.raises(RuleRefused, match=r"analysis.max_tree_depth: field 'params.hyperparameters.max_depth'"):
        run_function("train", [inp], {"model": "random_forest", "hyperparameters": {"max_depth": 8},
                                      "label": {"party": "bank", "column": "y"}}, request, capped)
    # a forest that could grow past the node limit is refused before it is fitted (1500 rows / k 10
    # = 150 leaves per tree x 500 trees > 100k nodes), with a depth that would fit
    small = rules_for({"model": {"analyst"}}, {"bank"}, k=10, analysis=(rule("bank", "t", max_tree_nodes=100_000),))
    with pytest.raises(RuleRefused, match=r"analysis.max_tree_nodes: .*expected at most 100000 nodes; e.g. "
                                          r"n_estimators 500 with max_depth 6"):
        run_function("train", [inp], {"model": "random_forest", "hyperparameters": {"n_estimators": 500},
                                      "label": {"party": "bank", "column": "y"}}, request, small)
    # and at validation, from the spec alone, when the depth is known
    from teenet.models import InputSpec
    from teenet.models.rules import check_job

    with pytest.raises(RuleRefused, match="analysis.max_tree_nodes"):
        check_job(small.analysis[0], party="bank", function="train", inputs=[InputSpec("bank", "t", ("id",), ("a",))],
                  params={"model": "random_forest", "hyperparameters": {"n_estimators": 500, "max_depth": 12}},
                  releases=request)


def test_roc_steps_each_cover_at_least_k_rows_or_no_roc_when_the_rule_says_so():
    rng = np.random.default_rng(5)
    n = 4000
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + rng.normal(size=n) > 0).astype(int)
    inp = PartyInput("bank", "t", ("id",), ("a", "b", "y"), pa.table({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1],
                                                                       "y": y}))
    params = {"model": "logistic_regression", "label": {"party": "bank", "column": "y"}}
    request = [ReleaseRequest("metrics", ("analyst",))]
    k = 50
    (out,) = run_function("train", [inp], params, request, rules_for({"metrics": {"analyst"}}, {"bank"}, k=k))
    metrics = json.loads(out.payload)
    roc = metrics["roc"]
    held = metrics["test_rows"]
    _, _, _, y_test = train_test_split(x, y, test_size=0.25, random_state=0, shuffle=True)
    positives, negatives = int(y_test.sum()), int(len(y_test) - y_test.sum())
    covered = np.rint(np.array(roc["fpr"]) * negatives + np.array(roc["tpr"]) * positives)
    assert covered[0] == 0 and covered[-1] == held
    assert np.all(np.diff(covered) >= k) and len(covered) <= held // k + 1
    assert roc["min_rows_per_step"] == k
    withheld = rules_for({"metrics": {"analyst"}}, {"bank"}, k=k, analysis=(rule("bank", "t", min_k=k, roc=False),))
    (out,) = run_function("train", [inp], params, request, withheld)
    metrics = json.loads(out.payload)
    assert metrics["roc"] is None and "roc: false" in metrics["roc_withheld"] and metrics["auc"] > 0.5


def test_blank_keys_are_reported_as_blank_not_as_repeated_ids(mixed):
    _, (bank, telco) = mixed
    ids = [f"c{i}" for i in range(1200)]
    ids[5] = ids[17] = "  "
    ids[40] = ""
    blanks = PartyInput("telco", "usage", telco.keys, telco.columns, telco.data.set_column(0, "id", pa.array(ids)))
    named = PartyInput("bank", "customers", bank.keys, bank.columns,
                       bank.data.set_column(0, "id", pa.array([f"c{i}" for i in bank.data.column("id").to_pylist()])))
    with pytest.raises(InputError, match="telco.usage: key 'id' is blank or empty in more than one row") as err:
        _train([named, blanks], {"model": "logistic_regression", "label": {"party": "bank", "column": "churn"}})
    assert err.value.field == "inputs[1].keys"


def test_vertical_logistic_regression_under_owners_rules_without_dp_equals_pooled_plaintext(breast_cancer):
    split = split_vertically(breast_cancer, "target", ["bank", "telco"], seed=2)
    rules = rules_for({"model": {"analyst"}, "metrics": {"analyst"}}, {"bank", "telco"}, k=10, analysis=(
        rule("bank", "bank_table", dp_required=False, models={"logistic_regression": {"C": [0.01, 10]}},
             join_keys=["id"], releases={"model": ["analyst"], "metrics": ["analyst"]}),
        rule("telco", "telco_table", min_k=20)))
    model, metrics = run_function("train", split.inputs, {"model": "logistic_regression", "seed": 4,
                                                          "label": {"party": "bank", "column": "target"}}, BOTH, rules)
    x_train, x_test, y_train, y_test = _reference_split(split.pooled, split.features, "target", seed=4)
    reference = reference_pipeline(LogisticRegression(max_iter=1000), split.features).fit(x_train, y_train)
    np.testing.assert_allclose(_coefficients(model.summary, split.features), reference.named_steps["model"].coef_[0],
                               rtol=1e-6)
    assert model.summary["intercept"] == pytest.approx(reference.named_steps["model"].intercept_[0], rel=1e-6)
    covered = np.diff(np.rint(np.array(json.loads(metrics.payload)["roc"]["tpr"]) * y_test.sum()
                              + np.array(json.loads(metrics.payload)["roc"]["fpr"]) * (len(y_test) - y_test.sum())))
    assert np.all(covered >= 20)  # k is the strictest owner's: the telco's 20


def test_a_rule_can_require_dp_training_for_linear_models(breast_cancer):
    from teenet.models.rules import RuleRefused

    split = split_vertically(breast_cancer, "target", ["bank", "telco"], seed=2)
    features = split.features[:6]
    rules = rules_for({"model": {"analyst"}, "metrics": {"analyst"}}, {"bank", "telco"}, k=10,
                      analysis=(rule("bank", "bank_table", dp_required=True, max_epsilon_per_job=5.0),))
    base = {"model": "logistic_regression", "label": {"party": "bank", "column": "target"}, "features": features}
    model_only = [ReleaseRequest("model", ("analyst",))]
    with pytest.raises(RuleRefused, match=r"analysis.dp_required: field 'params.dp'"):
        run_function("train", split.inputs, base, model_only, rules)
    with pytest.raises(RuleRefused, match=r"analysis.dp_required: field 'params.model'"):
        run_function("train", split.inputs, {**base, "model": "random_forest"}, model_only, rules)
    with pytest.raises(RuleRefused, match=r"analysis.max_epsilon_per_job"):
        run_function("train", split.inputs, {**base, "dp": {"epsilon": 10.0}}, model_only, rules)
    bounds = {f: [float(breast_cancer[f].quantile(0.0)) * 0.0, float(breast_cancer[f].max()) * 1.5] for f in features}
    dp = {"epsilon": 5.0, "bounds": bounds}
    with pytest.raises(RuleRefused, match=r"field 'release\[1\].kind': a DP-trained model is released without"):
        run_function("train", split.inputs, {**base, "dp": dp}, BOTH, rules)
    with pytest.raises(InputError, match="a job cannot seed") as err:
        run_function("train", split.inputs, {**base, "dp": {**dp, "seed": 1}}, model_only, rules)
    assert err.value.field == "params.dp.seed"
    first, = run_function("train", split.inputs, {**base, "dp": dp}, model_only, rules)
    second, = run_function("train", split.inputs, {**base, "dp": dp}, model_only, rules)
    assert first.summary["dp"]["epsilon"] == 5.0 and "train_rows" not in first.summary
    assert _coefficients(first.summary, features).tolist() != _coefficients(second.summary, features).tolist()
    # the released ONNX model scores (a DP model still predicts, through scikit-learn's own classes)
    scores = _scores(first.payload, split.inputs, pa.array(split.pooled["id"].to_numpy()))
    assert len(scores) == len(split.pooled) and scores["score"].between(0, 1).all()


def test_dp_linear_regression_uses_declared_bounds_and_still_predicts(diabetes):
    split = split_vertically(diabetes, "target", ["bank", "telco"], seed=4)
    bounds = {f: [-0.2, 0.2] for f in split.features}
    # a budget large enough that the noise is small: the declared scaling and clipping must then
    # give (nearly) the plaintext least-squares model on the same training rows
    params = {"model": "linear_regression", "label": {"party": "bank", "column": "target"},
              "dp": {"epsilon": 1e6, "bounds": bounds, "label_bounds": [0, 400]}}
    (model,) = run_function("train", split.inputs, params, [ReleaseRequest("model", ("analyst",))], RULES)
    assert model.summary["dp"]["epsilon"] == 1e6
    scores = _scores(model.payload, split.inputs, pa.array(split.pooled["id"].to_numpy()))
    x_train, _, y_train, _ = _reference_split(split.pooled, split.features, "target", 0)
    plain = LinearRegression().fit(x_train.clip(-0.2, 0.2), y_train)
    expected = plain.predict(split.pooled.sort_values("id")[split.features].clip(-0.2, 0.2))
    assert np.corrcoef(scores["score"].to_numpy(), expected)[0, 1] > 0.99
    with pytest.raises(InputError) as err:
        run_function("train", split.inputs, {**params, "dp": {"epsilon": 1.0, "bounds": bounds}},
                     [ReleaseRequest("model", ("analyst",))], RULES)
    assert err.value.field == "params.dp.label_bounds"
