"""The one entry point for checking evidence: signature, chain, policy, binding, in order.

Platform modules do the first two (they parse the report, check its signature and chain
it to a pinned root in `TrustRoots`) and return `Claims`; this module then applies the
owner's policy and, last, the report_data binding. Every step fails closed.
"""

from __future__ import annotations

from teenet.attestation.evidence import Claims, Evidence, Platform, TrustRoots
from teenet.attestation.policy import Policy, ReportDataMatches
from teenet.errors import VerificationError


def verify_platform_evidence(evidence: Evidence, roots: TrustRoots) -> Claims:
    """Check the report's signature and its chain to a pinned root; return its claims."""
    if evidence.platform in (Platform.SNP, Platform.SIM_SNP):
        from teenet.attestation.snp import verify_snp_evidence

        return verify_snp_evidence(evidence, roots)
    if evidence.platform in (Platform.TDX, Platform.SGX) and roots.intel_collateral is not None:
        from teenet.attestation.collateral import verify_with_collateral_dir

        return verify_with_collateral_dir(evidence, roots, roots.intel_collateral)
    if evidence.platform is Platform.TDX:
        from teenet.attestation.dcap import verify_tdx_evidence

        return verify_tdx_evidence(evidence, roots)
    if evidence.platform is Platform.SGX:
        from teenet.attestation.dcap import verify_sgx_evidence

        return verify_sgx_evidence(evidence, roots)
    raise VerificationError("evidence.platform", "unsupported platform", found=str(evidence.platform))


def verify_evidence(evidence: Evidence, roots: TrustRoots, policy: Policy,
                    expected_report_data: bytes | None) -> Claims:
    """Verify evidence end to end; `expected_report_data=None` skips only the binding
    (for `teenet attest verify` on evidence that was not made for a job)."""
    claims = verify_platform_evidence(evidence, roots)
    policy.verify(claims)
    if expected_report_data is not None:
        ReportDataMatches(expected_report_data).verify(claims)
    return claims
