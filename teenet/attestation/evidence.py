"""Platform-neutral attestation types: what an attester produces and a verifier returns.

`Evidence` is what crosses the wire: the raw hardware report (or quote) and the
certificates needed to check it. `Claims` is what a platform verifier hands back once the
signature and the certificate chain are good: the facts policies decide on. `TrustRoots`
holds the pinned vendor roots a verifier chains to.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from teenet.errors import InputError

if TYPE_CHECKING:  # certificates appear in annotations only; x509 costs a CLI command ~50 ms
    from cryptography import x509

REPORT_DATA_SIZE = 64


class Platform(str, enum.Enum):
    """Where evidence comes from. `sim-snp` is software pretending to be SEV-SNP."""

    SIM_SNP = "sim-snp"
    SNP = "snp"
    TDX = "tdx"
    SGX = "sgx"

    @property
    def simulated(self) -> bool:
        return self is Platform.SIM_SNP


@dataclass(frozen=True)
class Evidence:
    """A report or quote plus the certificates that let a verifier check it.

    `certificates` are DER certificates the attester had at hand (for SNP the VCEK or
    VLEK, optionally ASK/ASVK and ARK from the auxblob; empty for DCAP quotes, which carry
    their PCK chain inside). `provider` is free text naming the source (e.g.
    "configfs-tsm:sev_guest", "gramine:dcap", "teenet-sim").
    """

    platform: Platform
    report: bytes
    certificates: tuple[bytes, ...] = ()
    provider: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "report": base64.b64encode(self.report).decode(),
            "certificates": [base64.b64encode(c).decode() for c in self.certificates],
            "provider": self.provider,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any, *, source: str = "evidence") -> "Evidence":
        if not isinstance(data, dict):
            raise InputError("expected a JSON object with platform, report, certificates", source=source)
        try:
            platform = Platform(data.get("platform"))
        except ValueError:
            raise InputError(
                f"unknown platform {data.get('platform')!r}; expected one of "
                + ", ".join(p.value for p in Platform), source=source, field="platform") from None
        report = _b64(data.get("report"), source, "report")
        certs = data.get("certificates", [])
        if not isinstance(certs, list):
            raise InputError("expected a list of base64 DER certificates", source=source, field="certificates")
        provider = data.get("provider", "")
        if not isinstance(provider, str):
            raise InputError("expected a string", source=source, field="provider")
        return cls(platform, report, tuple(_b64(c, source, "certificates") for c in certs), provider)

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: str = "evidence") -> "Evidence":
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InputError("not JSON evidence", source=source) from None
        return cls.from_json(data, source=source)


def _b64(value: Any, source: str, name: str) -> bytes:
    if not isinstance(value, str):
        raise InputError("expected base64 text", source=source, field=name)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InputError("not valid base64", source=source, field=name) from None


@dataclass(frozen=True)
class Claims:
    """Facts read from evidence whose signature and chain have been verified.

    `measurement` is the launch digest: SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE.
    `tcb` maps named TCB components to their reported security version numbers
    (e.g. {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115} for SNP).
    `details` holds the remaining platform-specific fields, hex or int, for policies
    that need them (e.g. "mr_signer", "rtmr0", "chip_id", "host_data", "isv_prod_id").
    """

    platform: Platform
    measurement: bytes
    report_data: bytes
    debug: bool
    tcb: Mapping[str, int] = field(default_factory=dict)
    vmpl: int | None = None
    signer: str = ""  # which key signed: "vcek", "vlek", "pck", "sim-vcek"
    version: int = 0
    details: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.platform.simulated

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "simulated": self.simulated,
            "version": self.version,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "vmpl": self.vmpl,
            "signer": self.signer,
            "tcb": dict(self.tcb),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class IntelCollateral:
    """A directory of Intel PCS collateral: TCB info per FMSPC and QE identity, for TDX and
    SGX, with the TCB signing chain. Layout (docs/real-tee.md):

        tcb-signing-chain.pem            the issuer chain PCS returns with each document
        sgx/tcb-info-<FMSPC>.json        GET /sgx/certification/v4/tcb?fmspc=<FMSPC>
        sgx/qe-identity.json             GET /sgx/certification/v4/qe/identity
        tdx/tcb-info-<FMSPC>.json        GET /tdx/certification/v4/tcb?fmspc=<FMSPC>
        tdx/qe-identity.json             GET /tdx/certification/v4/qe/identity

        crl/*.crl (or .der, .pem)        the CRLs of the PCK chain's CAs: GET
                                         /sgx/certification/v4/pckcrl?ca=platform and
                                         ?ca=processor, and Intel's IntelSGXRootCA.der CRL

    Files are read at each verification, so refreshed collateral applies without a restart.
    `root` overrides the CA the collateral must chain to; None means the pinned Intel SGX
    Root CA (the only right value outside tests). `check_crls` (on by default) requires a
    current CRL, signed by the issuer, for each certificate of the PCK chain below the
    root, and refuses a revoked one; only tests of the other checks turn it off, since no
    test can hold a CRL signed by Intel's CAs.
    """

    path: str
    root: x509.Certificate | None = None
    check_crls: bool = True


@dataclass(frozen=True)
class TrustRoots:
    """Pinned roots a verifier chains to. Evidence whose root is absent here is refused.

    `amd_arks` maps an AMD product line ("Milan", "Genoa", "Turin") to its pinned ARK.
    `intel_sgx_root` is the Intel SGX Root CA (for both TDX and SGX DCAP quotes).
    `sim_ark` is the software ARK of the simulated platform; only a deployment that
    explicitly allows simulated evidence pins it.
    `vcek_cache` is a directory of VCEK/VLEK certificates keyed by chip id and TCB, used
    when the evidence does not carry its own.
    `intel_collateral`, when set, makes every TDX and SGX verification evaluate the
    platform's TCB status from that collateral (claims.details["tcb_status"]); evidence
    whose collateral is missing, stale or badly signed is then refused.
    """

    amd_arks: Mapping[str, x509.Certificate] = field(default_factory=dict)
    intel_sgx_root: x509.Certificate | None = None
    sim_ark: x509.Certificate | None = None
    vcek_cache: str | None = None
    now: datetime | None = None  # pin the verification time (tests, offline audit); None = now
    intel_collateral: IntelCollateral | None = None


class Attester:
    """Produces evidence over 64 bytes of report_data. Backends: sim, configfs-tsm, gramine."""

    platform: Platform

    def attest(self, report_data: bytes) -> Evidence:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} does not implement attest()")
