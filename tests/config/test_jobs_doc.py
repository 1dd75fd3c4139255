"""docs/jobs.md and configs/job.schema.json say what teenet.models accepts.

The schema's `$defs.function_*` lists each function's params (names, types, defaults,
choices, required) and release kinds; the models read params in code (ParamReader). These
tests hold the two together: every declared name is accepted and every other refused, each
documented default is the one the code applies, each choice is accepted and a value
outside them refused, a required field missing is refused, the release kinds are the
function's own, and docs/jobs.md is the generator's output of the schema.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from teenet import jobspec
from teenet.errors import InputError, TeenetError
from teenet.models import FUNCTIONS, InputSpec, ReleaseRequest, validate_job

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "configs" / "job.schema.json").read_text())
DEFS = SCHEMA["$defs"]

# Per function: inputs, the smallest valid params, and a valid sample of each param the
# schema gives no default for.
CASES = {
    "psi": ([InputSpec("bank", "customers", ("id",), ("income",)), InputSpec("telco", "usage", ("id",), ())],
            {}, {"normalise": {"trim": True}}),
    "aggregate": ([InputSpec("bank", "customers", ("id",), ("region", "income"))],
                  {"metrics": [{"column": "income", "stats": ["mean"]}]},
                  {"normalise": {"type": "int"}, "dp": {"epsilon": 1.0, "bounds": {"income": [0, 100]}}}),
    "train": ([InputSpec("bank", "customers", ("id",), ("age", "defaulted")),
               InputSpec("telco", "usage", ("id",), ("minutes",))],
              {"model": "random_forest", "label": {"party": "bank", "column": "defaulted"}},
              {"normalise": {"case": "lower"}}),
    "predict": ([InputSpec("bank", "customers", ("id",), ("age",))],
                {"model": {"job": "a" * 64, "from": "bank"}, "ids_from": "bank"},
                {"normalise": {"trim": True}}),
}
# A choice that needs inputs of another shape: horizontal stacks the same columns.
CHOICE_INPUTS = {("train", "layout", "horizontal"): [InputSpec("bank", "a", ("id",), ("age", "defaulted")),
                                                     InputSpec("telco", "b", ("id",), ("age", "defaulted"))]}
# Placed by the compute node, never written in a spec (bytes are not JSON): not documented.
INTERNAL = {"predict": {"model_onnx"}}


def function_def(name: str) -> dict:
    return DEFS[f"function_{name}"]


def parse(function: str, params: dict, inputs=None):
    inputs = inputs or CASES[function][0]
    kinds = sorted(function_def(function)["x-releases"])[:1]
    fn = FUNCTIONS[function]
    return fn.parse_params(params, inputs, frozenset(kinds))


def accepted(function: str, params: dict, inputs=None) -> bool:
    try:
        parse(function, params, inputs)
    except TeenetError:
        return False
    return True


def test_the_schema_documents_every_function_and_its_own_release_kinds():
    assert sorted(k.removeprefix("function_") for k in DEFS if k.startswith("function_")) == sorted(FUNCTIONS)
    assert sorted(FUNCTIONS) == sorted(jobspec.FUNCTIONS)
    for name, fn in FUNCTIONS.items():
        assert set(function_def(name)["x-releases"]) == set(fn.release_kinds), name
    kinds = {rule["if"]["properties"]["function"]["const"]:
             rule["then"]["properties"]["release"]["items"]["properties"]["kind"]["enum"] for rule in SCHEMA["allOf"]}
    assert {k: set(v) for k, v in kinds.items()} == {n: set(f.release_kinds) for n, f in FUNCTIONS.items()}


@pytest.mark.parametrize("function", sorted(CASES))
def test_declared_params_are_accepted_and_no_others(function):
    _, base, samples = CASES[function]
    props = function_def(function)["params"]["properties"]
    assert accepted(function, base), "the minimal params of this test must be valid"
    for name, node in props.items():
        value = samples.get(name, node.get("default", base.get(name)))
        assert accepted(function, {**base, name: value}), (function, name, value)
    assert not accepted(function, {**base, "no_such_param": 1})
    for internal in INTERNAL.get(function, ()):
        assert internal not in props


@pytest.mark.parametrize("function", sorted(CASES))
def test_documented_defaults_are_the_ones_the_code_applies(function):
    _, base, _ = CASES[function]
    omitted = parse(function, base)
    for name, node in function_def(function)["params"]["properties"].items():
        if "default" in node and name not in base:
            assert parse(function, {**base, name: copy.deepcopy(node["default"])}) == omitted, (function, name)
    norm = DEFS["normalise"]["properties"]
    defaults = {k: v["default"] for k, v in norm.items()}
    assert parse(function, {**base, "normalise": defaults}) == parse(function, {**base, "normalise": {}})


@pytest.mark.parametrize("function", sorted(CASES))
def test_choices_and_required_fields_agree(function):
    _, base, _ = CASES[function]
    props = function_def(function)["params"]["properties"]
    for name, node in props.items():
        for choice in node.get("enum", []):
            if choice is not None:
                assert accepted(function, {**base, name: choice}, CHOICE_INPUTS.get((function, name, choice))), \
                    (function, name, choice)
        if "enum" in node:
            assert not accepted(function, {**base, name: "not-a-choice"}), (function, name)
    for name in function_def(function)["params"].get("required", []):
        assert not accepted(function, {k: v for k, v in base.items() if k != name}), (function, name)
    for name, node in DEFS["normalise"]["properties"].items():
        for choice in node.get("enum", []):
            assert accepted(function, {**base, "normalise": {name: choice}})
    assert not accepted(function, {**base, "normalise": {"type": "float"}})


def test_an_undeclared_release_kind_is_refused_by_both():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev dependency) checks the schema")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    spec = {"name": "x", "function": "psi", "compute": "compute-1",
            "inputs": [{"party": "bank", "table": "t", "key": "id"}, {"party": "telco", "table": "u", "key": "id"}],
            "release": [{"kind": "size", "to": ["analyst"]}]}
    assert validator.is_valid(spec)
    bad = {**spec, "release": [{"kind": "model", "to": ["analyst"]}]}
    assert not validator.is_valid(bad)
    with pytest.raises(TeenetError):
        validate_job("psi", CASES["psi"][0], {}, [ReleaseRequest("model", ("analyst",))])
    assert not validator.is_valid({**spec, "params": {"no_such_param": 1}})
    with pytest.raises(InputError):
        validate_job("psi", CASES["psi"][0], {"no_such_param": 1}, [ReleaseRequest("size", ("analyst",))])


def test_docs_jobs_md_is_the_generators_output():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_jobs_doc.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "jobs.md").read_text()
    for name, fn in FUNCTIONS.items():
        assert f"## {name}" in text
        for kind in fn.release_kinds:
            assert f"| `{kind}` |" in text
