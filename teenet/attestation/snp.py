"""AMD SEV-SNP attestation reports: the ABI layout, and verification of real or simulated ones.

A report is the 0x4A0-byte ATTESTATION_REPORT of AMD's SEV-SNP firmware ABI (versions 2
to 5), signed with ECDSA P-384/SHA-384 over bytes 0x000..0x29F by the chip's VCEK or a
cloud provider's VLEK. `verify_snp_evidence` checks, in this order and failing closed:
the layout, the signature algorithm, the signer field, the report signature with the named
key, that key's chain VCEK -> ASK (or VLEK -> ASVK) -> ARK with RSASSA-PSS/SHA-384 (salt
48) up to a pinned ARK, the certificates' validity, the chip id (VCEK only) and the
reported TCB against the key certificate's extensions. Simulated evidence
(`Platform.SIM_SNP`) goes through the very same code; only the pinned root differs
(`TrustRoots.sim_ark` instead of `TrustRoots.amd_arks`), so neither kind can pass as the
other.

The layout table below is the one place the byte offsets live: `parse_snp_report` reads
with it and `SnpReport.to_bytes` (used by the simulator) writes with it.
"""

from __future__ import annotations

import enum
import hmac
import re
import struct
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from teenet.attestation.evidence import REPORT_DATA_SIZE, Claims, Evidence, Platform, TrustRoots
from teenet.errors import VerificationError

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0  # the signature covers bytes 0x000..0x29F
SIGNATURE_OFFSET = 0x2A0
SIGNATURE_COMPONENT_SIZE = 72  # r and s, each little-endian, zero-padded
MEASUREMENT_SIZE = 48
CHIP_ID_SIZE = 64
SUPPORTED_VERSIONS = range(2, 6)
SIG_ALGO_ECDSA_P384_SHA384 = 1
POLICY_DEBUG = 1 << 19
PRODUCTS = ("Milan", "Genoa", "Turin")

# AMD VCEK/VLEK certificate extensions ("VCEK Certificate and KDS Interface Specification").
OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_HWID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
TCB_OIDS: Mapping[str, x509.ObjectIdentifier] = {
    "bootloader": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1"),
    "tee": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2"),
    "snp": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3"),
    "microcode": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8"),
    "fmc": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9"),  # Turin (family 1Ah) only
}

# TCB_VERSION byte positions per product line. Milan and Genoa share one layout; Turin
# moved the components and added the FMC (ABI spec, TCB_VERSION structure).
_TCB_LAYOUT: Mapping[str, Mapping[str, int]] = {
    "Milan": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "Genoa": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "Turin": {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}


class SigningKey(enum.IntEnum):
    """SIGNER_INFO bits 4:2: which key signed the report."""

    VCEK = 0
    VLEK = 1
    NONE = 7


# (field, offset, struct format or byte length). Fields absent from this table are
# reserved and written as zero.
_LAYOUT: tuple[tuple[str, int, str | int], ...] = (
    ("version", 0x000, "<I"),
    ("guest_svn", 0x004, "<I"),
    ("policy", 0x008, "<Q"),
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("vmpl", 0x030, "<I"),
    ("signature_algo", 0x034, "<I"),
    ("current_tcb", 0x038, 8),
    ("platform_info", 0x040, "<Q"),
    ("signer_info", 0x048, "<I"),
    ("report_data", 0x050, REPORT_DATA_SIZE),
    ("measurement", 0x090, MEASUREMENT_SIZE),
    ("host_data", 0x0C0, 32),
    ("id_key_digest", 0x0E0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("reported_tcb", 0x180, 8),
    ("cpuid_fam_id", 0x188, "<B"),  # version 3 and later; reserved (zero) in version 2
    ("cpuid_mod_id", 0x189, "<B"),
    ("cpuid_step", 0x18A, "<B"),
    ("chip_id", 0x1A0, CHIP_ID_SIZE),
    ("committed_tcb", 0x1E0, 8),
    ("current_build", 0x1E8, "<B"),
    ("current_minor", 0x1E9, "<B"),
    ("current_major", 0x1EA, "<B"),
    ("committed_build", 0x1EC, "<B"),
    ("committed_minor", 0x1ED, "<B"),
    ("committed_major", 0x1EE, "<B"),
    # The ABI spec and genuine reports put LAUNCH_TCB at 0x1F0 (0x1F8 holds the v5
    # LAUNCH_MIT_VECTOR).
    ("launch_tcb", 0x1F0, 8),
)


@dataclass(frozen=True)
class SnpReport:
    """One ATTESTATION_REPORT, field by field (TCB values kept as their raw 8 bytes,
    because how they decode depends on the product line)."""

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: bytes
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: bytes
    cpuid_fam_id: int
    cpuid_mod_id: int
    cpuid_step: int
    chip_id: bytes
    committed_tcb: bytes
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: bytes
    signature_r: int = 0
    signature_s: int = 0

    @property
    def debug(self) -> bool:
        """Guest policy bit 19: the hypervisor may debug (read and write) guest memory."""
        return bool(self.policy & POLICY_DEBUG)

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & 0x1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.signer_info & 0x2)

    @property
    def signing_key(self) -> int:
        return (self.signer_info >> 2) & 0x7

    @property
    def product_from_cpuid(self) -> str | None:
        """The product line named by the CPUID fields (version 3+), or None for version 2."""
        if self.version < 3:
            return None
        family, model = self.cpuid_fam_id, self.cpuid_mod_id
        if family == 0x19 and model <= 0x0F:
            return "Milan"
        if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
            return "Genoa"  # Genoa, Bergamo and Siena share the Genoa key hierarchy
        if family == 0x1A and model <= 0x1F:
            return "Turin"
        raise VerificationError("snp.product", "the report names an unknown AMD processor",
                                expected="family 19h (Milan, Genoa) or 1Ah (Turin)",
                                found=f"family {family:#x} model {model:#x}")

    @property
    def signed_bytes(self) -> bytes:
        return self.to_bytes()[:SIGNED_SIZE]

    def to_bytes(self) -> bytes:
        """The report in the ABI layout, signature included (zero if unsigned)."""
        out = bytearray(REPORT_SIZE)
        for name, offset, kind in _LAYOUT:
            value = getattr(self, name)
            if isinstance(kind, str):
                struct.pack_into(kind, out, offset, value)
            else:
                if len(value) != kind:
                    raise ValueError(f"SNP report field {name} must be {kind} bytes, got {len(value)}")
                out[offset:offset + kind] = value
        out[SIGNATURE_OFFSET:SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE] = \
            self.signature_r.to_bytes(SIGNATURE_COMPONENT_SIZE, "little")
        s_at = SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE
        out[s_at:s_at + SIGNATURE_COMPONENT_SIZE] = self.signature_s.to_bytes(SIGNATURE_COMPONENT_SIZE, "little")
        return bytes(out)

    def with_signature(self, r: int, s: int) -> "SnpReport":
        return replace(self, signature_r=r, signature_s=s)


def parse_snp_report(raw: bytes) -> SnpReport:
    """Read an ATTESTATION_REPORT; refuses anything but 0x4A0 bytes of version 2 to 5."""
    if not isinstance(raw, (bytes, bytearray)):
        raise VerificationError("snp.parse", "not an SEV-SNP attestation report",
                                expected=f"{REPORT_SIZE} bytes", found=type(raw).__name__)
    if len(raw) != REPORT_SIZE:
        raise VerificationError("snp.parse", "not an SEV-SNP attestation report",
                                expected=f"{REPORT_SIZE} bytes", found=f"{len(raw)} bytes")
    values: dict[str, int | bytes] = {}
    try:
        for name, offset, kind in _LAYOUT:
            if isinstance(kind, str):
                (values[name],) = struct.unpack_from(kind, raw, offset)
            else:
                values[name] = bytes(raw[offset:offset + kind])
    except struct.error:
        raise VerificationError("snp.parse", "the report is truncated", expected=f"{REPORT_SIZE} bytes") from None
    version = values["version"]
    if version not in SUPPORTED_VERSIONS:
        raise VerificationError("snp.parse", "unsupported report version",
                                expected=f"{SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1}",
                                found=str(version))
    r = int.from_bytes(raw[SIGNATURE_OFFSET:SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE], "little")
    s_at = SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE
    s = int.from_bytes(raw[s_at:s_at + SIGNATURE_COMPONENT_SIZE], "little")
    return SnpReport(**values, signature_r=r, signature_s=s)  # type: ignore[arg-type]


def decode_tcb(raw: bytes, product: str) -> dict[str, int]:
    """TCB_VERSION (8 bytes) as named security version numbers for this product line."""
    layout = _tcb_layout(product)
    return {name: raw[index] for name, index in layout.items()}


def encode_tcb(tcb: Mapping[str, int], product: str) -> bytes:
    """The inverse of `decode_tcb`: every component of the product's layout is required."""
    layout = _tcb_layout(product)
    missing = sorted(set(layout) - set(tcb))
    extra = sorted(set(tcb) - set(layout))
    if missing or extra:
        raise ValueError(f"TCB for {product} needs exactly {', '.join(sorted(layout))}")
    out = bytearray(8)
    for name, index in layout.items():
        value = tcb[name]
        if not 0 <= value <= 0xFF:
            raise ValueError(f"TCB component {name} must be 0..255")
        out[index] = value
    return bytes(out)


def _tcb_layout(product: str) -> Mapping[str, int]:
    try:
        return _TCB_LAYOUT[product]
    except KeyError:
        raise VerificationError("snp.product", "unknown AMD product line",
                                expected=" or ".join(PRODUCTS), found=product) from None


# --- certificates -------------------------------------------------------------------------

def load_certificates(blob: bytes) -> list[x509.Certificate]:
    """One DER certificate, or a PEM bundle of one or more. AMD VCEK/VLEK certificates carry
    serial number 0, which `cryptography` warns about; that one warning is silenced here.

    `cryptography` parses most fields only when first read, so a certificate that loads can
    still fail later; every field the verifier uses is read here, and any such failure is a
    ValueError, like a certificate that does not load at all."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*serial number.*", category=CryptographyDeprecationWarning)
        try:
            if blob.lstrip().startswith(b"-----BEGIN"):
                certs = list(x509.load_pem_x509_certificates(blob))
            else:
                certs = [x509.load_der_x509_certificate(blob)]
            for cert in certs:
                _ = (cert.issuer, cert.subject, list(cert.extensions), cert.public_key(),
                     cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid,
                     cert.signature_hash_algorithm)
        except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
                UnsupportedAlgorithm) as exc:
            raise ValueError(f"malformed certificate: {type(exc).__name__}") from None
        return certs


def _parse_evidence_certificates(blobs: Sequence[bytes]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for index, blob in enumerate(blobs, start=1):
        try:
            certs.extend(load_certificates(blob))
        except ValueError:
            raise VerificationError("snp.chain", f"certificate #{index} of the evidence is not an X.509 "
                                    "certificate (DER or PEM)") from None
    return certs


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _verify_pss(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """AMD signs every certificate of the chain with RSASSA-PSS, SHA-384, MGF1-SHA-384,
    salt 48; anything else is refused rather than verified with whatever the cert claims."""
    issuer_name = _common_name(issuer.subject)
    if child.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise VerificationError("snp.chain", f"{what} is not signed with RSASSA-PSS",
                                expected="RSASSA-PSS/SHA-384", found=child.signature_algorithm_oid.dotted_string)
    if not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        raise VerificationError("snp.chain", f"{what} is not signed with SHA-384", expected="SHA-384",
                                found=getattr(child.signature_hash_algorithm, "name", "none"))
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError("snp.chain", f"{issuer_name or 'the issuer'} does not hold an RSA key",
                                expected="RSA", found=type(key).__name__)
    try:
        key.verify(child.signature, child.tbs_certificate_bytes,
                   padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    except InvalidSignature:
        raise VerificationError("snp.chain", f"{what} is not signed by {issuer_name or 'its issuer'}",
                                expected=f"a valid RSASSA-PSS signature by {issuer_name}",
                                found="a signature that does not verify") from None


def _extension_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _der_small_uint(value: bytes) -> int | None:
    """A DER INTEGER (as AMD encodes TCB components) to int; None if it is not one."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[2] & 0x80:
        return None
    return int.from_bytes(value[2:], "big")


def certificate_tcb(cert: x509.Certificate) -> dict[str, int]:
    """The TCB components a VCEK/VLEK certificate was issued for (those it carries)."""
    out: dict[str, int] = {}
    for name, oid in TCB_OIDS.items():
        raw = _extension_value(cert, oid)
        if raw is not None:
            number = _der_small_uint(raw)
            if number is None:
                raise VerificationError("snp.tcb", f"the key certificate's {name} extension is malformed",
                                        expected="a DER INTEGER", found=raw.hex()[:16])
            out[name] = number
    return out


def certificate_hwid(cert: x509.Certificate) -> bytes | None:
    raw = _extension_value(cert, OID_HWID)
    if raw is None:
        return None
    # KDS writes the 64 raw bytes; accept the same bytes wrapped in a DER OCTET STRING too.
    if len(raw) == CHIP_ID_SIZE + 2 and raw[0] == 0x04 and raw[1] == CHIP_ID_SIZE:
        return raw[2:]
    return raw


# --- verification -------------------------------------------------------------------------

_PRODUCT_IN_ISSUER = re.compile(r"SEV-(?:VLEK-)?(Milan|Genoa|Turin)$")


def verify_snp_evidence(evidence: Evidence, roots: TrustRoots) -> Claims:
    """Check an SNP or simulated-SNP report's signature and chain; return its claims."""
    if evidence.platform not in (Platform.SNP, Platform.SIM_SNP):
        raise VerificationError("snp.platform", "not SEV-SNP evidence",
                                expected="snp or sim-snp", found=evidence.platform.value)
    report = parse_snp_report(evidence.report)
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise VerificationError("snp.signature_algo", "unsupported signature algorithm",
                                expected="1 (ECDSA P-384 with SHA-384)", found=str(report.signature_algo))
    signer = _signer(report)
    certs = _parse_evidence_certificates(evidence.certificates)
    leaf = _signing_certificate(report, signer, certs, roots)
    _verify_report_signature(report, leaf, signer)

    product = report.product_from_cpuid or _product_from_issuer(leaf)
    ark = _pinned_root(evidence.platform, product, roots)
    intermediate = _intermediate(leaf, signer, certs, product, evidence.platform)
    _check_chain(leaf, intermediate, ark, certs, signer)
    _check_validity((leaf, intermediate, ark), roots.now)

    if signer is SigningKey.VCEK:
        _check_chip_id(report, leaf)
    tcb = decode_tcb(report.reported_tcb, product)
    _check_tcb(tcb, leaf)

    signer_name = signer.name.lower()
    return Claims(
        platform=evidence.platform,
        measurement=report.measurement,
        report_data=report.report_data,
        debug=report.debug,
        tcb=tcb,
        vmpl=report.vmpl,
        signer=f"sim-{signer_name}" if evidence.platform.simulated else signer_name,
        version=report.version,
        details=_details(report, product),
    )


def _signer(report: SnpReport) -> SigningKey:
    if report.mask_chip_key:
        raise VerificationError("snp.signer", "the report is unsigned (MASK_CHIP_KEY is set)",
                                expected="a report signed by a VCEK or VLEK", found="mask_chip_key=1")
    try:
        signer = SigningKey(report.signing_key)
    except ValueError:
        signer = None
    if signer not in (SigningKey.VCEK, SigningKey.VLEK):
        raise VerificationError("snp.signer", "the report is not signed by a VCEK or VLEK",
                                expected="signing_key 0 (VCEK) or 1 (VLEK)", found=str(report.signing_key))
    return signer


def _role_of(cert: x509.Certificate) -> str:
    return _common_name(cert.subject).rsplit("-", 1)[-1].upper()


def _signing_certificate(report: SnpReport, signer: SigningKey, certs: list[x509.Certificate],
                         roots: TrustRoots) -> x509.Certificate:
    """The VCEK/VLEK certificate: from the evidence, else from the VCEK cache directory."""
    role = signer.name  # "VCEK" or "VLEK": AMD names the subject SEV-VCEK / SEV-VLEK
    candidates = [c for c in certs if isinstance(c.public_key(), ec.EllipticCurvePublicKey)]
    matching = [c for c in candidates if _role_of(c) == role]
    if matching:
        if len({c.public_bytes(Encoding.DER) for c in matching}) > 1:
            raise VerificationError("snp.signature", f"the evidence carries several different {role} certificates",
                                    expected=f"one {role} certificate", found=str(len(matching)))
        return matching[0]
    if candidates:
        raise VerificationError("snp.signature", f"the report names the {role} as signer but the evidence "
                                "carries a different key certificate",
                                expected=role, found=", ".join(_role_of(c) for c in candidates))
    cached = _from_vcek_cache(report, roots)
    if cached is None:
        raise VerificationError("snp.signature", f"no {role} certificate to check the report signature with",
                                expected=f"a {role} certificate in the evidence or the VCEK cache", found="none")
    if _role_of(cached) != role:
        raise VerificationError("snp.signature", f"the cached certificate is not a {role}",
                                expected=role, found=_role_of(cached))
    return cached


def _from_vcek_cache(report: SnpReport, roots: TrustRoots) -> x509.Certificate | None:
    """VCEK cache layout: `<chip_id hex>-<reported_tcb hex>.der` or `.pem`, the two values
    AMD's KDS keys a VCEK by. The cache is not trusted: what it holds is verified like
    anything else."""
    if not roots.vcek_cache:
        return None
    stem = f"{report.chip_id.hex()}-{report.reported_tcb.hex()}"
    for suffix in (".der", ".pem"):
        path = Path(roots.vcek_cache) / (stem + suffix)
        if path.is_file():
            try:
                found = load_certificates(path.read_bytes())
            except (OSError, ValueError):
                raise VerificationError("snp.signature", f"the cached key certificate {path.name} is unreadable",
                                        expected="a DER or PEM certificate") from None
            return found[0] if found else None
    return None


def _verify_report_signature(report: SnpReport, leaf: x509.Certificate, signer: SigningKey) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("snp.signature", f"the {signer.name} does not hold a P-384 key",
                                expected="ECDSA P-384", found=type(key).__name__)
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise VerificationError("snp.signature", f"the report signature does not verify with the {signer.name}",
                                expected=f"an ECDSA P-384 signature by the {signer.name}",
                                found="a signature that does not verify") from None


def _product_from_issuer(leaf: x509.Certificate) -> str:
    issuer = _common_name(leaf.issuer)
    match = _PRODUCT_IN_ISSUER.search(issuer)
    if not match:
        raise VerificationError("snp.product", "cannot tell the product line from the key certificate's issuer",
                                expected="SEV-<Milan|Genoa|Turin> or SEV-VLEK-<...>", found=issuer or "none")
    return match.group(1)


def _pinned_root(platform: Platform, product: str, roots: TrustRoots) -> x509.Certificate:
    if platform is Platform.SIM_SNP:
        if roots.sim_ark is None:
            raise VerificationError("snp.root", "no simulated ARK is pinned: simulated evidence is refused",
                                    expected="a pinned simulated ARK", found="none")
        return roots.sim_ark
    ark = roots.amd_arks.get(product)
    if ark is None:
        raise VerificationError("snp.root", f"no AMD ARK is pinned for {product}",
                                expected=f"a pinned ARK-{product}", found="none")
    return ark


def _intermediate(leaf: x509.Certificate, signer: SigningKey, certs: list[x509.Certificate], product: str,
                  platform: Platform) -> x509.Certificate:
    """The ASK (for a VCEK) or ASVK (for a VLEK) that issued the key certificate. If the
    evidence carries one it must be the one; only when it carries none are AMD's pinned
    intermediates used (never for simulated evidence)."""
    named = [c for c in certs if c.subject == leaf.issuer and not _is_self_signed(c)]
    if not named and platform is Platform.SNP:
        from teenet.attestation.roots import pinned_amd_intermediates

        named = [c for c in pinned_amd_intermediates(product) if c.subject == leaf.issuer]
    issuer = _common_name(leaf.issuer)
    if not named:
        raise VerificationError("snp.chain", f"the certificate that issued the {signer.name} is missing",
                                expected=issuer or "an ASK", found="none")
    if len({c.public_bytes(Encoding.DER) for c in named}) > 1:
        raise VerificationError("snp.chain", f"the evidence carries several different {issuer} certificates",
                                expected="one", found=str(len(named)))
    return named[0]


def _check_chain(leaf: x509.Certificate, intermediate: x509.Certificate, ark: x509.Certificate,
                 certs: list[x509.Certificate], signer: SigningKey) -> None:
    # A root carried in the evidence must be the pinned one: never chain to what the
    # attester brought along.
    for cert in certs:
        if _is_self_signed(cert) and cert != ark:
            raise VerificationError("snp.root", "the evidence chains to a root that is not pinned",
                                    expected=_common_name(ark.subject), found=_common_name(cert.subject))
    if intermediate.issuer != ark.subject:
        raise VerificationError("snp.root", f"{_common_name(intermediate.subject)} was not issued by the pinned root",
                                expected=_common_name(ark.subject), found=_common_name(intermediate.issuer))
    is_asvk = "VLEK" in _common_name(intermediate.subject).upper()
    if (signer is SigningKey.VLEK) != is_asvk:
        raise VerificationError("snp.chain", f"a {signer.name} must be issued by the "
                                f"{'ASVK' if signer is SigningKey.VLEK else 'ASK'}",
                                expected="ASVK" if signer is SigningKey.VLEK else "ASK",
                                found=_common_name(intermediate.subject))
    try:
        constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise VerificationError("snp.chain", f"{_common_name(intermediate.subject)} is not a CA certificate",
                                expected="basicConstraints CA:TRUE", found="absent or CA:FALSE")
    _verify_pss(ark, ark, f"the pinned root {_common_name(ark.subject)}")
    _verify_pss(intermediate, ark, _common_name(intermediate.subject) or "the intermediate")
    _verify_pss(leaf, intermediate, f"the {signer.name} certificate")


def _check_validity(chain: Sequence[x509.Certificate], now: datetime | None) -> None:
    at = now or datetime.now(timezone.utc)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    for cert in chain:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise VerificationError("snp.validity", f"{_common_name(cert.subject)} is not valid at {at.isoformat()}",
                                    expected=f"{cert.not_valid_before_utc.isoformat()} to "
                                             f"{cert.not_valid_after_utc.isoformat()}",
                                    found=at.isoformat())


def _check_chip_id(report: SnpReport, leaf: x509.Certificate) -> None:
    hwid = certificate_hwid(leaf)
    if hwid is None:
        raise VerificationError("snp.chip_id", "the VCEK certificate has no hwID extension",
                                expected="hwID (1.3.6.1.4.1.3704.1.4)", found="none")
    if not any(report.chip_id):
        raise VerificationError("snp.chip_id", "the report's chip id is masked, so the VCEK cannot be tied to it",
                                expected=hwid.hex()[:16] + "...", found="all zeros")
    if not hmac.compare_digest(hwid, report.chip_id):
        raise VerificationError("snp.chip_id", "the report comes from a different chip than the VCEK's",
                                expected=hwid.hex()[:16] + "...", found=report.chip_id.hex()[:16] + "...")


def _check_tcb(tcb: Mapping[str, int], leaf: x509.Certificate) -> None:
    certified = certificate_tcb(leaf)
    for name, value in sorted(tcb.items()):
        if name not in certified:
            raise VerificationError("snp.tcb", f"the key certificate does not state the {name} TCB",
                                    expected=f"{name} extension", found="absent")
        if certified[name] != value:
            raise VerificationError("snp.tcb", f"the reported {name} TCB differs from the certified one",
                                    expected=str(certified[name]), found=str(value))


def _details(report: SnpReport, product: str) -> dict[str, str | int]:
    details: dict[str, str | int] = {
        "product": product,
        "chip_id": report.chip_id.hex(),
        "host_data": report.host_data.hex(),
        "guest_svn": report.guest_svn,
        "policy": report.policy,
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "author_key_en": int(report.author_key_en),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "platform_info": report.platform_info,
        "current_tcb": report.current_tcb.hex(),
        "committed_tcb": report.committed_tcb.hex(),
        "launch_tcb": report.launch_tcb.hex(),
        "firmware": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        "committed_firmware": f"{report.committed_major}.{report.committed_minor}.{report.committed_build}",
    }
    if report.version >= 3:
        details["cpuid"] = f"{report.cpuid_fam_id:02x}-{report.cpuid_mod_id:02x}-{report.cpuid_step:02x}"
    return details

