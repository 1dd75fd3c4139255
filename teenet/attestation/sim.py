"""The simulated SEV-SNP platform: no hardware, the real report layout, a software key chain.

`SimulatedPlatform` is a software ARK (RSA-4096, self-signed), an ASK it signs and a chip
secret from which a VCEK (ECDSA P-384) is derived per TCB, as AMD derives a chip's VCEK
from its fused secret and TCB. Certificates use RSASSA-PSS/SHA-384 and carry AMD's hwID
and TCB extensions, so `teenet.attestation.snp` checks simulated evidence with the same
code as real evidence; only the pinned root differs (`TrustRoots.sim_ark`).

On disk (`directory`): `sim-platform.json` (mode 0600: keys, chip secret, certificates),
published all at once by hard-linking a finished temporary file into place, so a crash or
a concurrent creator never leaves a half-written platform; and `ark.pem`, the public root a
verifier pins (see `read_sim_ark`).

`UnsafeSimulatedAttester` signs reports with the simulated VCEK. It protects nothing and
says so: it logs a warning when built and its evidence is refused unless a policy says
`allow_simulated`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from teenet.attestation.evidence import REPORT_DATA_SIZE, Attester, Evidence, Platform
from teenet.attestation.snp import (
    CHIP_ID_SIZE, MEASUREMENT_SIZE, OID_HWID, OID_PRODUCT_NAME, POLICY_DEBUG, TCB_OIDS, SnpReport, encode_tcb,
)
from teenet.errors import InputError
from teenet.keyfiles import EnclaveSealingKey

log = logging.getLogger("teenet.attestation")

PLATFORM_FILE = "sim-platform.json"
ARK_FILE = "ark.pem"
FORMAT = "teenet-sim-platform/v1"
PRODUCT = "Milan"  # the simulated chip reports itself as a Milan (CPUID family 19h model 01h)
_CPUID = (0x19, 0x01, 0x01)
DEFAULT_TCB: Mapping[str, int] = {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}
_LIFETIME = timedelta(days=25 * 365)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_CA_KEY_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False)
_ISSUER_KEY_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                  data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                                  encipher_only=False, decipher_only=False)
_POLICY_BASE = 0x30000  # SMT allowed (bit 16) and the must-be-one bit 17, as real guests launch


def _name(common_name: str) -> x509.Name:
    """AMD's subject layout, with an organisation that says what this really is."""
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "teenet SIMULATED (no hardware)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


ARK_NAME = f"teenet SIMULATED ARK-{PRODUCT}"
ASK_NAME = f"teenet SIMULATED SEV-{PRODUCT}"
VCEK_NAME = "teenet SIMULATED SEV-VCEK"


def _der_uint(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")  # room for the sign bit
    return bytes([0x02, len(body)]) + body


class SimulatedPlatform:
    """A software stand-in for one AMD chip and AMD's key hierarchy. Keep one per directory."""

    def __init__(self, *, ark: x509.Certificate, ark_key: rsa.RSAPrivateKey, ask: x509.Certificate,
                 ask_key: rsa.RSAPrivateKey, chip_secret: bytes, chip_id: bytes) -> None:
        self._ark = ark
        self._ark_key = ark_key
        self._ask = ask
        self._ask_key = ask_key
        self._chip_secret = chip_secret
        self._chip_id = chip_id
        self._vceks: dict[bytes, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}

    @property
    def ark(self) -> x509.Certificate:
        """The simulated root: pin it in `TrustRoots.sim_ark` to accept this platform's evidence."""
        return self._ark

    @property
    def ask(self) -> x509.Certificate:
        return self._ask

    @property
    def chip_id(self) -> bytes:
        return self._chip_id

    # --- on disk -------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, directory: Path) -> "SimulatedPlatform":
        """Load the platform kept in `directory`, creating it (slow: two RSA-4096 keys) if absent."""
        directory = Path(directory)
        path = directory / PLATFORM_FILE
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            cls._publish(path, cls._generate())
        platform = cls._load(path)
        platform._write_public_ark(directory)
        return platform

    @classmethod
    def _generate(cls) -> dict[str, Any]:
        now = datetime.now(timezone.utc) - timedelta(days=1)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        ark = (x509.CertificateBuilder()
               .subject_name(_name(ARK_NAME)).issuer_name(_name(ARK_NAME))
               .public_key(ark_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + _LIFETIME)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_CA_KEY_USAGE, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ark_key.public_key()), critical=False)
               .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS))
        ask = (x509.CertificateBuilder()
               .subject_name(_name(ASK_NAME)).issuer_name(ark.subject)
               .public_key(ask_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + _LIFETIME)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ISSUER_KEY_USAGE, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ask_key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ark_key.public_key()), critical=False)
               .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS))
        pem = serialization.Encoding.PEM
        pkcs8 = serialization.PrivateFormat.PKCS8
        return {
            "format": FORMAT,
            "product": PRODUCT,
            "chip_id": secrets.token_bytes(CHIP_ID_SIZE).hex(),
            "chip_secret": secrets.token_bytes(48).hex(),
            "ark": ark.public_bytes(pem).decode(),
            "ark_key": ark_key.private_bytes(pem, pkcs8, serialization.NoEncryption()).decode(),
            "ask": ask.public_bytes(pem).decode(),
            "ask_key": ask_key.private_bytes(pem, pkcs8, serialization.NoEncryption()).decode(),
        }

    @staticmethod
    def _publish(path: Path, document: Mapping[str, Any]) -> None:
        """Write the finished file under a temporary name (0600), then hard-link it into
        place: the link either appears complete or not at all, and fails if another process
        got there first (whose platform then wins and is loaded)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def _load(cls, path: Path) -> "SimulatedPlatform":
        source = str(path)
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            raise InputError("unreadable simulated platform; delete its directory to make a new one",
                             source=source) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise InputError(f"not a simulated platform file (expected format {FORMAT})", source=source)
        try:
            ark = x509.load_pem_x509_certificate(document["ark"].encode())
            ask = x509.load_pem_x509_certificate(document["ask"].encode())
            # Our own 0600 file: skip the slow RSA key re-validation; a bad key could only
            # sign reports that the verifier then refuses.
            ark_key = serialization.load_pem_private_key(document["ark_key"].encode(), password=None,
                                                         unsafe_skip_rsa_key_validation=True)
            ask_key = serialization.load_pem_private_key(document["ask_key"].encode(), password=None,
                                                         unsafe_skip_rsa_key_validation=True)
            chip_id = bytes.fromhex(document["chip_id"])
            chip_secret = bytes.fromhex(document["chip_secret"])
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            field = exc.args[0] if isinstance(exc, KeyError) else None
            raise InputError("damaged simulated platform; delete its directory to make a new one",
                             source=source, field=field) from None
        if (not isinstance(ark_key, rsa.RSAPrivateKey) or not isinstance(ask_key, rsa.RSAPrivateKey)
                or ark_key.public_key() != ark.public_key() or ask_key.public_key() != ask.public_key()
                or len(chip_id) != CHIP_ID_SIZE or len(chip_secret) < 32):
            raise InputError("inconsistent simulated platform (keys do not match certificates)", source=source)
        return cls(ark=ark, ark_key=ark_key, ask=ask, ask_key=ask_key, chip_secret=chip_secret, chip_id=chip_id)

    def _write_public_ark(self, directory: Path) -> None:
        target = directory / ARK_FILE
        data = self._ark.public_bytes(serialization.Encoding.PEM)
        if target.exists() and target.read_bytes() == data:
            return
        tmp = target.with_name(f".{ARK_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    # --- the chip ------------------------------------------------------------------------

    def vcek(self, tcb: Mapping[str, int]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The VCEK for this TCB: its key derived from the chip secret and the TCB, its
        certificate signed by the ASK with AMD's hwID and TCB extensions."""
        tcb_bytes = encode_tcb(tcb, PRODUCT)
        cached = self._vceks.get(tcb_bytes)
        if cached:
            return cached
        seed = HKDF(algorithm=hashes.SHA384(), length=64, salt=None,
                    info=b"teenet-sim/vcek/v1" + tcb_bytes).derive(self._chip_secret)
        order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
        key = ec.derive_private_key(int.from_bytes(seed, "big") % (order - 1) + 1, ec.SECP384R1())
        cert = self.certify_vcek(key.public_key(), tcb)
        self._vceks[tcb_bytes] = (cert, key)
        return cert, key

    def derive_sealing_key(self, measurement: bytes, policy: int) -> EnclaveSealingKey:
        """What SNP's MSG_KEY_REQ gives a guest (root key VCEK, the measurement and the guest
        policy mixed in), simulated: a key from this chip's secret, the measurement and the
        policy. Another measurement (other code), a debug policy, or another platform derive
        another key, so keys sealed by one enclave do not open in another."""
        if len(measurement) != MEASUREMENT_SIZE:
            raise InputError(f"a measurement is {MEASUREMENT_SIZE} bytes (SHA-384), got {len(measurement)}",
                             field="measurement")
        secret = HKDF(algorithm=hashes.SHA384(), length=32, salt=None,
                      info=b"teenet-sim/derived-key/v1" + bytes(measurement) + policy.to_bytes(8, "little")
                      ).derive(self._chip_secret)
        return EnclaveSealingKey.from_tee_secret("sim-snp", secret)

    def certify_vcek(self, public_key: ec.EllipticCurvePublicKey, tcb: Mapping[str, int], *,
                     hwid: bytes | None = None) -> x509.Certificate:
        """A VCEK certificate (signed by the ASK) for any P-384 key, TCB and hwID (default:
        this chip's). Exposed so tests can show the verifier's chip id and TCB checks."""
        encode_tcb(tcb, PRODUCT)  # refuses components the product does not have
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(VCEK_NAME)).issuer_name(self._ask.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(self._ask.not_valid_before_utc)
                   .not_valid_after(self._ask.not_valid_after_utc)
                   .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.1"),
                                                             _der_uint(0)), critical=False)
                   .add_extension(x509.UnrecognizedExtension(OID_PRODUCT_NAME,
                                                             b"\x16\x08" + f"{PRODUCT}-B0".encode()), critical=False)
                   .add_extension(x509.UnrecognizedExtension(OID_HWID, self._chip_id if hwid is None else hwid),
                                  critical=False))
        for name, value in sorted(tcb.items()):
            builder = builder.add_extension(x509.UnrecognizedExtension(TCB_OIDS[name], _der_uint(value)),
                                            critical=False)
        return builder.sign(self._ask_key, hashes.SHA384(), rsa_padding=_PSS)


def read_sim_ark(directory: Path) -> x509.Certificate:
    """The public simulated ARK a verifier pins, from a platform directory (no keys read)."""
    path = Path(directory) / ARK_FILE
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"no simulated root here (expected {ARK_FILE}; a simulated platform writes it)",
                         source=str(directory)) from None
    except (OSError, ValueError):
        raise InputError("not a PEM certificate", source=str(path)) from None


class UnsafeSimulatedAttester(Attester):
    """INSECURE: signs SEV-SNP-layout reports in software. For development and tests only."""

    platform = Platform.SIM_SNP

    def __init__(self, platform: SimulatedPlatform, measurement: bytes, *, debug: bool = False, vmpl: int = 0,
                 tcb: Mapping[str, int] = DEFAULT_TCB, guest_svn: int = 0, host_data: bytes = bytes(32)) -> None:
        if len(measurement) != MEASUREMENT_SIZE:
            raise InputError(f"a measurement is {MEASUREMENT_SIZE} bytes (SHA-384), got {len(measurement)}",
                             field="measurement")
        if not 0 <= vmpl <= 3:
            raise InputError("expected 0..3", field="vmpl")
        if len(host_data) != 32:
            raise InputError("expected 32 bytes", field="host_data")
        try:
            self._tcb_bytes = encode_tcb(tcb, PRODUCT)
        except ValueError as exc:
            raise InputError(str(exc), field="tcb") from None
        self._platform = platform
        self._measurement = bytes(measurement)
        self._debug = debug
        self._vmpl = vmpl
        self._guest_svn = guest_svn
        self._host_data = bytes(host_data)
        self._vcek_cert, self._vcek_key = platform.vcek(tcb)
        log.warning("INSECURE: UnsafeSimulatedAttester: attestation is SIMULATED in software; no hardware "
                    "protects this enclave (measurement %s...). Never use it in production.",
                    self._measurement.hex()[:16])

    def derive_sealing_key(self) -> EnclaveSealingKey:
        """This simulated enclave's key for sealing its long-term keys (SIMULATED: anyone who
        holds the platform file can derive it)."""
        return self._platform.derive_sealing_key(self._measurement, self._policy())

    def _policy(self) -> int:
        return _POLICY_BASE | (POLICY_DEBUG if self._debug else 0)

    def attest(self, report_data: bytes) -> Evidence:
        if len(report_data) != REPORT_DATA_SIZE:
            raise InputError(f"report_data is {REPORT_DATA_SIZE} bytes, got {len(report_data)}", field="report_data")
        tcb = self._tcb_bytes
        report = SnpReport(
            version=3, guest_svn=self._guest_svn, policy=self._policy(),
            family_id=bytes(16), image_id=bytes(16), vmpl=self._vmpl, signature_algo=1, current_tcb=tcb,
            platform_info=0, signer_info=0, report_data=bytes(report_data), measurement=self._measurement,
            host_data=self._host_data, id_key_digest=bytes(48), author_key_digest=bytes(48),
            report_id=secrets.token_bytes(32), report_id_ma=b"\xff" * 32, reported_tcb=tcb,
            cpuid_fam_id=_CPUID[0], cpuid_mod_id=_CPUID[1], cpuid_step=_CPUID[2], chip_id=self._platform.chip_id,
            committed_tcb=tcb, current_build=0, current_minor=55, current_major=1,
            committed_build=0, committed_minor=55, committed_major=1, launch_tcb=tcb,
        )
        der_signature = self._vcek_key.sign(report.signed_bytes, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der_signature)
        der = serialization.Encoding.DER
        return Evidence(Platform.SIM_SNP, report.with_signature(r, s).to_bytes(),
                        certificates=(self._vcek_cert.public_bytes(der), self._platform.ask.public_bytes(der),
                                      self._platform.ark.public_bytes(der)),
                        provider="teenet-sim")


def ark_fingerprint(ark: x509.Certificate) -> str:
    """SHA-256 of the ARK's DER, for telling simulated roots apart in logs and the CLI."""
    return hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
