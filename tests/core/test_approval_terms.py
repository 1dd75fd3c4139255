"""An approval carries its owner's analysis terms; the compute enclave refuses one without them."""

from __future__ import annotations

import pytest

from teenet.approval import Decision, open_signed_decision, sign_decision, verify_approvals
from teenet.errors import InputError, VerificationError
from teenet.identity import MemberKeys

MEASUREMENT = "ab" * 48
BANK = MemberKeys.generate()
RULE = {"table": "customers", "functions": {"aggregate": {"group_by": ["region"]}}, "min_group_size": 10}


def _decision(**over) -> Decision:
    fields = dict(job_id="ab" * 32, party="bank", decision="approve", reason="ok", function="aggregate",
                  compute="compute-1", tables=(("customers", ("customer_id", "income", "region")),),
                  release=(("aggregate", ("analyst",)),), compute_measurements=(MEASUREMENT,),
                  min_group_size=10, analysis=(("customers", RULE),), epsilon=0.5, delta=0.0)
    fields.update(over)
    return Decision(**fields)


def _verify(decision: Decision, spend=(0.5, 0.0)):
    return verify_approvals(job_id="ab" * 32, function="aggregate", compute="compute-1",
                            inputs=[("bank", "customers", ["customer_id", "income", "region"])],
                            release=[("aggregate", ["analyst"])],
                            signed=[sign_decision(decision, BANK.signing)],
                            party_keys={"bank": BANK.public().signing}, own_measurement=MEASUREMENT,
                            spend=spend)


def test_the_terms_survive_signing_and_parsing():
    signed = sign_decision(_decision(), BANK.signing)
    back = open_signed_decision(signed, BANK.public().signing)
    assert back.rule_for("customers") == RULE and back.epsilon == 0.5 and back.delta == 0.0
    assert back == _decision()


def test_the_enclave_gets_every_owners_rule():
    terms = _verify(_decision())
    assert terms.analysis == (("bank", "customers", RULE),)


def test_an_approval_without_terms_is_refused():
    with pytest.raises(VerificationError, match=r"^approval\.terms: 'bank' approved 'customers' without its"):
        _verify(_decision(analysis=()))


def test_an_approval_with_terms_for_another_table_only_is_refused():
    with pytest.raises(VerificationError, match=r"^approval\.terms"):
        _verify(_decision(analysis=(("staff", RULE),)))


def test_an_approval_that_charged_less_than_the_job_spends_is_refused():
    with pytest.raises(VerificationError, match=r"^approval\.budget: 'bank' approved a smaller privacy spend"):
        _verify(_decision(epsilon=0.1), spend=(0.5, 0.0))
    _verify(_decision(epsilon=0.5), spend=(0.5, 0.0))


def test_an_old_decision_without_the_new_keys_still_parses_and_carries_no_terms():
    raw = _decision().to_json()
    for key in ("analysis", "epsilon", "delta"):
        raw.pop(key)
    from teenet.canonical import canonical_json

    back = Decision.from_canonical(canonical_json(raw))
    assert back.analysis == () and back.epsilon == 0.0 and back.rule_for("customers") is None


@pytest.mark.parametrize("epsilon", [-1.0, float("nan"), True])
def test_a_bad_spend_is_refused(epsilon):
    with pytest.raises(InputError):
        _decision(epsilon=epsilon)
