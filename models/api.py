"""The interface the compute node calls: validate a job without data, run it with data.

`run_function` parses params, checks every release request against the function's
declared kinds and the owners' rules, and every owner's analysis rule
(`teenet.models.rules.check_job`), *before* touching data; it computes only the kinds
asked for, and addresses each result to its approved recipients.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from teenet.errors import InputError

from teenet.models import aggregate, predict, psi, release, train
from teenet.models.rules import check_job
from teenet.models.spec import (Function, InputSpec, PartyInput, Release, ReleaseRequest,
                                ReleaseRules)

FUNCTIONS: Mapping[str, Function] = {
    f.name: f for f in (psi.FUNCTION, aggregate.FUNCTION, train.FUNCTION, predict.FUNCTION)
}


def _function(name: str) -> Function:
    if name not in FUNCTIONS:
        raise InputError(f"unknown function '{name}' (expected one of {', '.join(sorted(FUNCTIONS))})",
                         field="function")
    return FUNCTIONS[name]


def _requested_kinds(requests: Sequence[ReleaseRequest]) -> frozenset[str]:
    return frozenset(r.kind for r in requests if isinstance(r, ReleaseRequest))


def validate_job(function: str, inputs: Sequence[InputSpec], params: Mapping[str, Any],
                 requests: Sequence[ReleaseRequest]) -> Any:
    """Check a job's params and release kinds without data; return the parsed params.

    Raises InputError naming the field, or ReleaseRefused for a kind the function never
    releases (raw rows included) or a recipient no rule could allow.
    """
    fn = _function(function)
    specs = [i.spec if isinstance(i, PartyInput) else i for i in inputs]
    parsed = fn.parse_params(params, specs, _requested_kinds(requests))
    release.check_requests(fn.name, fn.release_kinds, requests, frozenset(s.party for s in specs),
                           scores_owner=fn.scores_owner(parsed))
    return parsed


def run_function(function: str, inputs: Sequence[PartyInput], params: Mapping[str, Any],
                 requests: Sequence[ReleaseRequest], rules: ReleaseRules) -> list[Release]:
    """Run one approved job inside the enclave and return what may leave it."""
    if not isinstance(rules, ReleaseRules):
        raise InputError("expected ReleaseRules built from the owners' approvals", field="rules")
    fn = _function(function)
    for i, inp in enumerate(inputs):
        if not isinstance(inp, PartyInput):
            raise InputError("expected a PartyInput", field=f"inputs[{i}]")
    parsed, kinds = check_before_data(fn, [inp.spec for inp in inputs], params, requests, rules)
    outputs = fn.compute(inputs, parsed, kinds, rules)
    return [Release(kind=r.kind, recipients=r.recipients, media_type=outputs[r.kind].media_type,
                    payload=outputs[r.kind].payload, summary=outputs[r.kind].summary)
            for r in requests]


def check_before_data(fn: Function, specs: Sequence[InputSpec], params: Mapping[str, Any],
                      requests: Sequence[ReleaseRequest], rules: ReleaseRules) -> tuple[Any, frozenset[str]]:
    """What the enclave checks before any data is read, on a single node and on a cluster
    alike: the params, every release request against the function's kinds and the owners'
    rules, and every owner's analysis rule again, from its signed approval (a forged or stale
    approval cannot widen what the owner wrote). Returns the parsed params and the kinds."""
    parsed = fn.parse_params(params, specs, _requested_kinds(requests))
    kinds = release.check_requests(fn.name, fn.release_kinds, requests, frozenset(s.party for s in specs),
                                   rules=rules, scores_owner=fn.scores_owner(parsed))
    for rule in rules.effective_analysis:
        check_job(rule, party=rule.party or "*", function=fn.name, params=params, inputs=specs, releases=requests)
    return parsed, kinds
