"""The reason vocabulary, approval windows and revocations, and the node's revoke-or-seal rule."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.approval import Decision, sign_decision
from teenet.errors import InputError, ReleaseRefused, TeenetError, VerificationError
from teenet.node.store import NodeStore
from teenet.reasons import CHECKS, Reason, check_named_in, transport_check
from teenet.revocation import (ApprovalRevocation, SignedRevocation, refuse_withdrawn_or_expired,
                               sign_revocation)

JOB = "ab" * 32


# --- reasons --------------------------------------------------------------------------------

def test_a_reason_keeps_the_field_and_never_the_text():
    exc = InputError("table 'customers', rows 1..9: could not convert 'C-0001' to int64", field="customer_id")
    reason = Reason.of("input.unreadable", exc, party="bank", table="customers")
    assert reason.text() == "bank could not read customers: input.value (field 'customer_id')"
    assert "C-0001" not in reason.text()


@pytest.mark.parametrize("exc, check", [
    (VerificationError("approval.missing", "no approval from 'insurer'", expected="x", found="y"), "approval.missing"),
    (VerificationError("made.up", "secret 12345"), "unlisted"),
    (ReleaseRefused("release.min_group_size: the groups cover 3 row(s), fewer than 10"), "release.min_group_size"),
    (ReleaseRefused("customer 12345678 is odd"), "release.refused"),
    (TeenetError("anything at all 987654"), "unlisted"),
    (ValueError("Input contains NaN at 0.123456"), ""),
])
def test_only_the_type_and_listed_names_of_an_exception_leave(exc, check):
    reason = Reason.of("function.refused", exc, field="aggregate")
    assert reason.check == check
    for word in ("insurer", "12345", "3 row", "987654", "0.123456", "NaN"):
        assert word not in reason.text()


def test_names_in_a_reason_must_be_names_and_codes_must_be_listed():
    with pytest.raises(ValueError):
        Reason("no.such.stage")
    with pytest.raises(ValueError):
        Reason("upload.refused", party="bank\nforged line")
    assert Reason("upload.refused", "invented.check", party="bank", table="t").check == "unlisted"
    assert check_named_in("policy.hardware: simulated evidence (...)") == "policy.hardware"
    assert check_named_in("'telco' may not upload a table of 'bank'") == "unlisted"
    assert transport_check("UNAVAILABLE", "Ssl handshake failed: BAD_SIGNATURE") == "tls.handshake"
    assert transport_check("UNAVAILABLE", "Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SYSCALL") \
        == "transport.unavailable"
    assert transport_check("UNAVAILABLE", "Hostname Verification Check failed") == "tls.hostname"
    assert transport_check("SOMETHING_NEW", "") == "transport.unknown"
    assert all(c == c.lower() and " " not in c for c in CHECKS)


# --- approval windows and revocations -------------------------------------------------------

def _approval(party: str, not_after: int | None) -> Decision:
    return Decision(job_id=JOB, party=party, decision="approve", reason="ok", not_after=not_after)


def test_not_after_is_signed_and_survives_the_canonical_form():
    key = ed25519.Ed25519PrivateKey.generate()
    d = _approval("bank", 1_800_000_000)
    signed = sign_decision(d, key)
    assert Decision.from_canonical(signed.decision).not_after == 1_800_000_000
    assert b'"not_after":1800000000' in signed.decision
    assert b"not_after" not in Decision(job_id=JOB, party="bank", decision="reject", reason="no").canonical()


def test_an_expired_or_windowless_approval_is_refused():
    now = time.time()
    ok = _approval("bank", int(now) + 60)
    refuse_withdrawn_or_expired(job_id=JOB, decisions=[ok], revocations=[], party_keys={}, now=now)
    with pytest.raises(VerificationError, match="approval.expired"):
        refuse_withdrawn_or_expired(job_id=JOB, decisions=[ok, _approval("telco", int(now) - 1)], revocations=[],
                                    party_keys={}, now=now)
    with pytest.raises(VerificationError, match="approval.validity"):
        refuse_withdrawn_or_expired(job_id=JOB, decisions=[_approval("bank", None)], revocations=[], party_keys={},
                                    now=now)


def test_a_signed_revocation_refuses_and_a_forged_one_proves_nothing():
    bank, mallory = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    keys = {"bank": bank.public_key()}
    decisions = [_approval("bank", int(time.time()) + 60)]
    body = ApprovalRevocation(job_id=JOB, party="bank", decision_sha256="00" * 32, revoked_at=1, reason="changed")
    forged = sign_revocation(body, mallory)
    other_job = sign_revocation(ApprovalRevocation("cd" * 32, "bank", "00" * 32, 1), bank)
    refuse_withdrawn_or_expired(job_id=JOB, decisions=decisions, revocations=[forged, other_job], party_keys=keys,
                                now=time.time())
    relabelled = SignedRevocation(JOB, "bank", other_job.revocation, other_job.signature)
    refuse_withdrawn_or_expired(job_id=JOB, decisions=decisions, revocations=[relabelled], party_keys=keys,
                                now=time.time())
    with pytest.raises(VerificationError, match="approval.revoked"):
        refuse_withdrawn_or_expired(job_id=JOB, decisions=decisions, revocations=[sign_revocation(body, bank)],
                                    party_keys=keys, now=time.time())


# --- the node: revoke before sealing, never after ------------------------------------------

@pytest.fixture
def store(tmp_path):
    s = NodeStore(tmp_path / "node.db")
    s.remember_job(JOB, b"{}", "analyst", b"sig", "job", "psi")
    yield s
    s.close()


def _decide(store: NodeStore, verdict: str = "approve") -> None:
    d = Decision(job_id=JOB, party="bank", decision=verdict, reason="r", not_after=2_000_000_000)
    store.store_decision(sign_decision(d, ed25519.Ed25519PrivateKey.generate()), "approved", "r")


def test_once_revoked_nothing_is_sealed(store):
    _decide(store)
    store.revoke(JOB, "olga", "purpose changed")
    assert store.begin_sealing(JOB) is False
    assert store.job(JOB).status == "revoked"
    assert store.revocations_to_sign() == [(JOB, "olga", "purpose changed")]
    with pytest.raises(InputError, match="already withdrawn"):
        store.revoke(JOB, "olga", "again")


def test_once_sealing_began_an_approval_cannot_be_withdrawn(store):
    _decide(store)
    assert store.begin_sealing(JOB) is True
    with pytest.raises(InputError, match="already sealed"):
        store.revoke(JOB, "olga", "too late")
    assert store.revocations_to_sign() == []


def test_only_an_approval_can_be_withdrawn(store):
    with pytest.raises(InputError, match="not approved"):
        store.revoke(JOB, "olga", "nothing decided")
    _decide(store, "reject")
    with pytest.raises(InputError, match="not approved"):
        store.revoke(JOB, "olga", "a rejection")


def test_the_compute_record_survives_a_reopen(tmp_path):
    s = NodeStore(tmp_path / "c.db")
    assert s.remember_compute_job(JOB) is True
    s.end_compute_job(JOB)
    s.refuse_compute_job("cd" * 32)
    s.close()
    again = NodeStore(tmp_path / "c.db")
    assert again.compute_job_seen(JOB) and again.compute_job_seen("cd" * 32)
    assert again.remember_compute_job(JOB) is False and again.remember_compute_job("cd" * 32) is False
    assert not again.compute_job_seen("ef" * 32)
    again.close()
