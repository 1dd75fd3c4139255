"""The leader's cluster CA: made in memory at start, never written in the clear, gone at exit.

It issues the leader's own scheduler/client certificate and, after admission, one
certificate per worker carrying that worker's admission evidence and its claims buffer in
the interoperable RA-TLS form (teenet.cluster.ratls), so any CCC RA-TLS verifier can check
that the evidence binds the certificate's key. Dask's TLS trusts only this CA, so only
admitted peers can join the cluster.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from teenet.attestation.evidence import Evidence
from teenet.cluster.ratls import endorsements_extension, evidence_extension, read_certificate
from teenet.errors import InputError

LIFETIME = datetime.timedelta(days=2)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class ClusterCA:
    def __init__(self, cluster_name: str) -> None:
        self.key = new_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = _name(f"teenet cluster CA {cluster_name}")
        self.certificate = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("teenet-cluster-ca"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))

    def issue(self, common_name: str, public_key: ec.EllipticCurvePublicKey, *,
              evidence: Evidence | None = None, claims_buffer: bytes | None = None,
              hosts: tuple[str, ...] = ()) -> x509.Certificate:
        """A leaf for client and server auth. `evidence` and the `claims_buffer` its
        report_data binds go in the RA-TLS extensions (SNP: its certificates as endorsements);
        the issued certificate is read back, and refused unless the claims' pubkey-hash is
        this `public_key` and the report_data binds the claims."""
        now = datetime.datetime.now(datetime.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(common_name)]
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(self.name)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False))
        if evidence is not None:
            if claims_buffer is None:
                raise InputError("a certificate with evidence needs the claims buffer its report_data binds")
            # Non-critical, as the CCC documents require: OpenSSL and mbedTLS refuse a
            # certificate with an unknown critical extension.
            builder = builder.add_extension(evidence_extension(evidence, claims_buffer), critical=False)
            endorsements = endorsements_extension(evidence)
            if endorsements is not None:
                builder = builder.add_extension(endorsements, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        if evidence is not None:
            read_certificate(cert)  # fail closed: the binding to this key must hold
        return cert
