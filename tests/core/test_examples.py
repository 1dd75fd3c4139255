"""The example jobs in configs/jobs are valid against the consortium `teenet sandbox init` makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from teenet.cli.sandbox import init_sandbox
from teenet.config import load_analyst_config
from teenet.jobspec import check_against_consortium, parse_job_spec
from teenet.models import InputSpec, ReleaseRequest, validate_job

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "configs" / "jobs").glob("*.yaml"))


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    d = tmp_path_factory.mktemp("sandbox")
    init_sandbox(d, rows=500)
    return load_analyst_config(d / "analyst.yaml").consortium


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {"default-risk", "psi-overlap", "spend-by-region"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_job_is_valid_in_a_sandbox(path, consortium):
    spec = parse_job_spec(path, source=str(path))
    check_against_consortium(spec, consortium, source=str(path))
    validate_job(spec.function, [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns)) for i in spec.inputs],
                 dict(spec.params), [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
