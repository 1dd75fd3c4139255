"""Job specs: the example jobs parse; every malformed or hostile spec gets one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teenet.errors import InputError
from teenet.jobspec import (MAX_PARAMS_DEPTH, InputRef, JobSpec, ReleaseRef, check_against_consortium,
                            parse_job_spec)

from config_sandbox import CONFIGS, Sandbox

GOOD = """\
name: default-risk
function: train
compute: compute-1
inputs:
  - {party: bank,  table: customers, key: customer_id, columns: [age, income, defaulted]}
  - {party: telco, table: usage,     key: customer_id, columns: [minutes, late_payments]}
params: {layout: vertical, model: logistic_regression,
         label: {party: bank, column: defaulted}, test_fraction: 0.2, seed: 7}
release:
  - {kind: model,   to: [analyst, bank]}
  - {kind: metrics, to: [analyst, bank, telco]}
"""


def refused(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_job_spec(text, source="job.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("job.yaml:"), message
    return info.value


def with_line(line_no: int, new: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


def test_good_spec_parses_to_frozen_dataclasses() -> None:
    spec = parse_job_spec(GOOD, source="job.yaml")
    assert spec.name == "default-risk" and spec.function == "train" and spec.compute == "compute-1"
    assert spec.inputs[0] == InputRef("bank", "customers", ("customer_id",), ("age", "income", "defaulted"))
    assert spec.release == (ReleaseRef("model", ("analyst", "bank")), ReleaseRef("metrics", ("analyst", "bank", "telco")))
    assert spec.params["label"]["column"] == "defaulted" and spec.params["test_fraction"] == 0.2
    assert spec.parties == ("bank", "telco") and spec.recipients == ("analyst", "bank", "telco")
    assert spec.analyst is None and spec.nonce is None
    with pytest.raises(TypeError):
        spec.params["seed"] = 8  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("job", ["default-risk.yaml", "psi-overlap.yaml", "spend-by-region.yaml"])
def test_example_jobs_parse_and_match_the_example_consortium(job: str, sandbox: Sandbox) -> None:
    spec = parse_job_spec(CONFIGS / "jobs" / job)
    assert spec.name == job.removesuffix(".yaml")
    check_against_consortium(spec, sandbox.consortium)


def test_multi_column_key_is_stored_as_keys() -> None:
    spec = parse_job_spec(with_line(5, "  - {party: bank, table: customers, key: [customer_id, branch], columns: [age]}"))
    assert spec.inputs[0].keys == ("customer_id", "branch")


def test_params_optional_and_columns_optional() -> None:
    text = "name: p\nfunction: psi\ncompute: c\ninputs:\n  - {party: a, table: t, key: id}\nrelease:\n  - {kind: size, to: [a]}\n"
    spec = parse_job_spec(text)
    assert dict(spec.params) == {} and spec.inputs[0].columns == ()


@pytest.mark.parametrize("line_no, new, field, words", [
    (2, "function: mine_bitcoin", "function", "is not one of: psi, aggregate, train, predict"),
    (3, "compute: Compute_1", "compute", "is not a member name"),
    (5, "  - {party: bank, table: ../etc/passwd, key: customer_id}", "inputs[0].table", "'../etc/passwd' is not a table name"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: [age, /etc/shadow]}", "inputs[0].columns[1]", "is not a column name"),
    (5, "  - {party: bank, table: customers, key: customer_id, colums: [age]}", "inputs[0].colums", "unknown field 'colums'; allowed fields: columns, key, party, table"),
    (5, "  - {table: customers, key: customer_id}", "inputs[0].party", "missing required field 'party'"),
    (5, "  - {party: bank, table: customers, key: 42}", "inputs[0].key", "expected a column name or a list of column names, found number 42"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: age}", "inputs[0].columns", "expected a list of"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: [age, age]}", "inputs[0].columns[1]", "listed twice"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: [customer_id]}", "inputs[0].columns", "listed again in columns"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: [no]}", "inputs[0].columns[0]", "quote it"),
    (6, "  - {party: bank,  table: customers, key: customer_id}", "inputs[1].table", "bank/customers is already an input (inputs[0])"),
    (10, "  - {kind: model, to: []}", "release[0].to", "at least 1 item"),
    (10, "  - {kind: model, to: [analyst, ANALYST]}", "release[0].to[1]", "is not a member name"),
    (11, "  - {kind: model, to: [telco]}", "release[1].kind", "release kind 'model' is already listed"),
    (1, "name: ''", "name", "found an empty string"),
    (1, "nmae: default-risk", "nmae", "unknown field 'nmae'; allowed fields: compute, function, inputs, name, params, release"),
])
def test_malformed_spec_names_line_and_field(line_no: int, new: str, field: str, words: str) -> None:
    error = refused(with_line(line_no, new))
    assert error.field == field, str(error)
    assert error.line == line_no, str(error)
    assert words in str(error), str(error)


def test_missing_top_level_field_names_it() -> None:
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith("compute:")) + "\n"
    error = refused(text)
    assert error.field == "compute" and "missing required field 'compute'" in str(error)


def test_empty_inputs_and_release_refused() -> None:
    error = refused("name: a\nfunction: psi\ncompute: c\ninputs: []\nrelease: [{kind: size, to: [a]}]\n")
    assert error.field == "inputs" and error.line == 4 and "at least 1 item" in str(error)
    error = refused("name: a\nfunction: psi\ncompute: c\ninputs: [{party: a, table: t, key: k}]\nrelease: []\n")
    assert error.field == "release" and error.line == 5


def test_spec_must_be_a_mapping() -> None:
    error = refused("- just\n- a list\n")
    assert "expected a job spec mapping, found a list" in str(error)


def test_alias_bomb_in_spec_refused_by_loader() -> None:
    error = refused(GOOD.replace("params: {layout", "x: &x [1, 2]\nparams: {layout"))
    assert "anchors and aliases are not allowed" in str(error)


def test_duplicate_key_in_spec_refused() -> None:
    error = refused(GOOD + "function: psi\n")
    assert error.line == 12 and "first at line 2" in str(error)


def test_deeply_nested_params_refused_by_spec_limit() -> None:
    nested = "{a: " * (MAX_PARAMS_DEPTH + 1) + "1" + "}" * (MAX_PARAMS_DEPTH + 1)
    error = refused(with_line(7, f"params: {{x: 1, deep: {nested}}}").replace(
        "         label: {party: bank, column: defaulted}, test_fraction: 0.2, seed: 7}\n", ""))
    assert f"deeper than {MAX_PARAMS_DEPTH}" in str(error) and error.line == 7
    assert error.field is not None and error.field.startswith("params.deep.a")


def test_deeply_nested_params_refused_by_loader() -> None:
    error = refused("name: a\nparams: " + "[" * 40 + "]" * 40 + "\n")
    assert "deeper than 32" in str(error) and error.line == 2


def test_nan_in_params_refused() -> None:
    error = refused(with_line(8, "         label: {party: bank, column: defaulted}, test_fraction: .nan, seed: 7}"))
    assert error.field == "params.test_fraction" and error.line == 8 and "finite" in str(error)


def test_huge_params_refused() -> None:
    blob = "x" * 70000
    error = refused(with_line(7, f"params: {{blob: '{blob}'}}").replace(
        "         label: {party: bank, column: defaulted}, test_fraction: 0.2, seed: 7}\n", ""))
    assert error.field == "params" and "larger than" in str(error)


def test_too_many_inputs_refused() -> None:
    inputs = "".join(f"  - {{party: p{i}, table: t, key: k}}\n" for i in range(17))
    error = refused(f"name: a\nfunction: psi\ncompute: c\ninputs:\n{inputs}release: [{{kind: size, to: [a]}}]\n")
    assert error.field == "inputs" and "at most 16" in str(error)


def test_huge_document_refused() -> None:
    assert "1 MiB" in str(refused(GOOD + "#" + "x" * (1024 * 1024) + "\n"))


def test_bad_yaml_syntax_is_one_line() -> None:
    error = refused(GOOD.replace("release:\n", "release: [\n"))
    assert "invalid YAML" in str(error) and error.line is not None


def test_file_path_source_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(with_line(2, "function: sql"))
    with pytest.raises(InputError) as info:
        parse_job_spec(path)
    assert str(info.value).startswith(f"{path}:2, field 'function'")


# --- against the consortium -------------------------------------------------------------

@pytest.mark.parametrize("line_no, new, field, words", [
    (5, "  - {party: hospital, table: customers, key: customer_id}", "inputs[0].party", "'hospital' is not a member"),
    (5, "  - {party: analyst, table: customers, key: customer_id}", "inputs[0].party", "is a analyst member, not a data member"),
    (5, "  - {party: bank, table: salaries, key: customer_id}", "inputs[0].table", "table 'salaries' is not in bank's published catalog"),
    (5, "  - {party: bank, table: customers, key: customer_id, columns: [age, ssn]}", "inputs[0].columns[1]", "column 'ssn' is not in bank/customers"),
    (5, "  - {party: bank, table: customers, key: [customer_id, iban]}", "inputs[0].key[1]", "key column 'iban' is not in bank/customers"),
    (5, "  - {party: bank, table: customers, key: iban}", "inputs[0].key", "key column 'iban' is not in bank/customers"),
    (3, "compute: bank", "compute", "'bank' is not a compute member"),
    (3, "compute: compute-9", "compute", "not a member"),
    (11, "  - {kind: metrics, to: [analyst, eve]}", "release[1].to[1]", "recipient 'eve' is not a member"),
])
def test_consortium_check_names_line_and_field(line_no: int, new: str, field: str, words: str,
                                               sandbox: Sandbox) -> None:
    spec = parse_job_spec(with_line(line_no, new), source="job.yaml")
    with pytest.raises(InputError) as info:
        check_against_consortium(spec, sandbox.consortium)
    assert info.value.field == field and info.value.line == line_no, str(info.value)
    assert words in str(info.value)


def test_consortium_check_without_document_still_names_field(sandbox: Sandbox) -> None:
    spec = JobSpec(name="x", function="psi", compute="compute-1",
                   inputs=(InputRef("bank", "customers", ("customer_id",), ()),),
                   params={}, release=(ReleaseRef("size", ("mallory",)),))
    with pytest.raises(InputError) as info:
        check_against_consortium(spec, sandbox.consortium, source="built")
    assert str(info.value).startswith("built, field 'release[0].to[0]'")


@pytest.mark.parametrize("job", ["default-risk.yaml", "psi-overlap.yaml", "spend-by-region.yaml"])
def test_example_jobs_are_valid_for_their_function(job: str) -> None:
    # Per-function params and release kinds are teenet.models' rule; the examples must pass it.
    api = pytest.importorskip("teenet.models.api", reason="teenet.models is not installed")
    from teenet.jobspec import thaw_json
    from teenet.models.spec import InputSpec, ReleaseRequest
    spec = parse_job_spec(CONFIGS / "jobs" / job)
    parsed = api.validate_job(spec.function, [InputSpec(i.party, i.table, i.keys, i.columns) for i in spec.inputs],
                              thaw_json(spec.params), [ReleaseRequest(r.kind, r.to) for r in spec.release])
    assert parsed is not None


def test_control_characters_in_names_stay_on_one_line() -> None:
    error = refused('name: x\n"bad\\nfield": 1\n')
    assert "bad\\nfield" in str(error) and error.line == 2
    error = refused(with_line(5, '  - {party: bank, table: "cust\\u2028omers\\r", key: customer_id}'))
    assert error.field == "inputs[0].table"


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(GOOD) - 1),
       junk=st.text(alphabet=st.sampled_from(list("{}[]:&*!|>'\"%@`#,-? \n\t\\x0aZ")), min_size=1, max_size=4))
def test_mutated_specs_give_input_error_or_parse(position: int, junk: str) -> None:
    # Whatever the edit, the parser either accepts or gives one InputError line, never a traceback.
    text = GOOD[:position] + junk + GOOD[position + 1:]
    try:
        parse_job_spec(text, source="job.yaml")
    except InputError as error:
        assert "\n" not in str(error) and str(error).startswith("job.yaml")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_gives_input_error_or_parses(text: str) -> None:
    try:
        parse_job_spec(text, source="job.yaml")
    except InputError as error:
        assert "\n" not in str(error)
