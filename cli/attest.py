"""`teenet attest verify`: check a piece of evidence offline and print what it proves.

FILE is Evidence JSON (as `Evidence.to_bytes` writes it) or a raw report or quote. The
verification is the same `verify_evidence` the nodes run; the policy is built from the
options, and the output says plainly what was *not* checked (no measurement allowlist, no
report_data binding, simulated evidence).
"""

from __future__ import annotations

import enum
import struct
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.table import Table

from teenet.attestation.evidence import Claims, Evidence, Platform
from teenet.attestation.policy import (
    AllOf, DebugDisabled, MeasurementAllowlist, Policy, RequireHardware, UnsafeAllowSimulated,
)
from teenet.attestation.roots import default_trust_roots
from teenet.attestation.snp import REPORT_SIZE, load_certificates
from teenet.attestation.verifier import verify_evidence
from teenet.cli.output import JSON_HELP, emit
from teenet.errors import InputError, VerificationError

app = typer.Typer(no_args_is_help=True)

_TEE_TYPE_SGX = 0x00000000
_TEE_TYPE_TDX = 0x00000081


class PlatformChoice(str, enum.Enum):
    auto = "auto"
    snp = "snp"
    sim_snp = "sim-snp"
    tdx = "tdx"
    sgx = "sgx"


@app.command("verify")
def verify(
    file: Path = typer.Argument(..., help="Evidence JSON, or a raw SNP report / DCAP quote."),
    platform: PlatformChoice = typer.Option(PlatformChoice.auto, "--platform",
                                            help="What a raw FILE is (auto: by size and header)."),
    certs: list[Path] = typer.Option([], "--cert", help="A DER or PEM certificate (VCEK/VLEK, ASK); repeatable."),
    measurements: list[str] = typer.Option([], "--measurement", help="An allowed measurement (hex); repeatable."),
    allow_simulated: bool = typer.Option(False, "--allow-simulated",
                                         help="INSECURE: accept simulated evidence (needs --sim-root)."),
    allow_debug: bool = typer.Option(False, "--allow-debug", help="Accept an enclave that allows debugging."),
    report_data: str | None = typer.Option(None, "--report-data", help="Expected report_data (64 bytes, hex)."),
    at: str | None = typer.Option(None, "--at", help="Verify as of this ISO-8601 time (default: now)."),
    sim_root: Path | None = typer.Option(None, "--sim-root",
                                         help="Simulated platform directory whose ARK to pin."),
    tcb_info: Path | None = typer.Option(None, "--tcb-info", help="TDX/SGX: Intel TCB info JSON (collateral)."),
    qe_identity: Path | None = typer.Option(None, "--qe-identity", help="TDX/SGX: Intel QE identity JSON."),
    collateral_chain: Path | None = typer.Option(None, "--collateral-chain",
                                                 help="PEM chain of the collateral's signing certificate."),
    tcb_status: list[str] = typer.Option(["UpToDate"], "--tcb-status",
                                         help="A TCB status to accept with --tcb-info; repeatable."),
    crls: list[Path] = typer.Option([], "--crl", help="TDX/SGX: a CRL of the PCK chain (Intel's PCK CA "
                                    "and root CA CRLs, DER or PEM); repeatable. Checks revocation."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Verify attestation evidence: signature, chain to a pinned root, policy, binding."""
    if sim_root is not None and not allow_simulated:
        raise InputError("--sim-root pins a simulated root and needs --allow-simulated")
    evidence = _read_evidence(file, platform, certs)
    if evidence.platform.simulated and not allow_simulated:
        raise VerificationError("policy.hardware", "this is SIMULATED evidence; no hardware protects it",
                                expected="hardware evidence, or --allow-simulated --sim-root DIR for development",
                                found=evidence.platform.value)
    sim_ark = None
    if allow_simulated:
        if sim_root is None:
            raise InputError("--allow-simulated needs --sim-root DIR (the simulated platform whose root to pin)")
        from teenet.attestation.sim import read_sim_ark

        sim_ark = read_sim_ark(sim_root)
    roots = default_trust_roots(sim_ark=sim_ark, now=_parse_time(at))
    policy = _policy(measurements, allow_simulated=allow_simulated, allow_debug=allow_debug)
    expected = _hex_option(report_data, "--report-data", size=64) if report_data is not None else None
    try:
        if tcb_info is not None:
            claims = _verify_with_collateral(evidence, roots, policy, expected, tcb_info, qe_identity,
                                             collateral_chain, tcb_status)
        else:
            claims = verify_evidence(evidence, roots, policy, expected)
    except ImportError:
        raise VerificationError("evidence.platform", f"{evidence.platform.value} verification is not available "
                                "in this installation") from None
    dcap = evidence.platform in (Platform.TDX, Platform.SGX)
    if crls:
        if not dcap:
            raise InputError("--crl applies to TDX and SGX quotes (the PCK chain)")
        _check_revocation(evidence, crls, roots.now)

    warnings = _unchecked(claims, measurements_given=bool(measurements), report_data_given=expected is not None)
    if dcap and not crls:
        warnings.append("revocation NOT checked (no --crl): a revoked PCK certificate would pass")
    data = {**claims.to_json(), "verified": True, "measurement_checked": bool(measurements),
            "report_data_checked": expected is not None, "provider": evidence.provider, "warnings": warnings}
    emit(data, as_json, lambda console: _render(console, claims, warnings))


def _verify_with_collateral(evidence: Evidence, roots, policy, expected: bytes | None, tcb_info: Path,
                            qe_identity: Path | None, chain: Path | None, allowed: list[str]):
    """DCAP verification plus TCB status from Intel collateral, then the policy and binding."""
    from teenet.attestation.collateral import TcbStatusIn, verify_with_collateral
    from teenet.attestation.policy import ReportDataMatches

    if chain is None:
        raise InputError("--tcb-info needs --collateral-chain (the PEM chain that signed the collateral)")

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None

    claims, _ = verify_with_collateral(evidence, roots, read(tcb_info), read(qe_identity) if qe_identity else None,
                                       read(chain), policy=TcbStatusIn(frozenset(allowed)))
    policy.verify(claims)
    if expected is not None:
        ReportDataMatches(expected).verify(claims)
    return claims


def _check_revocation(evidence: Evidence, crl_files: list[Path], now) -> None:
    from teenet.attestation.collateral import check_pck_revocation, parse_crl
    from teenet.attestation.dcap_quote import parse_quote

    crls = []
    for path in crl_files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
        crls.append(parse_crl(data, str(path)))
    check_pck_revocation(parse_quote(evidence.report).certification.pck_chain_pem, crls, now)


def _read_evidence(file: Path, platform: PlatformChoice, cert_files: list[Path]) -> Evidence:
    source = str(file)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=source) from None
    extra = tuple(der for path in cert_files for der in _read_certificates(path))
    if raw.lstrip()[:1] == b"{":
        evidence = Evidence.from_bytes(raw, source=source)
        if platform is not PlatformChoice.auto and evidence.platform.value != platform.value:
            raise InputError(f"the evidence says platform {evidence.platform.value}, not {platform.value}",
                             source=source, field="platform")
        return Evidence(evidence.platform, evidence.report, evidence.certificates + extra, evidence.provider)
    chosen = _detect_platform(raw, source) if platform is PlatformChoice.auto else Platform(platform.value)
    return Evidence(chosen, raw, extra, provider=f"file:{file.name}")


def _detect_platform(raw: bytes, source: str) -> Platform:
    """A raw SNP report is exactly 0x4A0 bytes; a DCAP quote starts with a u16 version and,
    at offset 4, a u32 TEE type (0 for SGX, 0x81 for TDX)."""
    if len(raw) == REPORT_SIZE:
        return Platform.SNP
    if len(raw) >= 8:
        version, tee_type = struct.unpack_from("<H", raw, 0)[0], struct.unpack_from("<I", raw, 4)[0]
        if version in (3, 4, 5) and tee_type == _TEE_TYPE_SGX:
            return Platform.SGX
        if version in (4, 5) and tee_type == _TEE_TYPE_TDX:
            return Platform.TDX
    raise InputError(f"neither evidence JSON nor a known report or quote ({len(raw)} bytes); expected an "
                     f"SEV-SNP report ({REPORT_SIZE} bytes) or a DCAP quote; use --platform to say which",
                     source=source)


def _read_certificates(path: Path) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        blob = path.read_bytes()
    except OSError:
        raise InputError("certificate file not found or unreadable", source=str(path)) from None
    try:
        certs = load_certificates(blob)
    except ValueError:
        raise InputError("not a DER or PEM X.509 certificate", source=str(path)) from None
    return [c.public_bytes(Encoding.DER) for c in certs]


def _policy(measurements: list[str], *, allow_simulated: bool, allow_debug: bool) -> Policy:
    parts: list[Policy] = [UnsafeAllowSimulated() if allow_simulated else RequireHardware()]
    if measurements:
        parts.append(MeasurementAllowlist(_hex_option(m, "--measurement") for m in measurements))
    if not allow_debug:
        parts.append(DebugDisabled())
    return AllOf(parts)


def _hex_option(value: str, option: str, *, size: int | None = None) -> bytes:
    try:
        data = bytes.fromhex(value.strip())
    except ValueError:
        raise InputError(f"{option}: not hex: {value[:20]!r}") from None
    if size is not None and len(data) != size:
        raise InputError(f"{option}: expected {size} bytes ({2 * size} hex digits), got {len(data)}")
    return data


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at: not an ISO-8601 time: {value!r} (e.g. 2025-06-01T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _unchecked(claims: Claims, *, measurements_given: bool, report_data_given: bool) -> list[str]:
    warnings = []
    if claims.simulated:
        warnings.append("SIMULATED evidence: software signed it, no hardware protects this enclave")
    if not measurements_given:
        warnings.append("measurement NOT checked against an allowlist; pin it with --measurement "
                        + claims.measurement.hex())
    if not report_data_given:
        warnings.append("report_data NOT checked (no --report-data): the evidence is not bound to any job or key")
    if claims.debug:
        warnings.append("the enclave allows debugging (--allow-debug)")
    return warnings


def _render(console, claims: Claims, warnings: list[str]) -> None:
    title = "verified" + (" (SIMULATED)" if claims.simulated else "")
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("fact", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("platform", claims.platform.value)
    table.add_row("signer", claims.signer)
    table.add_row("version", str(claims.version))
    table.add_row("measurement", claims.measurement.hex())
    table.add_row("report_data", claims.report_data.hex())
    table.add_row("debug", "on" if claims.debug else "off")
    if claims.vmpl is not None:
        table.add_row("vmpl", str(claims.vmpl))
    table.add_row("tcb", ", ".join(f"{k}={v}" for k, v in claims.tcb.items()) or "-")
    for key, value in sorted(claims.details.items()):
        table.add_row(key, str(value))
    console.print(table)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", markup=True)
