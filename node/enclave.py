"""The enclave boundary of a node: how it attests, what it pins, what it measures.

Everything a node does with plaintext or keys happens behind this boundary, in the TEE.
`EnclaveRuntime` holds the attester for the configured backend (sim, snp, tdx, sgx), the
enclave's own measurement, and the trust roots it verifies peers against. A simulated
backend is only ever built when the config says `backend: sim`, and it logs so loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from teenet.attestation.evidence import Attester, IntelCollateral, TrustRoots
from teenet.attestation.measure import enclave_manifest
from teenet.attestation.policy import AllOf, policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.errors import InputError
from teenet.keyfiles import EnclaveSealingKey

log = logging.getLogger("teenet.node.enclave")


@dataclass(frozen=True)
class EnclaveRuntime:
    backend: str
    attester: Attester
    measurement: str  # hex of this enclave's own measurement
    roots: TrustRoots

    def policy(self, config: Mapping[str, Any] | None, *, source: str) -> AllOf:
        return policy_from_config(config, source=source)

    def derive_sealing_key(self) -> EnclaveSealingKey:
        """The key only this enclave can derive, for its long-term keys at rest
        (`key_protection: {method: enclave}`): simulated (sim), SNP_GET_DERIVED_KEY (snp),
        Gramine's MRENCLAVE sealing key (sgx). TDX gives a TD no sealing key."""
        if self.backend == "sim":
            from teenet.attestation.sim import UnsafeSimulatedAttester

            if not isinstance(self.attester, UnsafeSimulatedAttester):
                raise InputError("a sim enclave without the simulated attester", field="enclave.backend")
            return self.attester.derive_sealing_key()
        if self.backend == "snp":
            from teenet.attestation.snp_guest import snp_sealing_key

            return snp_sealing_key()
        if self.backend == "sgx":
            from teenet.attestation.gramine import gramine_sealing_key

            return gramine_sealing_key()
        raise InputError(f"key_protection.method 'enclave' is not available with enclave backend '{self.backend}' "
                         "(a TDX guest has no sealing key); use method 'passphrase'", field="key_protection.method")


def build_enclave(backend: str, sim_dir: Path | None, *, intel_collateral: Path | None = None) -> EnclaveRuntime:
    """The attester and trust roots for `backend`. Real backends need the real device.
    `intel_collateral` (a PCS collateral directory) makes every TDX/SGX peer verification
    evaluate the peer's TCB status."""
    collateral = IntelCollateral(str(intel_collateral)) if intel_collateral is not None else None
    if backend == "sim":
        from teenet.attestation.sim import SimulatedPlatform, UnsafeSimulatedAttester

        if sim_dir is None:
            raise InputError("enclave backend 'sim' needs enclave.sim_dir", field="enclave.sim_dir")
        platform = SimulatedPlatform.load_or_create(sim_dir)
        measurement = enclave_manifest().measurement()
        attester: Attester = UnsafeSimulatedAttester(platform, measurement)
        log.warning("INSECURE: this node's enclave is SIMULATED (no TEE protects its memory); "
                    "use it for development and demos only")
        return EnclaveRuntime("sim", attester, measurement.hex(),
                              default_trust_roots(sim_ark=platform.ark, intel_collateral=collateral))
    if backend in ("snp", "tdx"):
        from teenet.attestation.configfs import ConfigfsTsmAttester

        attester = ConfigfsTsmAttester()
    elif backend == "sgx":
        from teenet.attestation.gramine import GramineSgxAttester

        attester = GramineSgxAttester()
    else:
        raise InputError(f"unknown enclave backend {backend!r}; expected sim, snp, tdx or sgx",
                         field="enclave.backend")
    # On real hardware the enclave's own measurement is what the hardware reports for it;
    # read it from a report over zero report_data, verified with the pinned roots.
    from teenet.attestation.verifier import verify_platform_evidence

    roots = default_trust_roots(intel_collateral=collateral)
    claims = verify_platform_evidence(attester.attest(bytes(64)), roots)
    if "tcb_status" in claims.details:
        log.info("this platform's TCB status from Intel collateral: %s", claims.details["tcb_status"])
    return EnclaveRuntime(backend, attester, claims.measurement.hex(), roots)
