"""How report_data binds an enclave's fresh public keys to one job.

    report_data = SHA-512( domain || job_digest || lp(hpke_public_key) || lp(signing_public_key) )

where `domain` is the ASCII string "teenet/report-data/v1/" followed by the role
("compute" or "data") and a zero byte, `job_digest` is the job's 32-byte SHA-256 digest,
and `lp(x)` is x prefixed with its length as a 4-byte big-endian integer (a data node,
which receives no HPKE key, binds an empty HPKE key: four zero bytes). The HPKE key is its
raw encoding (32 bytes for X25519; for ML-KEM-768+X25519, the 1184-byte ML-KEM key then
the 32-byte X25519 key); the signing key is the raw 32-byte Ed25519 key. The 64-byte
SHA-512 output fills SEV-SNP REPORT_DATA, TDX REPORTDATA and SGX report_data exactly.
"""

from __future__ import annotations

import hashlib
import struct

from teenet.errors import InputError

ROLES = ("compute", "data")
JOB_DIGEST_SIZE = 32


def report_data_for(role: str, job_digest: bytes, hpke_public_key: bytes, signing_public_key: bytes) -> bytes:
    """The 64 bytes an enclave of `role` puts in its report for this job and these keys."""
    if role not in ROLES:
        raise InputError(f"unknown enclave role {role!r}; expected one of {', '.join(ROLES)}")
    if len(job_digest) != JOB_DIGEST_SIZE:
        raise InputError(f"job digest must be {JOB_DIGEST_SIZE} bytes, got {len(job_digest)}")
    if len(signing_public_key) != 32:
        raise InputError(f"Ed25519 public key must be 32 bytes, got {len(signing_public_key)}")
    h = hashlib.sha512()
    h.update(b"teenet/report-data/v1/" + role.encode() + b"\x00")
    h.update(job_digest)
    h.update(struct.pack(">I", len(hpke_public_key)) + hpke_public_key)
    h.update(struct.pack(">I", len(signing_public_key)) + signing_public_key)
    return h.digest()
