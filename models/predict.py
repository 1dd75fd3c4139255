"""`predict`: score joined rows with a released ONNX model; scores go to the ids' owner only.

Params:
  model: a reference to a model released earlier (resolved by the compute node), or
  model_onnx: that model's ONNX bytes, which the compute node places here before running.
  ids_from: party   the party that owns the scored ids and the only allowed recipient.
  normalise: {trim, case, type}   key normalisation for the join (see `psi`).

The model names the columns it needs (one ONNX input per feature); every input table is
inner-joined on its keys (one row per key), so only ids present in every table are
scored, in ascending key order, with the same feature encoding as in training: every
scored row carries a key the ids_from party itself shipped, and the scores go to that
party only. Fewer than k scored ids (the owners' strictest k) are refused.

Release kind "scores": an Arrow IPC stream with the ids_from party's key columns, then
`score` (the probability of the positive class, or the prediction of a regressor; one
`score_<class>` per class for more than two classes) and, for classifiers, `label`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from teenet.errors import InputError

from teenet.models import release
from teenet.models.features import FeatureLayout, feature_frame, onnx_feeds
from teenet.models.params import ParamReader
from teenet.models.payloads import arrow_output
from teenet.models.spec import Function, InputSpec, Output, PartyInput, ReleaseRules
from teenet.models.tables import (KeyNormalisation, check_specs, inner_join, key_names, sort_by_keys,
                                  with_key_names)


@dataclass(frozen=True)
class PredictParams:
    model_onnx: bytes | None
    model_reference: Any
    ids_from: str
    normalise: KeyNormalisation


def parse_params(params: Mapping[str, Any], inputs: Sequence[InputSpec], kinds: frozenset[str]) -> PredictParams:
    check_specs(inputs, need_keys=True)
    reader = ParamReader(params)
    reference = reader.raw("model", None)
    model_onnx = reader.raw("model_onnx", None)
    if reference is None and model_onnx is None:
        raise InputError("name the released model to score with", field="params.model")
    if model_onnx is not None and not isinstance(model_onnx, (bytes, bytearray)):
        raise InputError("expected the model's ONNX bytes", field="params.model_onnx")
    ids_from = reader.text("ids_from")
    if ids_from not in {s.party for s in inputs}:
        raise InputError(f"party '{ids_from}' has no input in this job (expected one of "
                         f"{', '.join(sorted({s.party for s in inputs}))})", field="params.ids_from")
    norm = KeyNormalisation.parse(reader.section("normalise"))
    reader.done()
    return PredictParams(bytes(model_onnx) if model_onnx is not None else None, reference, ids_from, norm)


def compute(inputs: Sequence[PartyInput], params: PredictParams, kinds: frozenset[str],
            rules: ReleaseRules) -> dict[str, Output]:
    # Imported here: onnxruntime is only needed by jobs that score.
    from teenet.models.onnx_models import load_model

    if params.model_onnx is None:
        raise InputError("the model's ONNX bytes were not supplied by the compute node", field="params.model_onnx")
    model = load_model(params.model_onnx)
    shipped = {c: i for i, inp in enumerate(inputs) for c in inp.columns}
    missing = [name for name in model.inputs if name not in shipped]
    if missing:
        raise InputError(f"the model needs column(s) {', '.join(missing)}, which no input ships",
                         field="params.model")
    columns = [[c for c in inp.columns if c in model.inputs] for inp in inputs]
    arity = len(inputs[0].keys)
    table = sort_by_keys(inner_join(inputs, params.normalise, unique=True, columns=columns), arity)
    scored = score_rows(model, table)
    # Scoring a tiny probe would test ids' membership in the other tables, like a PSI size.
    release.require_group_size(table.num_rows, rules, "the set of scored rows", unit="ids")
    owner = next(inp for inp in inputs if inp.party == params.ids_from)
    ids = with_key_names(table.select(key_names(arity)), owner.keys)
    out = ids
    for name, values in scored.items():
        out = out.append_column(name, values)
    return {"scores": arrow_output(out, {"rows": out.num_rows, "columns": list(out.column_names),
                                         "owner": params.ids_from})}


def score_rows(model: Any, table: pa.Table) -> dict[str, pa.Array]:
    """The model's score columns for the joined rows of `table`, in its row order (a single
    node's whole join, or one cluster partition's)."""
    features = tuple(model.inputs)
    layout = FeatureLayout(features, tuple(n for n in features if model.inputs[n] == "numeric"),
                           tuple(n for n in features if model.inputs[n] == "categorical"))
    feeds = {model.input_names[name]: tensor
             for name, tensor in onnx_feeds(feature_frame(table, layout), layout,
                                            model.double_inputs).items()}
    try:
        results = dict(zip(model.outputs, model.session.run(None, feeds)))
    except Exception as exc:  # onnxruntime raises its own error types
        raise InputError(f"the model could not score these rows ({type(exc).__name__})",
                         field="params.model") from None
    return _score_columns(model, results)


def _score_columns(model: Any, results: Mapping[str, np.ndarray]) -> dict[str, pa.Array]:
    if not model.is_classifier:
        return {"score": pa.array(np.asarray(results["variable"], dtype=np.float64).reshape(-1))}
    proba = np.asarray(results["probabilities"], dtype=np.float64)
    labels = np.asarray(results["label"]).reshape(-1)
    classes = model.metadata.get("classes") or list(range(proba.shape[1]))
    columns: dict[str, pa.Array] = {}
    if proba.shape[1] == 2:
        columns["score"] = pa.array(proba[:, 1])
    else:
        for j, cls in enumerate(classes):
            columns[f"score_{cls}"] = pa.array(proba[:, j])
    columns["label"] = pa.array(labels.tolist())
    return columns


FUNCTION = Function(name="predict", release_kinds=frozenset({"scores"}), params_type=PredictParams,
                    parse_params=parse_params, compute=compute, scores_owner=lambda p: p.ids_from)
