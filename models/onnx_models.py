"""Released models as ONNX: exporting a fitted scikit-learn Pipeline, and loading one safely.

Export: one ONNX input per feature ([n, 1], float for numbers, string for categories), so
a model names the columns it needs; classifiers output `label` and a `probabilities`
tensor; regressors `variable`. Metadata (`teenet.*`) records the task, classes and
features. ONNX computes in float32: a linear model's scores match scikit-learn's float64 to
about 1e-6, but a tree ensemble compares float32 inputs with float32 thresholds, so a value
within float32 rounding of a split threshold takes the other branch and its probability can
differ by far more (2.7e-2 measured for gradient boosting at 20k rows; docs/performance.md).
Converting with double inputs (skl2onnx 1.20 then writes double thresholds, ai.onnx.ml
opset 1 or 3) gives a model onnxruntime 1.32 refuses to load: its TreeEnsembleClassifier
and TreeEnsembleRegressor output float32 only. Exact trees would need ai.onnx.ml opset 5's
`TreeEnsemble` (which skl2onnx does not emit) and float64 feeds in predict.

Loading refuses what a released teenet model never contains and an enclave must not
follow: tensors stored outside the file (a path to read), and operator domains other than
the standard ones.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from teenet.errors import InputError

from teenet.models.features import FeatureLayout

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
META_PREFIX = "teenet."


class _IntegerFlagsContainer:
    """Passes skl2onnx's node attributes on with boolean list entries as 0/1.

    skl2onnx 1.20 emits Python bools among the integers of
    `nodes_missing_value_tracks_true` for HistGradientBoosting leaves, which current
    protobuf refuses; ONNX wants 0/1 there anyway, so the meaning is unchanged.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: Any, inputs: Any, outputs: Any, op_domain: str = "",
                 op_version: Any = None, **attrs: Any) -> Any:
        import numpy as np

        for key, value in attrs.items():
            if isinstance(value, list) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) for v in value]
        return self._container.add_node(op_type, inputs, outputs, op_domain=op_domain,
                                        op_version=op_version, **attrs)


def _hist_gradient_boosting_converters() -> dict[type, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    converters = {}
    for cls in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        original = get_converter(sklearn_operator_name_map[cls])

        def convert(scope: Any, operator: Any, container: Any, _original: Any = original) -> Any:
            return _original(scope, operator, _IntegerFlagsContainer(container))

        converters[cls] = convert
    return converters


def _xgboost_trees(booster: Any) -> tuple[list[dict[str, Any]], list[int], list[float], str]:
    """The trees (as the booster's JSON model stores them), each tree's output index, the
    base margins and the objective, from the booster's own JSON (never a pickle)."""
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    if gbm["name"] != "gbtree":
        raise InputError(f"an XGBoost {gbm['name']} booster has no ONNX conversion here (expected gbtree)",
                         field="params.model")
    base = json.loads(learner["learner_model_param"]["base_score"])
    base = [float(b) for b in (base if isinstance(base, list) else [base])]
    if objective == "binary:logistic":  # base_score is a probability; the trees add margins
        base = [float(np.log(b / (1.0 - b))) for b in base]
    elif objective not in ("multi:softprob", "reg:squarederror"):
        raise InputError(f"XGBoost objective {objective} has no ONNX conversion here", field="params.model")
    return gbm["model"]["trees"], [int(t) for t in gbm["model"]["tree_info"]], base, objective


def _xgboost_converter(classifier: bool) -> Any:
    """skl2onnx converter for teenet's XGBoost estimators: one ai.onnx.ml TreeEnsemble node.

    XGBoost sends a row left when its float32 value is below the float32 split condition and
    a missing value to the default side; BRANCH_LT with float32 thresholds and
    missing_value_tracks_true = default_left is the same test. Leaves carry the booster's
    leaf values; base_values its base margins (the logit of base_score for binary:logistic);
    LOGISTIC or SOFTMAX gives the probabilities."""

    def convert(scope: Any, operator: Any, container: Any) -> None:
        estimator = operator.raw_operator
        trees, info, base, objective = _xgboost_trees(estimator.get_booster())
        nodes: dict[str, list[Any]] = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values",
                                                         "truenodeids", "falsenodeids", "missing_value_tracks_true")}
        leaves: dict[str, list[Any]] = {"treeids": [], "nodeids": [], "ids": [], "weights": []}
        for t, (tree, output) in enumerate(zip(trees, info)):
            if any(int(kind) != 0 for kind in tree.get("split_type", [])):
                raise InputError("an XGBoost categorical split has no ONNX conversion here", field="params.model")
            left, right = tree["left_children"], tree["right_children"]
            for i, (lo, hi) in enumerate(zip(left, right)):
                leaf = lo == -1
                nodes["treeids"].append(t)
                nodes["nodeids"].append(i)
                nodes["featureids"].append(0 if leaf else int(tree["split_indices"][i]))
                nodes["modes"].append("LEAF" if leaf else "BRANCH_LT")
                nodes["values"].append(0.0 if leaf else float(tree["split_conditions"][i]))
                nodes["truenodeids"].append(0 if leaf else int(lo))
                nodes["falsenodeids"].append(0 if leaf else int(hi))
                nodes["missing_value_tracks_true"].append(0 if leaf else int(tree["default_left"][i]))
                if leaf:
                    leaves["treeids"].append(t)
                    leaves["nodeids"].append(i)
                    leaves["ids"].append(output)
                    leaves["weights"].append(float(tree["split_conditions"][i]))
        attrs = {f"nodes_{k}": v for k, v in nodes.items()}
        name = scope.get_unique_operator_name("XGBoostTrees")
        if not classifier:
            container.add_node("TreeEnsembleRegressor", operator.inputs[0].full_name, operator.outputs[0].full_name,
                               op_domain="ai.onnx.ml", op_version=1, name=name, n_targets=1,
                               target_treeids=leaves["treeids"], target_nodeids=leaves["nodeids"],
                               target_ids=leaves["ids"], target_weights=leaves["weights"], base_values=base,
                               aggregate_function="SUM", post_transform="NONE", **attrs)
            return
        classes = estimator.classes_
        labels = ({"classlabels_strings": [str(c) for c in classes]} if classes.dtype.kind in "OUS"
                  else {"classlabels_int64s": [int(c) for c in classes]})
        container.add_node("TreeEnsembleClassifier", operator.inputs[0].full_name,
                           [operator.outputs[0].full_name, operator.outputs[1].full_name], op_domain="ai.onnx.ml",
                           op_version=1, name=name, class_treeids=leaves["treeids"], class_nodeids=leaves["nodeids"],
                           class_ids=leaves["ids"], class_weights=leaves["weights"], base_values=base,
                           post_transform="LOGISTIC" if objective == "binary:logistic" else "SOFTMAX",
                           **labels, **attrs)

    return convert


def _register_xgboost(estimator: Any) -> None:
    from teenet.models import boosting

    if type(estimator) not in (boosting.classifier_class(), boosting.regressor_class()):
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                  calculate_linear_regressor_output_shapes)

    classifier = type(estimator) is boosting.classifier_class()
    update_registered_converter(type(estimator), "TeenetXGBoost" + ("Classifier" if classifier else "Regressor"),
                                calculate_linear_classifier_output_shapes if classifier
                                else calculate_linear_regressor_output_shapes,
                                _xgboost_converter(classifier),
                                options={"zipmap": [True, False], "nocl": [True, False]} if classifier else None)


def export_pipeline(pipeline: Any, layout: FeatureLayout, metadata: Mapping[str, Any]) -> bytes:
    """The whole fitted Pipeline (preprocessing and model) as ONNX bytes."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [(name, StringTensorType([None, 1]) if name in layout.categorical
                      else FloatTensorType([None, 1])) for name in layout.features]
    estimator = pipeline.steps[-1][1]
    if type(estimator).__module__ == "teenet.models.boosting":
        _register_xgboost(estimator)
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    model = convert_sklearn(pipeline, initial_types=initial_types, options=options,
                            custom_conversion_functions=_hist_gradient_boosting_converters())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = json.dumps(value)
    model.producer_name = "teenet"
    return model.SerializeToString()


class LoadedModel:
    """A checked ONNX model ready to score: its session, inputs and teenet metadata."""

    def __init__(self, session: Any, inputs: dict[str, str], input_names: dict[str, str], outputs: list[str],
                 metadata: dict[str, Any]) -> None:
        self.session = session
        self.inputs = inputs            # feature (column) name -> "numeric" | "categorical"
        self.input_names = input_names  # feature (column) name -> the ONNX input's name
        self.outputs = outputs
        self.metadata = metadata

    @property
    def is_classifier(self) -> bool:
        return "probabilities" in self.outputs


def load_model(payload: Any, field: str = "params.model_onnx") -> LoadedModel:
    """Parse, check and open ONNX bytes; every failure is an InputError naming `field`."""
    import onnx
    from onnx import external_data_helper
    import onnxruntime as ort

    if not isinstance(payload, (bytes, bytearray, memoryview)) or not payload:
        raise InputError("expected the released model's ONNX bytes", field=field)
    try:
        model = onnx.load_model_from_string(bytes(payload))
    except Exception as exc:  # protobuf raises DecodeError and others
        raise InputError(f"not a valid ONNX model ({type(exc).__name__})", field=field) from None
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    if any(external_data_helper.uses_external_data(t) for t in tensors):
        raise InputError("the model refers to tensors stored outside it; a released model is self-contained",
                         field=field)
    domains = {o.domain for o in model.opset_import} | {n.domain for n in model.graph.node}
    unknown = sorted(d for d in domains if d not in ALLOWED_DOMAINS)
    if unknown:
        raise InputError(f"the model uses operator domain(s) {', '.join(unknown)} (expected only "
                         "ai.onnx and ai.onnx.ml)", field=field)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises ValidationError and others
        raise InputError(f"not a valid ONNX model ({type(exc).__name__})", field=field) from None
    metadata = {}
    for entry in model.metadata_props:
        if entry.key.startswith(META_PREFIX):
            try:
                metadata[entry.key[len(META_PREFIX):]] = json.loads(entry.value)
            except ValueError:
                raise InputError(f"metadata '{entry.key}' is not JSON", field=field) from None
    try:
        session = ort.InferenceSession(bytes(payload), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InputError(f"the model cannot be opened for scoring ({type(exc).__name__})", field=field) from None
    nodes = session.get_inputs()
    # skl2onnx rewrites characters such as "(" in input names; the column names are in
    # the metadata, in input order.
    features = metadata.get("features")
    if not (isinstance(features, list) and len(features) == len(nodes) and all(isinstance(f, str) for f in features)):
        features = [node.name for node in nodes]
    inputs: dict[str, str] = {}
    input_names: dict[str, str] = {}
    for feature, node in zip(features, nodes):
        if node.type == "tensor(string)":
            inputs[feature] = "categorical"
        elif node.type in ("tensor(float)", "tensor(double)"):
            inputs[feature] = "numeric"
        else:
            raise InputError(f"model input '{node.name}' has type {node.type} (expected float or string)",
                             field=field)
        input_names[feature] = node.name
    outputs = [o.name for o in session.get_outputs()]
    if "probabilities" not in outputs and "variable" not in outputs:
        raise InputError("the model has neither a 'probabilities' nor a 'variable' output "
                         "(expected a teenet-released model)", field=field)
    return LoadedModel(session, inputs, input_names, outputs, metadata)
