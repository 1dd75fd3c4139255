"""validate_job: params and release kinds checked from the job spec alone, no data."""

from __future__ import annotations

import pytest

from teenet.errors import InputError, ReleaseRefused
from teenet.models import InputSpec, ReleaseRequest, validate_job
from teenet.models.aggregate import AggregateParams
from teenet.models.predict import PredictParams
from teenet.models.psi import PsiParams
from teenet.models.train import TrainParams

BANK = InputSpec("bank", "customers", ("id",), ("age", "income", "churn"))
TELCO = InputSpec("telco", "usage", ("msisdn",), ("plan", "spend"))


def test_each_function_validates_a_good_job_into_its_params_type():
    assert isinstance(validate_job("psi", [BANK, TELCO], {"normalise": {"type": "str", "trim": True}},
                                   [ReleaseRequest("size", ("bank",))]), PsiParams)
    assert isinstance(validate_job("aggregate", [BANK, TELCO], {"group_by": ["plan"],
                                   "metrics": [{"column": "income", "stats": ["mean", "p90"]}]},
                                   [ReleaseRequest("aggregate", ("analyst",))]), AggregateParams)
    trained = validate_job("train", [BANK, TELCO], {"model": "hist_gradient_boosting",
                                                    "label": {"party": "bank", "column": "churn"}},
                           [ReleaseRequest("model", ("analyst",)), ReleaseRequest("metrics", ("analyst",))])
    assert isinstance(trained, TrainParams)
    assert trained.features == ("age", "income", "plan", "spend") and trained.task is None
    assert isinstance(validate_job("predict", [BANK, TELCO], {"model": "job-1/model", "ids_from": "telco"},
                                   [ReleaseRequest("scores", ("telco",))]), PredictParams)


@pytest.mark.parametrize("function,params,field", [
    ("psi", {"normalise": {"case": "title"}}, "params.normalise.case"),
    ("psi", {"normalise": {"trim": "yes"}}, "params.normalise.trim"),
    ("psi", {"normalize": {}}, "params"),
    ("psi", {"payload": [{"party": "telco"}]}, "params.payload[0].column"),
    ("aggregate", {"metrics": [{"column": "income", "stats": "mean"}]}, "params.metrics[0].stats"),
    ("aggregate", {"metrics": "income"}, "params.metrics"),
    ("train", {"label": {"party": "bank", "column": "churn"}}, "params.model"),
    ("train", {"model": "ridge"}, "params.label"),
    ("train", {"model": "ridge", "label": {"column": "churn"}}, "params.label.party"),
    ("predict", {"model": "m"}, "params.ids_from"),
    ("predict", {"model_onnx": "not bytes", "ids_from": "bank"}, "params.model_onnx"),
])
def test_bad_params_are_input_errors_naming_the_field(function, params, field):
    with pytest.raises(InputError) as err:
        validate_job(function, [BANK, TELCO], params, [])
    assert err.value.field == field
    assert str(err.value).startswith(f"field '{field}': ")


def test_a_typo_in_a_param_is_refused_not_ignored():
    with pytest.raises(InputError, match="unknown parameter\\(s\\): test_fractoin"):
        validate_job("train", [BANK], {"model": "ridge", "label": {"party": "bank", "column": "income"},
                                       "test_fractoin": 0.5}, [ReleaseRequest("metrics", ("bank",))])


def test_release_kinds_are_checked_without_data():
    with pytest.raises(ReleaseRefused, match="raw rows"):
        validate_job("aggregate", [BANK], {"metrics": [{"column": "income", "stats": ["sum"]}]},
                     [ReleaseRequest("rows", ("analyst",))])


def test_inputs_listed_twice_or_with_reserved_names_are_refused():
    with pytest.raises(InputError, match="listed twice"):
        validate_job("psi", [BANK, BANK], {}, [ReleaseRequest("size", ("bank",))])
    with pytest.raises(InputError, match="reserved"):
        validate_job("psi", [BANK, InputSpec("t", "x", ("__teenet_key_0",), ())], {},
                     [ReleaseRequest("size", ("bank",))])
