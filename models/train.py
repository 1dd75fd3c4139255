"""`train`: fit a model on owners' joined or stacked rows; release it as ONNX and its metrics.

Params:
  layout: vertical | horizontal (vertical)   vertical: features split across parties,
      inner-joined on the keys (one row per key in every table), rows sorted by key;
      horizontal: the same columns from every party, rows stacked in the order the
      inputs are listed (each party's rows as shipped). Either way the result equals
      pooling the plaintext in that order.
  model: logistic_regression | linear_regression | ridge | hist_gradient_boosting |
      random_forest | xgboost   (required; xgboost: models/boosting.py)
  task: classification | regression   fixed by the linear models; for the tree models
      inferred from the label (floating-point -> regression, otherwise classification).
  label: {party, column}   the target; party may be left out for horizontal layouts.
  features: [column, ...]   default: every shipped non-key column but the label, in input
      order.
  categorical: [column, ...]   one-hot encoded; default: the string columns. When given,
      it is the complete list and any other string feature is refused.
  test_fraction: number in [0, 1) (0.25)   the seeded hold-out share of rows; 0 trains on
      every row, and metrics (if released) are then computed on the training rows and say
      so ("evaluated_on": "training_rows").
  seed: integer >= 0 (0)   drives the split and the tree models (never any DP noise).
  hyperparameters: {...}   per model: logistic_regression C, max_iter; ridge alpha;
      hist_gradient_boosting max_iter, learning_rate, max_depth, max_leaf_nodes,
      min_samples_leaf, l2_regularization; random_forest n_estimators, max_depth,
      min_samples_leaf; xgboost n_estimators, learning_rate, max_depth, min_child_weight,
      subsample, colsample_bytree, reg_lambda, reg_alpha, gamma, max_bin.
  normalise: {trim, case, type}   key normalisation for the vertical join (see `psi`).
  dp: {epsilon, bounds: {feature: [low, high]}, label_bounds: [low, high]}   optional, and
      required when an owner's rule says dp_required: differentially private training
      through diffprivlib for logistic_regression (objective perturbation) and
      linear_regression (label_bounds required), numeric features only. Preprocessing then
      uses only declared values: each feature is scaled from its bounds (spec, else an
      owner's rule) to [-1, 1] and a missing value becomes the bounds' midpoint; rows are
      clipped to those bounds. No seed reaches the noise. Exact row counts are left out of
      the summary.

Preprocessing (inside the released Pipeline): numeric features -> SimpleImputer(median)
(its statistics computed column by column with the same result, see models/imputer.py)
-> StandardScaler (linear models; trees take the imputed values unscaled, which changes
no tree and keeps float32 ONNX scoring on the same side of every split); categorical -> OneHotEncoder(handle_unknown=ignore), a missing value
being its own category. Rows without a label are left out. The split is
train_test_split(shuffle=True, random_state=seed, test_size=test_fraction).

Both the training and the held-out rows (when there are any) must number at least k; a
hold-out too small names the smallest test_fraction that meets k. Tree models cannot
memorise a row: min_samples_leaf is raised to k whatever the spec says, depth and tree
count are capped by the owners' rules, and a model that could grow past the rules' node
limit (trees x nodes per tree) is refused before it is fitted. ROC curves are released
only at thresholds each adding at least k rows, and not at all when a rule says roc: false.

Release kinds:
  model    ONNX of the whole Pipeline (application/onnx); summary: features, classes,
           coefficients (linear models) or feature importances (trees; permutation
           importances on held-out rows for hist_gradient_boosting).
  metrics  JSON: classifiers auc, accuracy, log_loss, f1 and, for two classes, the ROC
           curve {fpr, tpr, thresholds} decimated to at most 200 points; regressors r2,
           rmse, mae; and the row counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from teenet.errors import InputError

from teenet.models import boosting
from teenet.models.dp import parse_bounds, refuse_rng_controls
from teenet.models.params import ParamReader
from teenet.models.spec import Function, InputSpec, Output, PartyInput, ReleaseRules
from teenet.models.tables import KeyNormalisation, check_specs, owner_of_column

MODEL_TASKS: Mapping[str, tuple[str, ...]] = {
    "logistic_regression": ("classification",),
    "linear_regression": ("regression",),
    "ridge": ("regression",),
    "hist_gradient_boosting": ("classification", "regression"),
    "random_forest": ("classification", "regression"),
    "xgboost": ("classification", "regression"),
}

# name -> (integer?, lowest allowed, lowest excluded?)
HYPERPARAMETERS: Mapping[str, Mapping[str, tuple[bool, float, bool]]] = {
    "logistic_regression": {"C": (False, 0.0, True), "max_iter": (True, 1, False)},
    "linear_regression": {},
    "ridge": {"alpha": (False, 0.0, False)},
    "hist_gradient_boosting": {"max_iter": (True, 1, False), "learning_rate": (False, 0.0, True),
                               "max_depth": (True, 1, False), "max_leaf_nodes": (True, 2, False),
                               "min_samples_leaf": (True, 1, False), "l2_regularization": (False, 0.0, False)},
    "random_forest": {"n_estimators": (True, 1, False), "max_depth": (True, 1, False),
                      "min_samples_leaf": (True, 1, False)},
    "xgboost": boosting.HYPERPARAMETERS,
}


@dataclass(frozen=True)
class LabelRef:
    party: str | None
    column: str


@dataclass(frozen=True)
class TrainParams:
    layout: str
    model: str
    task: str | None
    label: LabelRef
    features: tuple[str, ...]
    categorical: tuple[str, ...] | None
    test_fraction: float
    seed: int
    hyperparameters: Mapping[str, Any]
    normalise: KeyNormalisation
    dp: TrainDp | None = None


# Models with a differentially private trainer in diffprivlib (objective perturbation for
# the logistic regression, noisy sufficient statistics for the linear regression).
DP_MODELS = frozenset({"logistic_regression", "linear_regression"})


@dataclass(frozen=True)
class TrainDp:
    """epsilon > 0; bounds {feature: [low, high]} (any feature missing takes an owner's
    rule's bounds, never the data's); label_bounds [low, high] for linear_regression."""

    epsilon: float
    bounds: Mapping[str, tuple[float, float]]
    label_bounds: tuple[float, float] | None

    @classmethod
    def parse(cls, reader: ParamReader, model: str, features: tuple[str, ...]) -> "TrainDp":
        refuse_rng_controls(reader)
        if model not in DP_MODELS:
            raise InputError(f"model '{model}' has no differentially private trainer here (expected one of "
                             f"{', '.join(sorted(DP_MODELS))} with dp)", field="params.model")
        epsilon = reader.number("epsilon", above=0.0)
        bounds: dict[str, tuple[float, float]] = {}
        section = reader.section("bounds")
        if section is not None:
            for name in list(section.values):
                if name not in features:
                    raise InputError(f"'{name}' is not a feature", field=section.field(str(name)))
                bounds[str(name)] = parse_bounds(section.raw(name), section.field(str(name)))
            section.done()
        label_bounds = None
        if model == "linear_regression":
            label_bounds = parse_bounds(reader.raw("label_bounds"), reader.field("label_bounds"))
        reader.done()
        return cls(epsilon, bounds, label_bounds)


def parse_params(params: Mapping[str, Any], inputs: Sequence[InputSpec], kinds: frozenset[str]) -> TrainParams:
    reader = ParamReader(params)
    layout = reader.text("layout", choices=("vertical", "horizontal"), default="vertical")
    check_specs(inputs, need_keys=(layout == "vertical" and len(inputs) > 1))
    model = reader.text("model", choices=tuple(MODEL_TASKS))
    task = reader.text("task", choices=("classification", "regression"), default=None)
    if task is not None and task not in MODEL_TASKS[model]:
        raise InputError(f"model '{model}' does only {MODEL_TASKS[model][0]}, not {task}", field="params.task")
    if task is None and len(MODEL_TASKS[model]) == 1:
        task = MODEL_TASKS[model][0]
    label_reader = ParamReader(reader.raw("label"), "params.label")
    label = LabelRef(label_reader.text("party", default=None), label_reader.text("column"))
    label_reader.done()
    available = _available_columns(inputs, layout, label)
    features = reader.names("features", default=None)
    if features is None:
        features = tuple(c for c in available if c != label.column)
    for i, name in enumerate(features):
        if name == label.column:
            raise InputError(f"the label '{name}' cannot also be a feature", field=f"params.features[{i}]")
        if name not in available:
            raise InputError(f"feature '{name}' is not among the shipped columns", field=f"params.features[{i}]")
    if not features:
        raise InputError("no feature columns remain besides the label", field="params.features")
    categorical = reader.names("categorical", default=None)
    for i, name in enumerate(categorical or ()):
        if name not in features:
            raise InputError(f"'{name}' is not a feature", field=f"params.categorical[{i}]")
    test_fraction = reader.number("test_fraction", default=0.25, at_least=0.0, below=1.0)
    seed = reader.integer("seed", default=0, at_least=0)
    hyper = _hyperparameters(reader.section("hyperparameters"), model)
    norm = KeyNormalisation.parse(reader.section("normalise"))
    dp_reader = reader.section("dp")
    dp = TrainDp.parse(dp_reader, model, features) if dp_reader is not None else None
    if dp is not None and categorical:
        raise InputError("differentially private training takes numeric features only (a one-hot encoding would "
                         "release the categories found in the data)", field="params.categorical")
    reader.done()
    return TrainParams(layout, model, task, label, features, categorical, test_fraction, seed, hyper, norm, dp)


def _available_columns(inputs: Sequence[InputSpec], layout: str, label: LabelRef) -> tuple[str, ...]:
    if layout == "vertical":
        if label.party is None:
            raise InputError("a vertical layout needs the party that holds the label", field="params.label.party")
        owner_of_column(inputs, label.party, label.column, "params.label.column")
        return tuple(c for s in inputs for c in s.columns)
    if label.party is not None and label.party not in {s.party for s in inputs}:
        raise InputError(f"party '{label.party}' has no input in this job", field="params.label.party")
    first = inputs[0]
    for spec in inputs[1:]:
        if set(spec.columns) != set(first.columns):
            raise InputError(f"a horizontal layout needs the same columns from every input: {spec.name} ships "
                             f"{', '.join(spec.columns)}, {first.name} ships {', '.join(first.columns)}",
                             field="inputs.columns")
    if label.column not in first.columns:
        raise InputError(f"label '{label.column}' is not among the shipped columns", field="params.label.column")
    return first.columns


def _hyperparameters(reader: ParamReader | None, model: str) -> Mapping[str, Any]:
    if reader is None:
        return {}
    allowed = HYPERPARAMETERS[model]
    values: dict[str, Any] = {}
    for name in list(reader.values):
        if name not in allowed:
            raise InputError(f"'{name}' is not a hyperparameter of {model} (expected one of "
                             f"{', '.join(allowed) or 'none'})", field=reader.field(str(name)))
        integer, low, exclusive = allowed[name]
        if integer:
            values[name] = reader.integer(name, at_least=int(low))
        elif exclusive:
            values[name] = reader.number(name, above=low)
        else:
            values[name] = reader.number(name, at_least=low)
    if model == "xgboost":
        boosting.check_hyperparameters(values, reader.path)
    reader.done()
    return values


def compute(inputs: Sequence[PartyInput], params: TrainParams, kinds: frozenset[str],
            rules: ReleaseRules) -> dict[str, Output]:
    # Imported here: scikit-learn and skl2onnx take a second to load, which job
    # validation and the other functions should not pay.
    from teenet.models import learning

    return learning.train_and_release(inputs, params, kinds, rules)


FUNCTION = Function(name="train", release_kinds=frozenset({"model", "metrics"}), params_type=TrainParams,
                    parse_params=parse_params, compute=compute)
