"""Released models as ONNX: exporting a fitted scikit-learn Pipeline, and loading one safely.

Export: one ONNX input per feature ([n, 1], a number or a string for categories), so a
model names the columns it needs; classifiers output `label` and a `probabilities`
tensor; regressors `variable`. Metadata (`teenet.*`) records the task, classes and
features.

Linear models and random forests are converted by skl2onnx with float32 inputs: a linear
model's scores match scikit-learn's float64 to about 1e-6.

Gradient boosting (HistGradientBoosting) is converted here, in float64 end to end
(`_export_boosting_double`): double inputs, the median imputer and the one-hot encoding
as standard ONNX operators, and the trees as ai.onnx.ml opset 5's `TreeEnsemble` with
double thresholds and leaf values, which onnxruntime (1.32) evaluates in double. A float32
tree ensemble (skl2onnx's TreeEnsembleClassifier, the only form onnxruntime's older tree
operators compute) compares float32-rounded inputs with float32-rounded thresholds, so a
value within float32 rounding of a split takes the other branch: its probabilities
differed from scikit-learn's by up to 2.7e-2 (docs/performance.md). The double model takes
every branch scikit-learn takes and gives its probabilities to rounding (about 1e-15).

Loading refuses what a released teenet model never contains and an enclave must not
follow: tensors stored outside the file (a path to read), and operator domains other than
the standard ones.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

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
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    estimator = pipeline.steps[-1][1]
    if isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        model = _export_boosting_double(pipeline, layout)
    else:
        if type(estimator).__module__ == "teenet.models.boosting":
            _register_xgboost(estimator)
        model = _export_with_skl2onnx(pipeline, layout)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = META_PREFIX + key
        entry.value = json.dumps(value)
    model.producer_name = "teenet"
    return model.SerializeToString()


def _export_with_skl2onnx(pipeline: Any, layout: FeatureLayout) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [(name, StringTensorType([None, 1]) if name in layout.categorical
                      else FloatTensorType([None, 1])) for name in layout.features]
    estimator = pipeline.steps[-1][1]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    return convert_sklearn(pipeline, initial_types=initial_types, options=options,
                           custom_conversion_functions=_hist_gradient_boosting_converters())


# gradient boosting in float64 ------------------------------------------------------------

BOOSTING_OPSET = 21       # the standard domain
BOOSTING_ML_OPSET = 5     # ai.onnx.ml: TreeEnsemble
_BRANCH_LEQ = 0           # TreeEnsemble nodes_modes: x <= split takes the true branch
_SUM = 1                  # TreeEnsemble aggregate_function
_IR_VERSION = 10


def _onnx_input_names(features: Sequence[str]) -> list[str]:
    """ONNX-safe, distinct input names in feature order (the column names themselves are in
    the metadata, which load_model maps back)."""
    names: list[str] = []
    for feature in features:
        base = re.sub(r"[^A-Za-z0-9_]", "_", feature) or "feature"
        if base[0].isdigit():
            base = "f_" + base
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _boosting_parts(pipeline: Any, layout: FeatureLayout) -> tuple[Any, Any, Any]:
    """The fitted imputer (or None), one-hot encoder (or None) and estimator of a pipeline
    built by teenet.models.learning.build_pipeline for a tree model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], ColumnTransformer):
        raise InputError("expected a Pipeline of (ColumnTransformer, model) to export", field="params.model")
    imputer = encoder = None
    for name, transformer, columns in pipeline.steps[0][1].transformers_:
        if transformer == "drop" or (name == "remainder" and not len(columns)):
            continue
        if name == "numeric" and list(columns) == list(layout.numeric):
            steps = getattr(transformer, "steps", [])
            if len(steps) != 1 or type(steps[0][1]) is not SimpleImputer \
                    or steps[0][1].strategy != "median" or steps[0][1].add_indicator:
                raise InputError("expected the tree model's numeric features to be median-imputed only",
                                 field="params.model")
            imputer = steps[0][1]
        elif name == "categorical" and list(columns) == list(layout.categorical) \
                and type(transformer) is OneHotEncoder and transformer.handle_unknown == "ignore" \
                and transformer.drop_idx_ is None:
            encoder = transformer
        else:
            raise InputError(f"cannot export the preprocessing step '{name}' in float64", field="params.model")
    if layout.numeric and imputer is None or layout.categorical and encoder is None:
        raise InputError("the pipeline's preprocessing does not cover every feature", field="params.model")
    return imputer, encoder, pipeline.steps[1][1]


def _tree_ensemble_attributes(estimator: Any) -> dict[str, Any]:
    """TreeEnsemble (ai.onnx.ml 5) attributes for a fitted HistGradientBoosting model:
    every predictor's nodes, thresholds and leaf values in float64, as scikit-learn predicts
    (x <= num_threshold goes left; a missing value goes left iff missing_go_to_left)."""
    import numpy as np
    from onnx import numpy_helper

    modes, features, splits, missing = [], [], [], []
    true_ids, true_leaf, false_ids, false_leaf = [], [], [], []
    leaf_targets, leaf_weights, roots = [], [], []
    for iteration in estimator._predictors:
        for target, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"].astype(bool)):
                raise InputError("cannot export a tree with native categorical splits", field="params.model")
            # Leaves and internal nodes are numbered across the whole ensemble, tree by tree.
            leaf_index = {int(i): len(leaf_weights) + n for n, i in enumerate(np.flatnonzero(nodes["is_leaf"]))}
            for i in leaf_index:
                leaf_targets.append(target)
                leaf_weights.append(float(nodes["value"][i]))
            node_index: dict[int, int] = {}
            roots.append(len(modes))
            if nodes["is_leaf"][0]:
                # A tree of one leaf: one split whose both branches reach that leaf.
                modes.append(_BRANCH_LEQ)
                features.append(0)
                splits.append(0.0)
                missing.append(0)
                true_ids.append(leaf_index[0])
                true_leaf.append(1)
                false_ids.append(leaf_index[0])
                false_leaf.append(1)
                continue
            internal = [i for i in range(len(nodes)) if not nodes["is_leaf"][i]]
            for i in internal:
                node_index[i] = len(modes) + len(node_index)
            for i in internal:
                left, right = int(nodes["left"][i]), int(nodes["right"][i])
                modes.append(_BRANCH_LEQ)
                features.append(int(nodes["feature_idx"][i]))
                splits.append(float(nodes["num_threshold"][i]))
                missing.append(int(nodes["missing_go_to_left"][i]))
                for child, ids, is_leaf in ((left, true_ids, true_leaf), (right, false_ids, false_leaf)):
                    if nodes["is_leaf"][child]:
                        ids.append(leaf_index[child])
                        is_leaf.append(1)
                    else:
                        ids.append(node_index[child])
                        is_leaf.append(0)
    return {"n_targets": int(estimator.n_trees_per_iteration_), "aggregate_function": _SUM, "post_transform": 0,
            "tree_roots": roots, "nodes_modes": numpy_helper.from_array(np.asarray(modes, dtype=np.uint8)),
            "nodes_featureids": features,
            "nodes_splits": numpy_helper.from_array(np.asarray(splits, dtype=np.float64)),
            "nodes_missing_value_tracks_true": missing,
            "nodes_truenodeids": true_ids, "nodes_trueleafs": true_leaf,
            "nodes_falsenodeids": false_ids, "nodes_falseleafs": false_leaf,
            "leaf_targetids": leaf_targets,
            "leaf_weights": numpy_helper.from_array(np.asarray(leaf_weights, dtype=np.float64))}


def _export_boosting_double(pipeline: Any, layout: FeatureLayout) -> Any:
    """A fitted HistGradientBoosting pipeline as a float64 ONNX graph (see the module's
    docstring): inputs -> median imputation / one-hot -> TreeEnsemble -> + baseline ->
    sigmoid or softmax (classifiers) -> probabilities and label, or -> variable."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.ensemble import HistGradientBoostingClassifier

    imputer, encoder, estimator = _boosting_parts(pipeline, layout)
    names = dict(zip(layout.features, _onnx_input_names(layout.features)))
    inputs = [helper.make_tensor_value_info(names[f], TensorProto.STRING if f in layout.categorical
                                            else TensorProto.DOUBLE, [None, 1]) for f in layout.features]
    nodes, inits, parts = [], [], []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    if layout.numeric:
        nodes.append(helper.make_node("Concat", [names[f] for f in layout.numeric], ["numeric_raw"], axis=1))
        stats = np.asarray(imputer.statistics_, dtype=np.float64)
        nodes.append(helper.make_node("IsNaN", ["numeric_raw"], ["numeric_missing"]))
        nodes.append(helper.make_node("Where", ["numeric_missing", const("median", stats.reshape(1, -1)),
                                                "numeric_raw"], ["numeric_filled"]))
        kept = np.flatnonzero(~np.isnan(stats))  # SimpleImputer drops a feature with no statistic
        if len(kept) != len(stats):
            nodes.append(helper.make_node("Gather", ["numeric_filled", const("numeric_kept", kept.astype(np.int64))],
                                          ["numeric"], axis=1))
        else:
            nodes.append(helper.make_node("Identity", ["numeric_filled"], ["numeric"]))
        parts.append("numeric")
    for j, feature in enumerate(layout.categorical):
        categories = np.asarray([str(c) for c in encoder.categories_[j]], dtype=object).reshape(1, -1)
        nodes.append(helper.make_node("Equal", [names[feature], const(f"categories_{j}", categories)],
                                      [f"onehot_{j}_bool"]))
        nodes.append(helper.make_node("Cast", [f"onehot_{j}_bool"], [f"onehot_{j}"], to=TensorProto.DOUBLE))
        parts.append(f"onehot_{j}")
    if len(parts) == 1:
        nodes.append(helper.make_node("Identity", parts, ["features"]))
    else:
        nodes.append(helper.make_node("Concat", parts, ["features"], axis=1))
    nodes.append(helper.make_node("TreeEnsemble", ["features"], ["trees"], domain="ai.onnx.ml",
                                  **_tree_ensemble_attributes(estimator)))
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, -1)
    targets = baseline.shape[1]
    outputs = []
    if isinstance(estimator, HistGradientBoostingClassifier):
        nodes.append(helper.make_node("Add", ["trees", const("baseline", baseline)], ["raw"]))
        classes = np.asarray(estimator.classes_)
        if targets == 1:
            nodes.append(helper.make_node("Sigmoid", ["raw"], ["positive"]))
            nodes.append(helper.make_node("Sub", [const("one", np.ones((1, 1))), "positive"], ["negative"]))
            nodes.append(helper.make_node("Concat", ["negative", "positive"], ["probabilities"], axis=1))
        else:
            nodes.append(helper.make_node("Softmax", ["raw"], ["probabilities"], axis=1))
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0))
        if classes.dtype.kind in "iub":
            labels, label_type = classes.astype(np.int64), TensorProto.INT64
        else:
            labels, label_type = np.asarray([str(c) for c in classes], dtype=object), TensorProto.STRING
        nodes.append(helper.make_node("Gather", [const("classes", labels), "class_index"], ["label"], axis=0))
        outputs = [helper.make_tensor_value_info("label", label_type, [None]),
                   helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)])]
    else:
        if getattr(estimator, "loss", "squared_error") not in ("squared_error", "absolute_error", "quantile"):
            raise InputError(f"cannot export a boosting regressor with loss '{estimator.loss}'", field="params.model")
        nodes.append(helper.make_node("Add", ["trees", const("baseline", baseline)], ["variable"]))
        outputs = [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])]
    graph = helper.make_graph(nodes, "teenet_gradient_boosting", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", BOOSTING_OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", BOOSTING_ML_OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


class LoadedModel:
    """A checked ONNX model ready to score: its session, inputs and teenet metadata."""

    def __init__(self, session: Any, inputs: dict[str, str], input_names: dict[str, str], outputs: list[str],
                 metadata: dict[str, Any], double_inputs: frozenset[str] = frozenset()) -> None:
        self.session = session
        self.double_inputs = double_inputs  # numeric features the model takes as float64 (fed as such)
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
    double: set[str] = set()
    for feature, node in zip(features, nodes):
        if node.type == "tensor(double)":
            double.add(feature)
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
    return LoadedModel(session, inputs, input_names, outputs, metadata, frozenset(double))
