"""Composable attestation policies over verified `Claims`, in the manner of sigstore-python.

A policy is a small object with one `verify(claims)` that returns on success and raises
`VerificationError` naming the failed check, expected versus found. `AllOf` needs every
child to pass and an empty `AllOf` fails: misuse fails closed. `AnyOf` needs one.

Simulated evidence is refused by `RequireHardware`; the only way to accept it is the
loudly named `UnsafeAllowSimulated`, which logs a warning every time it lets one through.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

from teenet.attestation.evidence import Claims, Platform
from teenet.errors import InputError, VerificationError

log = logging.getLogger("teenet.attestation")


class Policy(Protocol):
    """Decides on verified claims: returns, or raises `VerificationError`."""

    def verify(self, claims: Claims) -> None: ...


@dataclass(frozen=True)
class AllOf:
    """Every child policy must pass. An empty AllOf fails."""

    children: tuple[Policy, ...]

    def __init__(self, children: Iterable[Policy]) -> None:
        object.__setattr__(self, "children", tuple(children))

    def verify(self, claims: Claims) -> None:
        if not self.children:
            raise VerificationError("policy.all_of", "an empty all-of policy accepts nothing",
                                    expected="at least one policy", found="none")
        for child in self.children:
            child.verify(claims)


@dataclass(frozen=True)
class AnyOf:
    """At least one child policy must pass. An empty AnyOf fails."""

    children: tuple[Policy, ...]

    def __init__(self, children: Iterable[Policy]) -> None:
        object.__setattr__(self, "children", tuple(children))

    def verify(self, claims: Claims) -> None:
        failures: list[str] = []
        for child in self.children:
            try:
                child.verify(claims)
                return
            except VerificationError as exc:
                failures.append(str(exc))
        raise VerificationError("policy.any_of", "no alternative matched: " + "; ".join(failures) if failures
                                else "an empty any-of policy accepts nothing")


@dataclass(frozen=True)
class MeasurementAllowlist:
    """The launch measurement must be one of the pinned digests (hex, case-insensitive)."""

    allowed: frozenset[bytes]

    def __init__(self, allowed: Iterable[bytes | str]) -> None:
        values = frozenset(bytes.fromhex(a) if isinstance(a, str) else bytes(a) for a in allowed)
        object.__setattr__(self, "allowed", values)

    def verify(self, claims: Claims) -> None:
        if not self.allowed:
            raise VerificationError("policy.measurement", "no measurement is pinned",
                                    expected="a pinned measurement", found=claims.measurement.hex())
        if not any(hmac.compare_digest(claims.measurement, a) for a in self.allowed):
            raise VerificationError("policy.measurement", "measurement is not in the owner's allowlist",
                                    expected=" or ".join(sorted(a.hex() for a in self.allowed)),
                                    found=claims.measurement.hex())


@dataclass(frozen=True)
class DebugDisabled:
    """The TEE must not allow a debugger (SNP guest policy DEBUG, TDX/SGX DEBUG attribute)."""

    def verify(self, claims: Claims) -> None:
        if claims.debug:
            raise VerificationError("policy.debug", "the enclave allows debugging",
                                    expected="debug off", found="debug on")


@dataclass(frozen=True)
class MinimumTcb:
    """Each named TCB component must be at least the given security version number."""

    minimum: tuple[tuple[str, int], ...]

    def __init__(self, minimum: Mapping[str, int]) -> None:
        object.__setattr__(self, "minimum", tuple(sorted(minimum.items())))

    def verify(self, claims: Claims) -> None:
        for name, want in self.minimum:
            have = claims.tcb.get(name)
            if have is None:
                raise VerificationError("policy.tcb", f"TCB component '{name}' is not reported",
                                        expected=f"{name} >= {want}", found="absent")
            if have < want:
                raise VerificationError("policy.tcb", f"TCB component '{name}' is too old",
                                        expected=f">= {want}", found=str(have))


@dataclass(frozen=True)
class MaximumVmpl:
    """SNP: the report must come from a VMPL at most this (0 is the most privileged)."""

    maximum: int

    def verify(self, claims: Claims) -> None:
        if claims.vmpl is None:
            return  # not an SNP report: VMPL does not apply
        if claims.vmpl > self.maximum:
            raise VerificationError("policy.vmpl", "report comes from a less privileged VMPL",
                                    expected=f"<= {self.maximum}", found=str(claims.vmpl))


@dataclass(frozen=True)
class PlatformIn:
    """The evidence must come from one of these platforms."""

    platforms: frozenset[Platform]

    def verify(self, claims: Claims) -> None:
        if claims.platform not in self.platforms:
            raise VerificationError("policy.platform", "evidence from a platform the owner does not accept",
                                    expected=" or ".join(sorted(p.value for p in self.platforms)),
                                    found=claims.platform.value)


@dataclass(frozen=True)
class DetailEquals:
    """A platform-specific field must equal a pinned value (e.g. mr_signer, rtmr1, isv_prod_id)."""

    name: str
    value: str | int

    def verify(self, claims: Claims) -> None:
        have = claims.details.get(self.name)
        want = self.value.lower() if isinstance(self.value, str) else self.value
        got = have.lower() if isinstance(have, str) else have
        if got != want:
            raise VerificationError(f"policy.{self.name}", f"'{self.name}' does not match the pinned value",
                                    expected=str(self.value), found=str(have) if have is not None else "absent")


@dataclass(frozen=True)
class DetailAtLeast:
    """A platform-specific number must be at least a minimum (e.g. isv_svn)."""

    name: str
    minimum: int

    def verify(self, claims: Claims) -> None:
        have = claims.details.get(self.name)
        if not _is_int(have) or have < self.minimum:
            raise VerificationError(f"policy.{self.name}", f"'{self.name}' is below the minimum",
                                    expected=f">= {self.minimum}", found=str(have) if have is not None else "absent")


# Intel's TCB statuses (TCB info v3); see teenet.attestation.collateral.
INTEL_TCB_STATUSES = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                      "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked")


@dataclass(frozen=True)
class IntelTcbStatusIn:
    """TDX and SGX evidence must carry a TCB status from Intel collateral, and it must be one
    of `allowed`. Evidence of other platforms passes (AMD's TCB is pinned with min_tcb).
    Without collateral at the verifier there is no status, and the evidence is refused."""

    allowed: frozenset[str]

    def verify(self, claims: Claims) -> None:
        if claims.platform not in (Platform.TDX, Platform.SGX):
            return
        status = claims.details.get("tcb_status")
        if status is None:
            raise VerificationError("policy.tcb_status", "the policy requires a TCB status from Intel collateral, "
                                    "and this verifier has none (enclave: intel_collateral)",
                                    expected=", ".join(sorted(self.allowed)), found="absent")
        if status not in self.allowed:
            advisories = claims.details.get("tcb_advisory_ids") or ""
            raise VerificationError("policy.tcb_status", "the platform's TCB status is not allowed"
                                    + (f" (advisories {advisories})" if advisories else ""),
                                    expected=", ".join(sorted(self.allowed)), found=str(status))


@dataclass(frozen=True)
class ReportDataMatches:
    """The 64-byte report_data must equal the expected binding (see `binding.py`)."""

    expected: bytes

    def verify(self, claims: Claims) -> None:
        if not hmac.compare_digest(claims.report_data, self.expected):
            raise VerificationError("binding.report_data",
                                    "report_data does not bind these keys to this job",
                                    expected=self.expected.hex()[:32] + "...",
                                    found=claims.report_data.hex()[:32] + "...")


@dataclass(frozen=True)
class RequireHardware:
    """Refuse simulated evidence. Part of every policy unless the owner set allow_simulated."""

    def verify(self, claims: Claims) -> None:
        if claims.simulated:
            raise VerificationError("policy.hardware", "simulated evidence is not accepted by this policy",
                                    expected="hardware evidence (snp, tdx, sgx)", found=claims.platform.value)


@dataclass(frozen=True)
class UnsafeAllowSimulated:
    """INSECURE: lets simulated evidence through, and says so every time it does."""

    def verify(self, claims: Claims) -> None:
        if claims.simulated:
            log.warning("INSECURE: accepting SIMULATED attestation evidence (measurement %s); "
                        "no hardware protects this enclave. Set allow_simulated: false in production.",
                        claims.measurement.hex()[:16])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def policy_from_config(config: Mapping[str, Any] | None, *, source: str = "attestation") -> AllOf:
    """Build an owner's policy from the `attestation:` section of a node config.

    Keys: measurements (list of hex, required), allow_simulated (bool, default false),
    allow_debug (bool, default false), min_tcb (map name -> int), max_vmpl (int, default 0),
    platforms (list), details (map name -> pinned value), tcb_status (list of Intel TCB
    statuses accepted for TDX/SGX; needs the verifying node's enclave.intel_collateral).
    """
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise InputError("expected a mapping", source=source)
    known = {"measurements", "allow_simulated", "allow_debug", "min_tcb", "max_vmpl", "platforms", "details",
             "tcb_status"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}",
                         source=source)
    policies: list[Policy] = []
    allow_sim = config.get("allow_simulated", False)
    if not isinstance(allow_sim, bool):
        raise InputError("expected true or false", source=source, field="allow_simulated")
    policies.append(UnsafeAllowSimulated() if allow_sim else RequireHardware())
    measurements = config.get("measurements", [])
    if not isinstance(measurements, list) or not all(isinstance(m, str) for m in measurements):
        raise InputError("expected a list of hex digests", source=source, field="measurements")
    try:
        policies.append(MeasurementAllowlist(measurements))
    except ValueError:
        raise InputError("a measurement is not hex", source=source, field="measurements") from None
    allow_debug = config.get("allow_debug", False)
    if not isinstance(allow_debug, bool):
        raise InputError("expected true or false", source=source, field="allow_debug")
    if not allow_debug:
        policies.append(DebugDisabled())
    min_tcb = config.get("min_tcb", {})
    if not isinstance(min_tcb, Mapping) or not all(_is_int(v) for v in min_tcb.values()):
        raise InputError("expected a map of component name to integer", source=source, field="min_tcb")
    if min_tcb:
        policies.append(MinimumTcb(dict(min_tcb)))
    max_vmpl = config.get("max_vmpl", 0)
    if not _is_int(max_vmpl) or not 0 <= max_vmpl <= 3:
        raise InputError("expected an integer 0..3", source=source, field="max_vmpl")
    policies.append(MaximumVmpl(max_vmpl))
    platforms = config.get("platforms")
    if platforms is not None:
        try:
            policies.append(PlatformIn(frozenset(Platform(p) for p in platforms)))
        except (ValueError, TypeError):
            raise InputError("expected a list of " + ", ".join(p.value for p in Platform),
                             source=source, field="platforms") from None
    details = config.get("details", {})
    if not isinstance(details, Mapping):
        raise InputError("expected a map of field name to pinned value", source=source, field="details")
    for name, value in sorted(details.items()):
        policies.append(DetailEquals(str(name), value))
    tcb_status = config.get("tcb_status")
    if tcb_status is not None:
        if (not isinstance(tcb_status, list) or not tcb_status
                or not all(isinstance(t, str) and t in INTEL_TCB_STATUSES for t in tcb_status)):
            raise InputError("expected a non-empty list of Intel TCB statuses from "
                             + ", ".join(INTEL_TCB_STATUSES), source=source, field="tcb_status")
        policies.append(IntelTcbStatusIn(frozenset(tcb_status)))
    return AllOf(policies)
