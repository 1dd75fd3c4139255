"""Evidence from an SGX enclave running under Gramine with DCAP remote attestation.

Gramine exposes a pseudo-filesystem inside the enclave (manifest:
`sgx.remote_attestation = "dcap"`): `/dev/attestation/attestation_type` reads "dcap",
writing 64 bytes to `user_report_data` sets the enclave report's REPORTDATA, and reading
`quote` returns the DCAP quote the Quoting Enclave made over it. Another thread of the
same enclave could write `user_report_data` between our write and our read, so the quote's
report_data is compared with ours before it is returned.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from teenet.attestation.dcap_quote import parse_quote
from teenet.attestation.evidence import REPORT_DATA_SIZE, Attester, Evidence, Platform
from teenet.errors import InputError, VerificationError

DEFAULT_GRAMINE_ATTESTATION = Path("/dev/attestation")


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
