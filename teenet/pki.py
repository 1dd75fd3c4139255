"""A development PKI for a consortium on one machine, and the gRPC TLS plumbing.

`DevPki.create` makes a CA and, per member, a certificate whose common name is the member's
consortium name (with loopback SANs for servers). Every gRPC connection is mutual TLS: a
server learns who called from the client certificate (`peer_name`), and a client checks the
server's name. In production the consortium replaces this CA with its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
import grpc

from teenet.errors import InputError
from teenet.keyfiles import NO_PROTECTION, KeyProtection, ensure_key_folder, read_private_key, write_private_key

# gRPC's default is 4 MiB; sealed chunks are at most 3 MiB plus framing.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# A peer that vanishes without a reset (a silent partition) is noticed within about 15-25 s:
# clients ping during calls, and servers accept those pings. gRPC core times out an
# unanswered ping after `ping_timeout_ms` (default 60 s), not after keepalive_timeout_ms,
# when the stream is stalled under flow control; measured with a proxy that stops
# forwarding (tests/faults: test_silent_partition_...): 60 s without it, 15 s with it.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 15_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    *KEEPALIVE_OPTIONS,
]
# The coordinator's mailbox takes a job's sealed results in one message (a model or a list
# of ids can pass 4 MiB); it refuses more than this per job anyway.
MAX_RESULTS_MESSAGE_BYTES = 64 * 1024 * 1024
COORDINATOR_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_RESULTS_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_RESULTS_MESSAGE_BYTES),
    *KEEPALIVE_OPTIONS,
]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a member's TLS material: the consortium CA, its certificate and key.

    The key is a long-term secret (read by teenet.keyfiles: private folder, mode 0600, no
    symbolic link, decrypted under `protection`); the CA and certificate are public.
    """

    ca: Path
    cert: Path
    key: Path
    protection: KeyProtection = field(default=NO_PROTECTION, compare=False)

    def read(self) -> tuple[bytes, bytes, bytes]:
        """CA, certificate and the key as unencrypted PKCS#8 PEM (in memory only, for gRPC)."""
        out = []
        for name, path in (("ca", self.ca), ("cert", self.cert)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise InputError(f"cannot read TLS {name}: {exc.strerror}", source=str(path)) from None
        from cryptography.hazmat.primitives import serialization

        key = read_private_key(self.key, self.protection)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return out[0], out[1], pem


class DevPki:
    """A CA on disk under `directory` that issues member certificates."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def create(cls, directory: Path) -> "DevPki":
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ensure_key_folder(directory)  # it holds the CA's and the members' TLS keys
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "teenet development"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "teenet development CA")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(key, hashes.SHA256()))
        write_private_key(directory / "ca.key", key)
        (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory)

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    def issue(self, member: str, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
        """Issue `member`'s certificate (client and server use) with loopback SANs."""
        # Imported here: a CLI command that only connects must not pay for x509 (docs/cli.md).
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = read_private_key(self.directory / "ca.key")
        ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(member)]
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, member)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=397))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        cert_path = self.directory / f"{member}.pem"
        key_path = self.directory / f"{member}.key"
        write_private_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return TlsFiles(self.ca_path, cert_path, key_path)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server side of mutual TLS: clients must present a certificate from the consortium CA."""
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def secure_channel(target: str, tls: TlsFiles, *, server_name: str,
                   options: list[tuple[str, int]] | None = None) -> grpc.Channel:
    """A mutual-TLS channel to `target` whose certificate must name `server_name`."""
    ca, cert, key = tls.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    options = (options or GRPC_OPTIONS) + [("grpc.ssl_target_name_override", server_name)]
    return grpc.secure_channel(target, creds, options=options)


def peer_name(context: grpc.ServicerContext) -> str:
    """The consortium name of the caller, from its verified client certificate."""
    auth = context.auth_context()
    names = auth.get("x509_common_name") or []
    if len(names) != 1:
        return ""
    return names[0].decode("utf-8", "replace")
