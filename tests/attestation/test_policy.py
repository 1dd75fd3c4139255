"""Attestation policies: composition fails closed and every refusal names its check."""

from __future__ import annotations

import logging

import pytest

from teenet.attestation.evidence import Claims, Platform
from teenet.attestation.policy import (
    AllOf, AnyOf, DebugDisabled, DetailAtLeast, DetailEquals, MaximumVmpl, MeasurementAllowlist, MinimumTcb,
    PlatformIn, ReportDataMatches, RequireHardware, UnsafeAllowSimulated, policy_from_config,
)
from teenet.errors import InputError, VerificationError

M1, M2 = b"\x01" * 48, b"\x02" * 48
TCB = {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}


def claims(**overrides) -> Claims:
    base = dict(platform=Platform.SNP, measurement=M1, report_data=b"\x07" * 64, debug=False, tcb=TCB, vmpl=0,
                signer="vcek", version=3, details={"mr_signer": "ABCD", "isv_svn": 3})
    base.update(overrides)
    return Claims(**base)


def refusal(policy, facts: Claims) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        policy.verify(facts)
    return info.value


class Passes:
    def verify(self, claims: Claims) -> None:
        return None


class Fails:
    def __init__(self, check: str) -> None:
        self.check = check

    def verify(self, claims: Claims) -> None:
        raise VerificationError(self.check, "refused")


# --- composition --------------------------------------------------------------------------

def test_empty_all_of_accepts_nothing():
    error = refusal(AllOf([]), claims())
    assert error.check == "policy.all_of" and error.found == "none"


def test_all_of_needs_every_child_and_reports_the_first_failure():
    AllOf([Passes(), Passes()]).verify(claims())
    assert refusal(AllOf([Passes(), Fails("first"), Fails("second")]), claims()).check == "first"


def test_all_of_takes_any_iterable_once():
    policy = AllOf(p for p in [Passes(), Fails("x")])
    assert len(policy.children) == 2
    assert refusal(policy, claims()).check == "x"
    assert refusal(policy, claims()).check == "x"  # a generator is not exhausted by the first use


def test_any_of_needs_one_child_and_lists_every_failure_otherwise():
    AnyOf([Fails("a"), Passes()]).verify(claims())
    error = refusal(AnyOf([Fails("a"), Fails("b")]), claims())
    assert error.check == "policy.any_of"
    assert "a: refused" in str(error) and "b: refused" in str(error)


def test_empty_any_of_accepts_nothing():
    error = refusal(AnyOf([]), claims())
    assert error.check == "policy.any_of" and "empty" in str(error)


def test_nested_composition():
    policy = AllOf([AnyOf([MeasurementAllowlist([M2]), DebugDisabled()]), MaximumVmpl(0)])
    policy.verify(claims())
    assert refusal(policy, claims(vmpl=2)).check == "policy.vmpl"
    assert refusal(policy, claims(debug=True)).check == "policy.any_of"


# --- each policy names its check -----------------------------------------------------------

def test_measurement_allowlist():
    MeasurementAllowlist([M2, M1.hex().upper()]).verify(claims())
    error = refusal(MeasurementAllowlist([M2]), claims())
    assert (error.check, error.expected, error.found) == ("policy.measurement", M2.hex(), M1.hex())
    empty = refusal(MeasurementAllowlist([]), claims())
    assert empty.check == "policy.measurement" and "no measurement is pinned" in str(empty)


def test_debug_disabled():
    DebugDisabled().verify(claims())
    assert refusal(DebugDisabled(), claims(debug=True)).check == "policy.debug"


def test_minimum_tcb():
    MinimumTcb({"snp": 24, "microcode": 200}).verify(claims())
    old = refusal(MinimumTcb({"snp": 25}), claims())
    assert (old.check, old.expected, old.found) == ("policy.tcb", ">= 25", "24")
    absent = refusal(MinimumTcb({"fmc": 1}), claims())
    assert absent.check == "policy.tcb" and absent.found == "absent"


def test_maximum_vmpl_applies_to_snp_only():
    MaximumVmpl(1).verify(claims(vmpl=1))
    MaximumVmpl(0).verify(claims(platform=Platform.TDX, vmpl=None))
    error = refusal(MaximumVmpl(0), claims(vmpl=3))
    assert (error.check, error.found) == ("policy.vmpl", "3")


def test_platform_in():
    PlatformIn(frozenset({Platform.SNP, Platform.TDX})).verify(claims())
    error = refusal(PlatformIn(frozenset({Platform.TDX})), claims())
    assert (error.check, error.found) == ("policy.platform", "snp")


def test_detail_equals_is_case_insensitive_for_hex_and_exact_for_numbers():
    DetailEquals("mr_signer", "abcd").verify(claims())
    assert refusal(DetailEquals("mr_signer", "abce"), claims()).check == "policy.mr_signer"
    assert refusal(DetailEquals("isv_prod_id", 1), claims()).found == "absent"
    DetailEquals("isv_svn", 3).verify(claims())


def test_detail_at_least():
    DetailAtLeast("isv_svn", 3).verify(claims())
    assert refusal(DetailAtLeast("isv_svn", 4), claims()).check == "policy.isv_svn"
    assert refusal(DetailAtLeast("mr_signer", 0), claims()).check == "policy.mr_signer"  # not a number


def test_report_data_binding():
    ReportDataMatches(b"\x07" * 64).verify(claims())
    error = refusal(ReportDataMatches(b"\x08" * 64), claims())
    assert error.check == "binding.report_data"


def test_require_hardware_and_unsafe_allow_simulated(caplog):
    sim = claims(platform=Platform.SIM_SNP)
    RequireHardware().verify(claims())
    assert refusal(RequireHardware(), sim).check == "policy.hardware"
    with caplog.at_level(logging.WARNING, logger="teenet.attestation"):
        UnsafeAllowSimulated().verify(sim)
        UnsafeAllowSimulated().verify(sim)
    assert sum("INSECURE" in r.getMessage() for r in caplog.records) == 2  # every time
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="teenet.attestation"):
        UnsafeAllowSimulated().verify(claims())
    assert not caplog.records  # hardware evidence passes silently


# --- from configuration ---------------------------------------------------------------------

def test_policy_from_config_builds_a_fail_closed_policy():
    policy = policy_from_config({"measurements": [M1.hex()], "min_tcb": {"snp": 20}, "max_vmpl": 0,
                                 "platforms": ["snp", "tdx"], "details": {"mr_signer": "abcd"}})
    policy.verify(claims())
    assert refusal(policy, claims(platform=Platform.SIM_SNP)).check == "policy.hardware"
    assert refusal(policy, claims(debug=True)).check == "policy.debug"
    assert refusal(policy, claims(measurement=M2)).check == "policy.measurement"


def test_policy_from_empty_config_pins_nothing_and_so_refuses():
    assert refusal(policy_from_config(None), claims()).check == "policy.measurement"
    assert refusal(policy_from_config({}), claims()).check == "policy.measurement"


def test_policy_from_config_allow_simulated_and_debug():
    policy = policy_from_config({"measurements": [M1.hex()], "allow_simulated": True, "allow_debug": True})
    policy.verify(claims(platform=Platform.SIM_SNP, debug=True))


@pytest.mark.parametrize("config, field, text", [
    ({"measurement": ["ab"]}, None, "unknown key(s) measurement"),
    ({"measurements": "ab"}, "measurements", "list of hex"),
    ({"measurements": ["zz"]}, "measurements", "not hex"),
    ({"allow_simulated": "yes"}, "allow_simulated", "true or false"),
    ({"allow_debug": 1}, "allow_debug", "true or false"),
    ({"min_tcb": {"snp": "new"}}, "min_tcb", "integer"),
    ({"max_vmpl": 4}, "max_vmpl", "0..3"),
    ({"platforms": ["sev"]}, "platforms", "sim-snp"),
    ({"details": ["mr_signer"]}, "details", "pinned value"),
])
def test_policy_from_config_errors_name_the_field(config, field, text):
    with pytest.raises(InputError) as info:
        policy_from_config(config, source="node.yaml")
    assert info.value.field == field
    assert text in str(info.value) and "node.yaml" in str(info.value)


def test_policy_from_config_needs_a_mapping():
    with pytest.raises(InputError, match="expected a mapping"):
        policy_from_config(["measurements"])  # type: ignore[arg-type]
