"""Attestation: evidence from a TEE (or the simulated one), its verification and policies.

- `evidence`: the platform-neutral types (`Evidence`, `Claims`, `TrustRoots`).
- `binding`: how `report_data` binds an enclave's keys to one job.
- `policy`: composable policies over verified claims (sigstore-style).
- `verifier`: `verify_evidence`, the one entry point: signature, chain, policy, binding.
- `snp`, `sim`, `dcap` (TDX, SGX): platform parsers and verifiers; `measure`: the
  enclave-code measurement; `configfs`, `gramine`: attesters on real hardware.
"""
