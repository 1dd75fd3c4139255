"""The vendor roots teenet pins, loaded from the package's `pinned/` folder.

`pinned/amd-<product>.pem` holds AMD's ARK (the trust anchor) and, for convenience, the
ASK and ASVK it issued, for Milan, Genoa and Turin; `pinned/intel-sgx-root-ca.pem` holds
the Intel SGX Root CA (TDX and SGX DCAP). A pinned file that is present but broken is an
installation fault and raises; an absent one only means evidence for that vendor or
product is refused.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from teenet.attestation.evidence import IntelCollateral, TrustRoots
from teenet.errors import InputError

AMD_PRODUCTS = ("Milan", "Genoa", "Turin")
INTEL_SGX_ROOT_FILE = "intel-sgx-root-ca.pem"


def default_trust_roots(*, sim_ark: x509.Certificate | None = None, now: datetime | None = None,
                        vcek_cache: str | None = None, intel_collateral: IntelCollateral | None = None) -> TrustRoots:
    """The pinned AMD ARKs and Intel root; `sim_ark` only where simulated evidence is allowed."""
    arks = {product: chain[0] for product in AMD_PRODUCTS if (chain := _amd_chain(product))}
    return TrustRoots(amd_arks=arks, intel_sgx_root=_intel_sgx_root(), sim_ark=sim_ark,
                      vcek_cache=vcek_cache, now=now, intel_collateral=intel_collateral)


def pinned_amd_intermediates(product: str) -> tuple[x509.Certificate, ...]:
    """AMD's ASK and ASVK for a product line, each already checked against its pinned ARK."""
    chain = _amd_chain(product) if product in AMD_PRODUCTS else ()
    return tuple(chain[1:])


def _pinned_text(name: str) -> bytes | None:
    entry = resources.files("teenet.attestation").joinpath("pinned", name)
    try:
        return entry.read_bytes()
    except FileNotFoundError:
        return None


@functools.cache
def _amd_chain(product: str) -> tuple[x509.Certificate, ...]:
    """(ARK, intermediates...) from pinned/amd-<product>.pem, or () if the file is absent."""
    name = f"amd-{product.lower()}.pem"
    data = _pinned_text(name)
    if data is None:
        return ()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError("pinned AMD certificates are unreadable", source=f"pinned/{name}") from None
    arks = [c for c in certs if c.subject == c.issuer and _cn(c) == f"ARK-{product}"]
    if len(arks) != 1:
        raise InputError(f"expected exactly one self-signed ARK-{product}", source=f"pinned/{name}")
    ark = arks[0]
    intermediates = [c for c in certs if c is not ark]
    for cert in [ark, *intermediates]:
        if cert.issuer != ark.subject or not _signed_by(cert, ark):
            raise InputError(f"{_cn(cert)} is not signed by ARK-{product}", source=f"pinned/{name}")
    return (ark, *intermediates)


@functools.cache
def _intel_sgx_root() -> x509.Certificate | None:
    data = _pinned_text(INTEL_SGX_ROOT_FILE)
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InputError("the pinned Intel SGX Root CA is unreadable", source=f"pinned/{INTEL_SGX_ROOT_FILE}") from None


def _signed_by(cert: x509.Certificate, ark: x509.Certificate) -> bool:
    key = ark.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
