"""Owners' analysis rules: what a job may compute over one table and what may leave, checked twice.

An `AnalysisRule` is one owner's rule for one of its tables, read from the owner's policy
(`AnalysisRule.from_config`) and carried, canonical, inside the owner's signed approval
(`to_json` / `from_json`). It says which functions may run; which statistics an aggregate
may release (count, sum, mean and std by default; min, max and percentiles only when
named); which columns may be grouped by and how many at once; which columns may be join
keys; which models, with bounds on their hyperparameters; which release kinds go to
whom; the smallest k; whether DP is required, the most epsilon one job may spend and how
many rows one join key (one person) may contribute; the value bounds DP clamps to; caps
on tree depth, tree count and tree size; whether a ROC curve may be released at all.

`check_job` is the one place these rules are decided. The owner's node calls it when it
decides; the compute enclave calls it again inside `run_function` for every rule the
approvals carry (`ReleaseRules.analysis`) before it touches data, so a forged or stale
approval cannot widen what the owner wrote. The first thing a rule does not allow raises
`RuleRefused`, naming the rule (`analysis.statistics`), the job field
(`params.metrics[0].stats[1]`), what was expected and what was found.

Scope: column rules (group-by columns, join keys, value bounds) apply to the owner's own
table's columns only; functions, statistics, models and their bounds, k, DP and release
kinds apply to the whole job, since every statistic released is computed over rows that
include the owner's. Several owners' rules combine strictly in `ReleaseRules` (k is the
largest, every cap the smallest, DP required if any owner requires it, ROC only if every
owner allows it).

With no rule (approvals made before analysis rules existed) the enclave applies
`AnalysisRule.default()`: count, sum, mean and std only; any column may be grouped by (at
most 2) or be a join key; every model, trees with leaves of at least k rows and at most
`DEFAULT_MAX_TREE_NODES` nodes; ROC only at thresholds covering at least k rows; DP
optional. This module decides; it never reads data. What a release can still reveal
under these rules is written in docs/privacy.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from teenet.errors import InputError, ReleaseRefused

from teenet.models.params import ParamReader

if TYPE_CHECKING:  # only for annotations: spec imports this module
    from teenet.models.spec import InputSpec, ReleaseRequest

FUNCTIONS = frozenset({"psi", "aggregate", "train", "predict"})
RELEASE_KINDS = frozenset({"size", "ids", "sums", "aggregate", "model", "metrics", "scores"})
DEFAULT_STATISTICS = frozenset({"count", "sum", "mean", "std"})
# Statistics that equal one row's value in a group of k (an outlier's exact value), so a
# rule must name them; "percentiles" names every pNN at once.
NAMED_ONLY_STATISTICS = frozenset({"min", "max", "percentiles"})
PERCENTILE = re.compile(r"^p([1-9][0-9]?)$")
DEFAULT_MIN_K = 10
DEFAULT_MAX_GROUP_BY = 2
# A released tree ensemble costs about 39 bytes of ONNX per node (measured: a 50-tree forest
# of 63k nodes is 2.4 MB); 500k nodes (about 19 MiB) stays
# well under the 64 MiB a result message may carry.
DEFAULT_MAX_TREE_NODES = 500_000

MODELS = ("logistic_regression", "linear_regression", "ridge", "hist_gradient_boosting", "random_forest", "xgboost")
TREE_MODELS = frozenset({"hist_gradient_boosting", "random_forest", "xgboost"})
LINEAR_MODELS = frozenset({"logistic_regression", "linear_regression", "ridge"})
DP_TRAINABLE = frozenset({"logistic_regression", "linear_regression"})
# The value a hyperparameter takes when a job leaves it out (teenet's pipeline, then
# scikit-learn's defaults); None is unbounded. Bounds are checked against these too.
HYPERPARAMETER_DEFAULTS: Mapping[str, Mapping[str, float | None]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "linear_regression": {},
    "ridge": {"alpha": 1.0},
    "hist_gradient_boosting": {"max_iter": 100, "learning_rate": 0.1, "max_depth": None, "max_leaf_nodes": 31,
                               "min_samples_leaf": 20, "l2_regularization": 0.0},
    "random_forest": {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 1},
    # min_child_weight is raised to k x the largest row hessian (models/boosting.py)
    "xgboost": {"n_estimators": 100, "learning_rate": 0.3, "max_depth": 6, "min_child_weight": 1.0,
                "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0, "reg_alpha": 0.0, "gamma": 0.0,
                "max_bin": 256},
}
TREE_COUNT = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators", "xgboost": "n_estimators"}


class RuleRefused(ReleaseRefused):
    """A job asks for something an owner's analysis rule does not allow.

    `rule` names the rule (e.g. "analysis.statistics"), `field` the job field (e.g.
    "params.metrics[0].stats[1]"); `expected` and `found` say what was allowed and what
    the job asked. Never a data value and never a count below k.
    """

    def __init__(self, rule: str, field: str, message: str, *, expected: str | None = None,
                 found: str | None = None, table: str | None = None) -> None:
        self.rule = rule
        self.field = field
        self.expected = expected
        self.found = found
        self.table = table
        text = f"{rule}: field '{field}': {message}"
        if table:
            text += f" ({table})"
        if expected is not None or found is not None:
            text += f" (expected {expected if expected is not None else '-'}, found {found if found is not None else '-'})"
        super().__init__(text)


@dataclass(frozen=True)
class AnalysisRule:
    """One owner's analysis rule for one table. None means "no limit beyond the defaults".

    group_by / join_keys None: any column the table shares; releases None: every kind, to
    whomever the owner's policy lets receive it; models: model -> hyperparameter ->
    (low, high), a model absent is refused.
    """

    table: str
    party: str | None = None
    functions: frozenset[str] = FUNCTIONS
    statistics: frozenset[str] = DEFAULT_STATISTICS
    group_by: frozenset[str] | None = None
    max_group_by: int = DEFAULT_MAX_GROUP_BY
    join_keys: frozenset[str] | None = None
    models: Mapping[str, Mapping[str, tuple[float, float]]] = field(
        default_factory=lambda: {m: {} for m in MODELS})
    max_tree_depth: int | None = None
    max_trees: int | None = None
    max_tree_nodes: int = DEFAULT_MAX_TREE_NODES
    releases: Mapping[str, frozenset[str]] | None = None
    min_k: int = DEFAULT_MIN_K
    dp_required: bool = False
    max_epsilon_per_job: float | None = None
    max_rows_per_key: int | None = None
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    roc: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "functions", frozenset(self.functions))
        object.__setattr__(self, "statistics", frozenset(self.statistics))
        if self.group_by is not None:
            object.__setattr__(self, "group_by", frozenset(self.group_by))
        if self.join_keys is not None:
            object.__setattr__(self, "join_keys", frozenset(self.join_keys))
        object.__setattr__(self, "models", {str(m): {str(h): (float(b[0]), float(b[1])) for h, b in dict(hp).items()}
                                            for m, hp in dict(self.models).items()})
        if self.releases is not None:
            object.__setattr__(self, "releases", {str(k): frozenset(v) for k, v in dict(self.releases).items()})
        object.__setattr__(self, "bounds", {str(c): (float(b[0]), float(b[1])) for c, b in dict(self.bounds).items()})
        if isinstance(self.min_k, bool) or not isinstance(self.min_k, int) or self.min_k < 1:
            raise InputError("must be an integer of at least 1", field="analysis.min_k")

    @classmethod
    def default(cls, table: str = "*", party: str | None = None) -> "AnalysisRule":
        return cls(table=table, party=party)

    def for_party(self, party: str) -> "AnalysisRule":
        """The same rule bound to the party whose signed approval carried it."""
        return replace(self, party=party)

    # -- the owner's YAML ------------------------------------------------------------------
    @classmethod
    def from_config(cls, table: str, mapping: Any, where: str, party: str | None = None) -> "AnalysisRule":
        """Read `policy.analysis.<table>`; every error is an InputError naming `where.<field>`."""
        reader = ParamReader(mapping, where)
        functions = _names_within(reader, "functions", FUNCTIONS, default=FUNCTIONS)
        statistics = _statistics(reader)
        group_by = _optional_names(reader, "group_by")
        max_group_by = reader.integer("max_group_by", default=DEFAULT_MAX_GROUP_BY, at_least=0)
        join_keys = _optional_names(reader, "join_keys")
        models = _models(reader)
        max_tree_depth = reader.integer("max_tree_depth", default=None, at_least=1)
        max_trees = reader.integer("max_trees", default=None, at_least=1)
        max_tree_nodes = reader.integer("max_tree_nodes", default=DEFAULT_MAX_TREE_NODES, at_least=1)
        releases = _releases(reader)
        min_k = reader.integer("min_k", default=DEFAULT_MIN_K, at_least=1)
        dp_required = reader.flag("dp_required", False)
        max_epsilon = reader.number("max_epsilon_per_job", default=None, above=0.0)
        max_rows = reader.integer("max_rows_per_key", default=None, at_least=1)
        bounds = _bounds(reader.section("bounds"))
        roc = reader.flag("roc", True)
        reader.done()
        return cls(table=table, party=party, functions=functions, statistics=statistics, group_by=group_by,
                   max_group_by=max_group_by, join_keys=join_keys, models=models, max_tree_depth=max_tree_depth,
                   max_trees=max_trees, max_tree_nodes=max_tree_nodes, releases=releases, min_k=min_k,
                   dp_required=dp_required, max_epsilon_per_job=max_epsilon, max_rows_per_key=max_rows,
                   bounds=bounds, roc=roc)

    # -- inside a signed approval ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Canonical and JSON-safe: sorted lists, plain numbers, None for "no limit"."""
        return {
            "version": 1, "table": self.table, "party": self.party,
            "functions": sorted(self.functions), "statistics": sorted(self.statistics),
            "group_by": None if self.group_by is None else sorted(self.group_by),
            "max_group_by": self.max_group_by,
            "join_keys": None if self.join_keys is None else sorted(self.join_keys),
            "models": {m: {h: [b[0], b[1]] for h, b in sorted(hp.items())} for m, hp in sorted(self.models.items())},
            "max_tree_depth": self.max_tree_depth, "max_trees": self.max_trees, "max_tree_nodes": self.max_tree_nodes,
            "releases": None if self.releases is None else {k: sorted(v) for k, v in sorted(self.releases.items())},
            "min_k": self.min_k, "dp_required": self.dp_required, "max_epsilon_per_job": self.max_epsilon_per_job,
            "max_rows_per_key": self.max_rows_per_key,
            "bounds": {c: [b[0], b[1]] for c, b in sorted(self.bounds.items())}, "roc": self.roc,
        }

    @classmethod
    def from_json(cls, data: Any) -> "AnalysisRule":
        """The inverse of `to_json`; refuses anything that is not exactly that schema."""
        where = "approval.analysis"
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise InputError("expected an analysis rule of version 1", field=where)
        body = {k: v for k, v in data.items() if k not in ("version", "table", "party")}
        table = data.get("table")
        party = data.get("party")
        if not isinstance(table, str) or not table or not (party is None or isinstance(party, str)):
            raise InputError("expected a table name and a party", field=where)
        for name in ("group_by", "join_keys", "releases", "max_tree_depth", "max_trees", "max_epsilon_per_job",
                     "max_rows_per_key"):
            if name in body and body[name] is None:
                del body[name]
        try:
            return cls.from_config(table, body, f"{where}.{table}", party=party)
        except InputError:
            raise
        except (TypeError, ValueError, AttributeError):
            raise InputError("does not follow the analysis rule schema", field=where) from None

    # -- questions the functions ask -------------------------------------------------------
    def allows_statistic(self, stat: str) -> bool:
        return stat in self.statistics or (PERCENTILE.match(stat) is not None and "percentiles" in self.statistics)


def _names_within(reader: ParamReader, name: str, allowed: frozenset[str], *, default: frozenset[str]) -> frozenset[str]:
    values = reader.names(name, default=None)
    if values is None:
        return default
    for i, value in enumerate(values):
        if value not in allowed:
            raise InputError(f"expected one of {', '.join(sorted(allowed))}, found '{value}'",
                             field=f"{reader.field(name)}[{i}]")
    return frozenset(values)


def _statistics(reader: ParamReader) -> frozenset[str]:
    values = reader.names("statistics", default=None)
    if values is None:
        return DEFAULT_STATISTICS
    known = DEFAULT_STATISTICS | NAMED_ONLY_STATISTICS
    for i, value in enumerate(values):
        if value not in known and not PERCENTILE.match(value):
            raise InputError(f"expected one of {', '.join(sorted(known))} or pNN (NN from 1 to 99), found '{value}'",
                             field=f"{reader.field('statistics')}[{i}]")
    return frozenset(values)


def _optional_names(reader: ParamReader, name: str) -> frozenset[str] | None:
    values = reader.names(name, default=None)
    return None if values is None else frozenset(values)


def _pair(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in raw):
        raise InputError("expected [low, high], two finite numbers", field=where)
    if not raw[0] <= raw[1]:
        raise InputError(f"expected low <= high, found [{raw[0]}, {raw[1]}]", field=where)
    return float(raw[0]), float(raw[1])


def _models(reader: ParamReader) -> dict[str, dict[str, tuple[float, float]]]:
    section = reader.section("models")
    if section is None:
        return {m: {} for m in MODELS}
    models: dict[str, dict[str, tuple[float, float]]] = {}
    for model in list(section.values):
        where = section.field(str(model))
        if model not in HYPERPARAMETER_DEFAULTS:
            raise InputError(f"expected one of {', '.join(MODELS)}, found '{model}'", field=where)
        hyper = ParamReader(section.raw(model, {}) or {}, where)
        bounds = {}
        for name in list(hyper.values):
            if name not in HYPERPARAMETER_DEFAULTS[model]:
                raise InputError(f"'{name}' is not a hyperparameter of {model} (expected one of "
                                 f"{', '.join(HYPERPARAMETER_DEFAULTS[model]) or 'none'})", field=hyper.field(str(name)))
            bounds[str(name)] = _pair(hyper.raw(name), hyper.field(str(name)))
        hyper.done()
        models[str(model)] = bounds
    section.done()
    return models


def _releases(reader: ParamReader) -> dict[str, frozenset[str]] | None:
    section = reader.section("releases")
    if section is None:
        return None
    releases = {}
    for kind in list(section.values):
        if kind not in RELEASE_KINDS:
            raise InputError(f"expected one of {', '.join(sorted(RELEASE_KINDS))}, found '{kind}'",
                             field=section.field(str(kind)))
        releases[str(kind)] = frozenset(section.names(kind))
    section.done()
    return releases


def _bounds(section: ParamReader | None) -> dict[str, tuple[float, float]]:
    if section is None:
        return {}
    bounds = {str(c): _pair(section.raw(c), section.field(str(c))) for c in list(section.values)}
    section.done()
    return bounds


# -- the check ------------------------------------------------------------------------------
def check_job(rule: AnalysisRule, *, party: str, function: str, params: Mapping[str, Any] | None,
              inputs: Sequence["InputSpec"], releases: Sequence["ReleaseRequest"]) -> None:
    """Raise `RuleRefused` for the first thing `party`'s `rule` does not allow in this job.

    `params` is the job's raw params mapping (already validated by the function's own
    parser, or about to be: malformed values are left to it); `inputs` every input of the
    job; `releases` every release request. Checks run in a fixed order: function, release
    kinds and recipients, join keys, then the function's own rules.
    """
    params = params if isinstance(params, Mapping) else {}
    table = "the default rule" if rule.table == "*" else f"rule of {party}.{rule.table}"
    own = [i for i, s in enumerate(inputs) if s.party == party and (rule.table == "*" or s.table == rule.table)]
    if function not in rule.functions:
        raise RuleRefused("analysis.functions", "function", f"'{function}' is not allowed",
                          expected=_listed(rule.functions), found=function, table=table)
    for i, request in enumerate(releases):
        where = f"release[{i}]"
        if rule.releases is None:
            continue
        if request.kind not in rule.releases:
            raise RuleRefused("analysis.releases", f"{where}.kind", f"release kind '{request.kind}' is not allowed",
                              expected=_listed(rule.releases), found=request.kind, table=table)
        outside = [r for r in request.recipients if r not in rule.releases[request.kind]]
        if outside:
            raise RuleRefused("analysis.releases", f"{where}.to", f"'{request.kind}' may not go to "
                              f"{', '.join(outside)}", expected=_listed(rule.releases[request.kind]),
                              found=", ".join(request.recipients), table=table)
    joining = function in ("psi", "predict") or len(inputs) > 1
    if joining and rule.join_keys is not None:
        for i in own:
            for j, key in enumerate(inputs[i].keys):
                if key not in rule.join_keys:
                    raise RuleRefused("analysis.join_keys", f"inputs[{i}].keys[{j}]",
                                      f"column '{key}' may not be a join key", expected=_listed(rule.join_keys),
                                      found=key, table=table)
    own_columns = {c for i in own for c in inputs[i].columns}
    if function == "aggregate":
        _check_aggregate(rule, params, own_columns, table)
    elif function == "psi":
        _check_psi(rule, params, releases, party, table)
    elif function == "train":
        _check_train(rule, params, releases, table)


def _listed(values: Any) -> str:
    return ", ".join(sorted(values)) or "nothing"


def _check_aggregate(rule: AnalysisRule, params: Mapping[str, Any], own_columns: set[str], table: str) -> None:
    group_by = params.get("group_by") or []
    if isinstance(group_by, (list, tuple)):
        if len(group_by) > rule.max_group_by:
            raise RuleRefused("analysis.max_group_by", "params.group_by", "groups by too many columns at once",
                              expected=f"at most {rule.max_group_by}", found=str(len(group_by)), table=table)
        if rule.group_by is not None:
            for i, column in enumerate(group_by):
                if column in own_columns and column not in rule.group_by:
                    raise RuleRefused("analysis.group_by", f"params.group_by[{i}]",
                                      f"column '{column}' may not be grouped by", expected=_listed(rule.group_by),
                                      found=str(column), table=table)
    metrics = params.get("metrics") or []
    for i, metric in enumerate(metrics if isinstance(metrics, (list, tuple)) else []):
        stats = metric.get("stats") if isinstance(metric, Mapping) else None
        for j, stat in enumerate(stats if isinstance(stats, (list, tuple)) else []):
            if isinstance(stat, str) and not rule.allows_statistic(stat):
                raise RuleRefused("analysis.statistics", f"params.metrics[{i}].stats[{j}]",
                                  f"statistic '{stat}' is not allowed", expected=_listed(rule.statistics),
                                  found=stat, table=table)
    _check_dp(rule, params.get("dp"), table, mechanism_exists=True)


def _check_dp(rule: AnalysisRule, dp: Any, table: str, *, mechanism_exists: bool, field: str = "params.dp") -> None:
    if dp is None:
        if rule.dp_required:
            raise RuleRefused("analysis.dp_required", field,
                              "the owner requires differential privacy" + ("" if mechanism_exists else
                                                                           ", which this release does not offer"),
                              expected="a dp section", found="none", table=table)
        return
    if not isinstance(dp, Mapping):
        return
    epsilon = dp.get("epsilon")
    if rule.max_epsilon_per_job is not None and isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) \
            and epsilon > rule.max_epsilon_per_job:
        raise RuleRefused("analysis.max_epsilon_per_job", f"{field}.epsilon", "spends more privacy budget than "
                          "one job may", expected=f"at most {rule.max_epsilon_per_job:g}", found=f"{epsilon:g}",
                          table=table)
    rows = dp.get("max_rows_per_key")
    if rule.max_rows_per_key is not None and isinstance(rows, int) and not isinstance(rows, bool) \
            and rows > rule.max_rows_per_key:
        raise RuleRefused("analysis.max_rows_per_key", f"{field}.max_rows_per_key", "lets one key contribute more "
                          "rows than the owner allows", expected=f"at most {rule.max_rows_per_key}", found=str(rows),
                          table=table)


def _check_psi(rule: AnalysisRule, params: Mapping[str, Any], releases: Sequence["ReleaseRequest"], party: str,
               table: str) -> None:
    kinds = {r.kind for r in releases}
    if "sums" in kinds and not rule.allows_statistic("sum"):
        raise RuleRefused("analysis.statistics", "params.payload", "sums over the intersection are not allowed",
                          expected=_listed(rule.statistics), found="sum", table=table)
    if rule.dp_required and kinds & {"size", "ids", "sums"}:
        # No DP mechanism for intersections here: an exact size or id list is not DP.
        raise RuleRefused("analysis.dp_required", "release", "the owner requires differential privacy, which psi "
                          "releases do not offer", expected="a release with a DP mechanism",
                          found=", ".join(sorted(kinds)), table=table)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_train(rule: AnalysisRule, params: Mapping[str, Any], releases: Sequence["ReleaseRequest"],
                 table: str) -> None:
    model = params.get("model")
    if not isinstance(model, str) or model not in HYPERPARAMETER_DEFAULTS:
        return  # the function's parser names the field
    if model not in rule.models:
        raise RuleRefused("analysis.models", "params.model", f"model '{model}' is not allowed",
                          expected=_listed(rule.models), found=model, table=table)
    hyper = params.get("hyperparameters") or {}
    hyper = hyper if isinstance(hyper, Mapping) else {}
    for name, (low, high) in sorted(rule.models[model].items()):
        given = name in hyper and hyper[name] is not None
        value = _number(hyper[name]) if given else _effective_default(rule, model, name)
        where = f"params.hyperparameters.{name}"
        shown = "unbounded (not set)" if value is None else f"{value:g}" + ("" if given else " (the default)")
        if value is None or not low <= value <= high:
            raise RuleRefused("analysis.models", where, f"{model} {name} is outside the owner's bounds",
                              expected=f"[{low:g}, {high:g}]", found=shown, table=table)
    if model in TREE_MODELS:
        if rule.dp_required:
            raise RuleRefused("analysis.dp_required", "params.model", f"the owner requires differential privacy, "
                              f"which {model} does not offer here", expected="a linear model with params.dp",
                              found=model, table=table)
        count_name = TREE_COUNT[model]
        trees = _number(hyper.get(count_name))
        if rule.max_trees is not None and trees is not None and trees > rule.max_trees:
            raise RuleRefused("analysis.max_trees", f"params.hyperparameters.{count_name}", "asks for more trees "
                              "than the owner allows", expected=f"at most {rule.max_trees}", found=f"{trees:g}",
                              table=table)
        depth = _number(hyper.get("max_depth"))
        if rule.max_tree_depth is not None and depth is not None and depth > rule.max_tree_depth:
            raise RuleRefused("analysis.max_tree_depth", "params.hyperparameters.max_depth", "asks for deeper trees "
                              "than the owner allows", expected=f"at most {rule.max_tree_depth}", found=f"{depth:g}",
                              table=table)
        settings = tree_settings(model, hyper, max_depth=rule.max_tree_depth, max_trees=rule.max_trees, k=rule.min_k)
        nodes = settings.nodes_bound(None)
        if nodes is not None and nodes > rule.max_tree_nodes:
            raise RuleRefused("analysis.max_tree_nodes", "params.hyperparameters", "the model could grow larger "
                              "than a release may be (trees x nodes per tree)", expected=f"at most "
                              f"{rule.max_tree_nodes} nodes; {settings.fitting_hint(rule.max_tree_nodes)}",
                              found=f"up to {nodes} nodes", table=table)
    else:
        if rule.dp_required and model not in DP_TRAINABLE:
            raise RuleRefused("analysis.dp_required", "params.model", f"the owner requires differential privacy, "
                              f"which {model} does not offer here", expected=_listed(DP_TRAINABLE), found=model,
                              table=table)
        _check_dp(rule, params.get("dp"), table, mechanism_exists=True)
    kinds = [r.kind for r in releases]
    if (rule.dp_required or params.get("dp") is not None) and "metrics" in kinds:
        # Metrics are exact statistics of the held-out rows: no DP mechanism covers them.
        raise RuleRefused("analysis.dp_required", f"release[{kinds.index('metrics')}].kind", "a DP-trained model "
                          "is released without exact metrics", expected="model only", found="metrics", table=table)


def _effective_default(rule: AnalysisRule, model: str, name: str) -> float | None:
    """What a hyperparameter left out of the spec becomes: the pipeline's default, or for
    trees the rule's cap on depth and count (as `tree_settings` applies them) and k for leaves."""
    value = HYPERPARAMETER_DEFAULTS[model].get(name)
    if model in TREE_MODELS:
        if name == "max_depth" and rule.max_tree_depth is not None:
            return float(rule.max_tree_depth)
        if name == TREE_COUNT[model] and rule.max_trees is not None and value is not None:
            return float(min(value, rule.max_trees))
        if name == "min_samples_leaf" and value is not None:
            return float(max(value, rule.min_k))
    return value


# -- tree settings, one place for the enclave and the owner's node --------------------------
@dataclass(frozen=True)
class TreeSettings:
    """The effective tree hyperparameters: leaves of at least k rows, caps applied."""

    model: str
    trees: int
    max_depth: int | None
    min_samples_leaf: int
    max_leaf_nodes: int | None

    def nodes_bound(self, training_rows: int | None, classes: int = 1) -> int | None:
        """An upper bound on the released nodes, or None when nothing bounds a tree yet."""
        per_tree: list[int] = []
        if self.max_depth is not None:
            per_tree.append(2 ** (self.max_depth + 1) - 1)
        if self.max_leaf_nodes is not None:
            per_tree.append(2 * self.max_leaf_nodes - 1)
        if training_rows is not None:
            per_tree.append(2 * max(1, training_rows // self.min_samples_leaf) - 1)
        if not per_tree:
            return None
        # hist_gradient_boosting grows one tree per class per iteration beyond two classes
        copies = classes if self.model == "hist_gradient_boosting" and classes > 2 else 1
        return self.trees * copies * min(per_tree)

    def fitting_hint(self, limit: int) -> str:
        depth = 1
        while self.trees * (2 ** (depth + 2) - 1) <= limit:
            depth += 1
        return f"e.g. {TREE_COUNT[self.model]} {self.trees} with max_depth {depth}"

    def hyperparameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The job's hyperparameters with the enforced values in place."""
        out = dict(given)
        out[TREE_COUNT[self.model]] = self.trees
        out["min_samples_leaf"] = self.min_samples_leaf
        if self.max_depth is not None:
            out["max_depth"] = self.max_depth
        return out


def tree_settings(model: str, hyper: Mapping[str, Any], *, max_depth: int | None, max_trees: int | None,
                  k: int) -> TreeSettings:
    """min_samples_leaf raised to k whatever the job says; depth and count capped by the rule."""
    defaults = HYPERPARAMETER_DEFAULTS[model]
    trees = int(_number(hyper.get(TREE_COUNT[model])) or defaults[TREE_COUNT[model]])
    if max_trees is not None:
        trees = min(trees, max_trees)
    depth = _number(hyper.get("max_depth"))
    depth_value = None if depth is None else int(depth)
    if max_depth is not None:
        depth_value = max_depth if depth_value is None else min(depth_value, max_depth)
    leaf = int(_number(hyper.get("min_samples_leaf")) or defaults.get("min_samples_leaf", 1))
    leaves = _number(hyper.get("max_leaf_nodes")) if model == "hist_gradient_boosting" else None
    if model == "hist_gradient_boosting" and leaves is None:
        leaves = defaults["max_leaf_nodes"]
    return TreeSettings(model, trees, depth_value, max(leaf, k), None if leaves is None else int(leaves))


# -- what a job spends -----------------------------------------------------------------------
def epsilon_cost(function: str, params: Mapping[str, Any] | None) -> tuple[float, float]:
    """The (epsilon, delta) one run of the job spends under sequential composition; (0, 0)
    without DP. Raises InputError naming the field for a malformed dp section."""
    if not isinstance(params, Mapping) or function not in ("aggregate", "train"):
        return 0.0, 0.0
    dp = params.get("dp")
    if dp is None:
        return 0.0, 0.0
    reader = ParamReader(dp, "params.dp")
    epsilon = reader.number("epsilon", above=0.0)
    delta = reader.number("delta", default=0.0, at_least=0.0, below=1.0)
    return float(epsilon), float(delta)
