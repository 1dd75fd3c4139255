"""Evidence from an SGX enclave running under Gramine with DCAP remote attestation.

Gramine exposes a pseudo-filesystem inside the enclave (manifest:
`sgx.remote_attestation = "dcap"`): `/dev/attestation/attestation_type` reads "dcap",
writing 64 bytes to `user_report_data` sets the enclave report's REPORTDATA, and reading
`quote` returns the DCAP quote the Quoting Enclave made over it. Another thread of the
same enclave could write `user_report_data` between our write and our read, so the quote's
report_data is compared with ours before it is returned.

Gramine (1.5+) also gives the enclave its SGX sealing keys: reading
`/dev/attestation/keys/_sgx_mrenclave` returns the 16-byte key that EGETKEY derives for
this MRENCLAVE on this CPU (`_sgx_mrsigner` would be shared by every enclave of the same
signer, which is too wide for a node's own keys). `gramine_sealing_key` turns it into the
key teenet.keyfiles seals long-term keys with (`key_protection: {method: enclave}`).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from teenet.attestation.dcap_quote import parse_quote
from teenet.attestation.evidence import REPORT_DATA_SIZE, Attester, Evidence, Platform
from teenet.errors import InputError, VerificationError
from teenet.keyfiles import EnclaveSealingKey

DEFAULT_GRAMINE_ATTESTATION = Path("/dev/attestation")
MRENCLAVE_SEALING_KEY = "_sgx_mrenclave"
SGX_SEALING_KEY_SIZE = 16


def gramine_sealing_key(base: Path = DEFAULT_GRAMINE_ATTESTATION) -> EnclaveSealingKey:
    """This enclave's MRENCLAVE-bound SGX sealing key, from Gramine's pseudo-filesystem."""
    path = Path(base) / "keys" / MRENCLAVE_SEALING_KEY
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("not running inside Gramine-SGX 1.5 or later (no sealing key here); "
                         "key_protection.method 'enclave' needs it", source=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if len(raw) != SGX_SEALING_KEY_SIZE:
        raise InputError(f"an SGX sealing key is {SGX_SEALING_KEY_SIZE} bytes, got {len(raw)}", source=str(path))
    return EnclaveSealingKey.from_tee_secret("sgx", raw)


class GramineSgxAttester(Attester):
    """Attests an SGX enclave through Gramine's /dev/attestation (DCAP quotes)."""

    platform = Platform.SGX

    def __init__(self, base: Path = DEFAULT_GRAMINE_ATTESTATION) -> None:
        self.base = Path(base)

    def attest(self, report_data: bytes) -> Evidence:
        """Write the 64 bytes of report_data, read the quote, check it carries them."""
        if not isinstance(report_data, (bytes, bytearray)) or len(report_data) != REPORT_DATA_SIZE:
            size = len(report_data) if isinstance(report_data, (bytes, bytearray)) else type(report_data).__name__
            raise InputError(f"report_data must be exactly {REPORT_DATA_SIZE} bytes, got {size}",
                             field="report_data")
        kind_path = self.base / "attestation_type"
        try:
            kind = kind_path.read_text(encoding="ascii", errors="replace").strip()
        except FileNotFoundError:
            raise InputError("not running inside Gramine-SGX (no /dev/attestation); set "
                             "sgx.remote_attestation = \"dcap\" in the manifest", source=str(kind_path)) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", source=str(kind_path)) from None
        if kind != "dcap":
            raise InputError(f"Gramine attestation type is {kind[:20]!r}; expected 'dcap' "
                             "(sgx.remote_attestation = \"dcap\" in the manifest)", source=str(kind_path))
        user_path = self.base / "user_report_data"
        try:
            with open(user_path, "wb", buffering=0) as handle:
                if handle.write(bytes(report_data)) != REPORT_DATA_SIZE:
                    raise InputError("short write of report_data", source=str(user_path))
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", source=str(user_path)) from None
        quote_path = self.base / "quote"
        try:
            quote = quote_path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc} (is the host's AESM/PCCS DCAP service "
                             "reachable?)", source=str(quote_path)) from None
        parsed = parse_quote(quote)
        if parsed.is_tdx:
            raise VerificationError("gramine.quote", "Gramine returned a quote that is not an SGX quote",
                                    expected="SGX", found="TDX")
        if not hmac.compare_digest(parsed.body.report_data, bytes(report_data)):
            raise VerificationError("gramine.report_data",
                                    "the quote does not carry the report_data just written (another writer?)",
                                    expected=bytes(report_data).hex()[:32] + "...",
                                    found=parsed.body.report_data.hex()[:32] + "...")
        return Evidence(Platform.SGX, quote, (), "gramine:dcap")
