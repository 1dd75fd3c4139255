"""Evidence from a confidential VM through Linux configfs-tsm (SEV-SNP and TDX guests, kernel 6.7+).

The kernel ABI (Documentation/ABI/testing/configfs-tsm): make a directory under
/sys/kernel/config/tsm/report, write up to 64 bytes to `inblob` (and optionally
`privlevel` first), read `outblob` (the SNP report or TDX quote), `auxblob` (SNP: the
host's certificate table; absent or empty otherwise) and `provider` ("sev_guest" or
"tdx_guest"). `generation` counts writes to the entry, so reading it before and after
tells whether another writer changed the request under us; if so the outblob may answer
someone else's inblob and is thrown away.
"""

from __future__ import annotations

import logging
import os
import secrets
import struct
import uuid
from pathlib import Path

from teenet.attestation.evidence import REPORT_DATA_SIZE, Attester, Evidence, Platform
from teenet.errors import InputError, VerificationError

log = logging.getLogger("teenet.attestation")

DEFAULT_TSM_REPORT = Path("/sys/kernel/config/tsm/report")
PROVIDERS = {"sev_guest": Platform.SNP, "tdx_guest": Platform.TDX}

# GUIDs of the SEV-SNP extended-report certificate table (AMD GHCB specification; the
# same values as virtee/sev and go-sev-guest), stored in RFC 4122 byte order.
SNP_CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes: "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1").bytes: "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782").bytes: "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae").bytes: "ark",
}
_CERT_TABLE_ENTRY = struct.Struct("<16sII")
_SNP_KEY_INFO_OFFSET = 0x48  # SNP report: bits 4:2 name the signing key (0 VCEK, 1 VLEK)


class TsmFiles:
    """The file operations configfs-tsm needs, on the real filesystem.

    configfs does work inside mkdir/write/rmdir that a plain directory cannot imitate
    (creating the attributes, producing the outblob, removing a non-empty entry); tests
    pass a subclass that plays the kernel's part over a temporary directory.
    """

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        # configfs takes an attribute in a single write(2); a short write is a failure.
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)


class ConfigfsTsmAttester(Attester):
    """Attests a confidential VM (SEV-SNP or TDX guest) through configfs-tsm."""

    def __init__(self, base: Path = DEFAULT_TSM_REPORT, *, privlevel: int | None = None,
                 max_attempts: int = 3, files: TsmFiles | None = None) -> None:
        if privlevel is not None and not 0 <= privlevel <= 3:
            raise InputError("expected an SNP VMPL 0..3", field="privlevel")
        if max_attempts < 1:
            raise InputError("expected at least 1", field="max_attempts")
        self.base = Path(base)
        self.privlevel = privlevel
        self.max_attempts = max_attempts
        self.files = files or TsmFiles()
        self.platform = Platform.SNP  # refined from `provider` on each attest()

    def attest(self, report_data: bytes) -> Evidence:
        """Request a report over exactly 64 bytes of report_data; retry if another writer races us."""
        if not isinstance(report_data, (bytes, bytearray)) or len(report_data) != REPORT_DATA_SIZE:
            size = len(report_data) if isinstance(report_data, (bytes, bytearray)) else type(report_data).__name__
            raise InputError(f"report_data must be exactly {REPORT_DATA_SIZE} bytes, got {size}",
                             field="report_data")
        last_seen = ""
        for attempt in range(1, self.max_attempts + 1):
            evidence, last_seen = self._attest_once(bytes(report_data))
            if evidence is not None:
                self.platform = evidence.platform
                return evidence
            log.warning("configfs-tsm: another writer changed the report request (%s); retrying (%d/%d)",
                        last_seen, attempt, self.max_attempts)
        raise VerificationError("tsm.generation",
                                f"another writer kept changing the report request in {self.base}; "
                                f"gave up after {self.max_attempts} attempts", expected="no concurrent writer",
                                found=last_seen)

    def _attest_once(self, report_data: bytes) -> tuple[Evidence | None, str]:
        entry = self.base / f"teenet-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            self.files.mkdir(entry)
        except OSError as exc:
            raise InputError(f"cannot create a report entry: {exc.strerror or exc} (is configfs mounted "
                             "with the tsm report interface, kernel 6.7+, and do you have the rights?)",
                             source=str(self.base)) from None
        try:
            platform = self._provider(entry)
            before = self._generation(entry)
            writes = 0
            if self.privlevel is not None:
                if platform is not Platform.SNP:
                    raise InputError("privlevel applies only to SEV-SNP guests", field="privlevel",
                                     source=str(entry))
                self._write(entry / "privlevel", str(self.privlevel).encode())
                writes += 1
            self._write(entry / "inblob", report_data)
            writes += 1
            outblob = self._read(entry / "outblob")
            auxblob = self._read_optional(entry / "auxblob")
            after = self._generation(entry)
            if after != before + writes:
                return None, f"generation {after}, expected {before + writes}"
            if not outblob:
                raise InputError("the kernel returned an empty report", source=str(entry / "outblob"))
            certificates = snp_certificates_from_auxblob(auxblob, outblob) if platform is Platform.SNP else ()
            provider = "configfs-tsm:" + ("sev_guest" if platform is Platform.SNP else "tdx_guest")
            return Evidence(platform, outblob, certificates, provider), ""
        finally:
            try:
                self.files.rmdir(entry)
            except OSError as exc:
                log.warning("configfs-tsm: could not remove report entry %s: %s", entry, exc.strerror or exc)

    def _provider(self, entry: Path) -> Platform:
        try:
            name = self.files.read(entry / "provider").decode("ascii", "replace").strip()
        except FileNotFoundError:
            raise InputError("no TSM provider is registered (no sev-guest or tdx-guest driver loaded?)",
                             source=str(entry / "provider")) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", source=str(entry / "provider")) from None
        if name not in PROVIDERS:
            raise InputError(f"unknown TSM provider {name[:40]!r}; expected one of {', '.join(sorted(PROVIDERS))}",
                             source=str(entry / "provider"))
        return PROVIDERS[name]

    def _generation(self, entry: Path) -> int:
        text = self._read(entry / "generation").decode("ascii", "replace").strip()
        try:
            return int(text)
        except ValueError:
            raise InputError(f"expected a decimal counter, found {text[:20]!r}",
                             source=str(entry / "generation")) from None

    def _read(self, path: Path) -> bytes:
        try:
            return self.files.read(path)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None

    def _read_optional(self, path: Path) -> bytes:
        try:
            return self.files.read(path)
        except FileNotFoundError:
            return b""  # TDX has no auxblob; SNP without host certificates leaves it out
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None

    def _write(self, path: Path, data: bytes) -> None:
        try:
            self.files.write(path, data)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", source=str(path)) from None


def parse_snp_certificate_table(blob: bytes) -> dict[str, bytes]:
    """Split an SNP certificate table into {"vcek"|"vlek"|"ask"|"ark": DER}; unknown GUIDs are skipped.

    Entries are GUID (16) + offset u32 + length u32, ended by an all-zero entry; offsets count
    from the start of the table and must point past the entries.
    """
    entries: list[tuple[bytes, int, int]] = []
    pos = 0
    while True:
        if pos + _CERT_TABLE_ENTRY.size > len(blob):
            raise InputError("certificate table has no all-zero terminating entry", source="auxblob")
        guid, offset, length = _CERT_TABLE_ENTRY.unpack_from(blob, pos)
        pos += _CERT_TABLE_ENTRY.size
        if guid == bytes(16) and offset == 0 and length == 0:
            break
        entries.append((guid, offset, length))
    table: dict[str, bytes] = {}
    for index, (guid, offset, length) in enumerate(entries):
        if offset < pos or offset + length > len(blob) or length == 0:
            raise InputError(f"entry {index} points outside the certificate data "
                             f"(offset {offset}, length {length}, table of {len(blob)} bytes)", source="auxblob")
        name = SNP_CERT_GUIDS.get(guid)
        if name is None:
            continue  # e.g. the CRL entry: not needed to chain the report
        if name in table:
            raise InputError(f"certificate table lists the {name.upper()} twice", source="auxblob")
        table[name] = blob[offset:offset + length]
    return table


def snp_certificates_from_auxblob(auxblob: bytes, report: bytes) -> tuple[bytes, ...]:
    """The chain for `Evidence.certificates`: the signing leaf (VCEK or VLEK), then ASK, then ARK.

    Empty when the host gave no certificates: the verifier then looks the VCEK up in its cache.
    """
    if not auxblob or auxblob == bytes(len(auxblob)):
        return ()
    table = parse_snp_certificate_table(auxblob)
    wants_vlek = len(report) > _SNP_KEY_INFO_OFFSET + 4 and \
        (struct.unpack_from("<I", report, _SNP_KEY_INFO_OFFSET)[0] >> 2) & 0x7 == 1
    leaf = table.get("vlek") if wants_vlek else table.get("vcek")
    if leaf is None:
        leaf = table.get("vcek") or table.get("vlek")
    if leaf is None:
        return ()
    return (leaf,) + tuple(table[name] for name in ("ask", "ark") if name in table)
