"""configs/job.schema.json says what teenet/jobspec.py accepts: same fields, names, limits."""

from __future__ import annotations

import json

import pytest

from teenet import jobspec
from teenet.yamlload import load_yaml

from config_sandbox import CONFIGS

SCHEMA = json.loads((CONFIGS / "job.schema.json").read_text())
EXAMPLE_JOBS = sorted((CONFIGS / "jobs").glob("*.yaml"))


def resolve(node: dict) -> dict:
    ref = node.get("$ref")
    return SCHEMA["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def test_there_are_example_jobs() -> None:
    assert {p.name for p in EXAMPLE_JOBS} >= {"default-risk.yaml", "psi-overlap.yaml", "spend-by-region.yaml"}


def test_field_sets_match_the_parser() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["properties"]) == set(jobspec.SPEC_FIELDS)
    assert set(SCHEMA["required"]) == set(jobspec.SPEC_REQUIRED)
    item = SCHEMA["properties"]["inputs"]["items"]
    assert item["additionalProperties"] is False and set(item["properties"]) == set(jobspec.INPUT_FIELDS)
    assert set(item["required"]) == {"party", "table", "key"}
    release = SCHEMA["properties"]["release"]["items"]
    assert release["additionalProperties"] is False
    assert set(release["properties"]) == set(release["required"]) == set(jobspec.RELEASE_FIELDS)


def test_names_and_limits_match_the_parser() -> None:
    props = SCHEMA["properties"]
    assert props["function"]["enum"] == list(jobspec.FUNCTIONS)
    assert props["name"]["pattern"] == f"^{jobspec.JOB_NAME.pattern}$"
    assert resolve(props["compute"])["pattern"] == f"^{jobspec.MEMBER_NAME.pattern}$"
    item = props["inputs"]["items"]["properties"]
    assert resolve(item["table"])["pattern"] == f"^{jobspec.TABLE_NAME.pattern}$"
    assert resolve(item["columns"]["items"])["pattern"] == f"^{jobspec.COLUMN_NAME.pattern}$"
    assert item["key"]["oneOf"][1]["maxItems"] == jobspec.MAX_KEY_COLUMNS
    assert item["columns"]["maxItems"] == jobspec.MAX_COLUMNS
    assert props["inputs"]["maxItems"] == jobspec.MAX_INPUTS and props["inputs"]["minItems"] == 1
    release = props["release"]["items"]["properties"]
    assert release["kind"]["pattern"] == f"^{jobspec.RELEASE_KIND.pattern}$"
    assert release["to"]["maxItems"] == jobspec.MAX_RECIPIENTS
    assert props["release"]["maxItems"] == jobspec.MAX_RELEASES


@pytest.mark.parametrize("path", EXAMPLE_JOBS, ids=lambda p: p.name)
def test_example_jobs_validate_against_the_schema(path) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev dependency) validates the examples")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(load_yaml(path).data)
    jobspec.parse_job_spec(path)


def test_schema_refuses_what_the_parser_refuses() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev dependency) validates the examples")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    good = load_yaml(EXAMPLE_JOBS[0]).data
    for change in ({"priority": 1}, {"function": "sql"}, {"inputs": []},
                   {"inputs": [{"party": "bank", "table": "../etc/passwd", "key": "id"}]}):
        assert not validator.is_valid({**good, **change}), change
