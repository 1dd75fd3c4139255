"""Admission: a worker joins a cluster only after the leader has verified its evidence.

Mutual attestation over one TLS connection to the leader's admission port. Messages are
length-prefixed (4-byte big-endian) JSON objects, at most 1 MiB; no pickle.

1. worker -> leader  {"nonce": b64(32 random bytes)}
2. leader -> worker  {"ca": PEM, "nonce": b64(32 bytes), "evidence": Evidence JSON}
   The TLS server certificate is the cluster CA certificate itself; the leader's evidence
   binds the CA's public key and the worker's nonce in report_data. The worker checks the
   TLS peer certificate IS that CA certificate, then verifies the evidence with
   teenet.attestation (platform chain, its policy, the binding).
3. worker -> leader  {"name": str, "public_key": PEM, "evidence": Evidence JSON}
   The worker's fresh transport (TLS) key and the leader's nonce are bound in report_data.
4. leader -> worker  {"certificate": PEM, "scheduler": "tls://host:port"} or
                     {"refused": "<fixed text naming the check>", "retry": bool}
   ("retry": true only when the refusal may pass later: a worker of that name is still
   connected to the scheduler; the worker then tries again, with backoff.)

    claims-buffer = CBOR {"pubkey-hash": h'CBOR [1, SHA-256(SPKI DER)]', "nonce": h'<peer's nonce>',
                          "teenet-domain": 'teenet/cluster-admission/v1/' || role}
    report_data   = SHA-256(claims-buffer) || 32 zero bytes

the CCC interoperable RA-TLS claims (teenet.cluster.ratls) with role "leader" (SPKI of the
CA key) or "worker" (SPKI of its transport key); the domain claim keeps one role's evidence
from standing for the other's, or for any other teenet purpose. The leader issues the
worker a certificate carrying exactly that evidence and claims buffer. The policy both
sides apply is the measurement the verifier itself runs plus any further policy the
deployment gives (the leader: every owners' policy it can know, each named in a refusal,
see admission_policy); simulated evidence verifies only when the verifier's roots pin the
simulated ARK, which only an `allow_simulated: true` config does (and logs loudly).

A name is admitted again (a restarted worker: fresh evidence, fresh key, new certificate,
replacing the old entry) only when no worker of that name is connected to the scheduler;
while one is, the second is refused with "retry" (an impostor cannot displace a live worker).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from teenet.attestation.evidence import Attester, Evidence, TrustRoots
from teenet.attestation.policy import AllOf, MeasurementAllowlist, Policy
from teenet.attestation.verifier import verify_evidence
from teenet.cluster.ca import ClusterCA, cert_pem
from teenet.cluster.config import WORKER_NAME
from teenet.cluster.ratls import claims_buffer, report_data_for_claims
from teenet.errors import InputError, VerificationError

log = logging.getLogger("teenet.cluster.admission")
MAX_MESSAGE = 1024 * 1024
NONCE_SIZE = 32
TIMEOUT = 30.0
MAX_HANDSHAKES = 16  # admissions in progress at once


class AdmissionRefused(Exception):
    """The other side refused, or its evidence did not verify. The text names the check."""


class AdmissionRetry(AdmissionRefused):
    """Admission did not happen but may later: the leader is unreachable, the connection broke,
    or the leader said "retry" (a worker of this name is still connected)."""


DOMAIN_CLAIM = "teenet-domain"


def admission_claims(role: str, nonce: bytes, public_key: Any) -> bytes:
    """The CCC claims buffer an admission evidence binds: pubkey-hash of `public_key`, the
    peer's `nonce` and the teenet domain claim naming the role."""
    if role not in ("leader", "worker"):
        raise InputError(f"unknown admission role {role!r}; expected leader or worker")
    return claims_buffer(public_key, nonce=nonce,
                         extra={DOMAIN_CLAIM: b"teenet/cluster-admission/v1/" + role.encode()})


def report_data_for_admission(role: str, nonce: bytes, public_key: Any) -> bytes:
    """SHA-256(admission_claims(...)) || 32 zero bytes, the CCC RA-TLS report_data."""
    return report_data_for_claims(admission_claims(role, nonce, public_key))


def _send(sock: ssl.SSLSocket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise AdmissionRetry("the peer closed the admission connection")
        out += chunk
    return bytes(out)


def _recv(sock: ssl.SSLSocket, required: tuple[str, ...]) -> dict[str, Any]:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    if size > MAX_MESSAGE:
        raise AdmissionRefused(f"admission message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    try:
        message = json.loads(_recv_exact(sock, size))
    except ValueError:
        raise AdmissionRefused("admission message is not JSON") from None
    if not isinstance(message, dict):
        raise AdmissionRefused("admission message is not a JSON object")
    if "refused" in message:
        text = message["refused"] if isinstance(message["refused"], str) else "(no reason given)"
        if message.get("retry") is True:
            raise AdmissionRetry(f"refused by the peer for now: {text}")
        raise AdmissionRefused(f"refused by the peer: {text}")
    for name in required:
        if not isinstance(message.get(name), (str, dict)):
            raise AdmissionRefused(f"admission message has no field '{name}'")
    return message


def _nonce(message: dict[str, Any]) -> bytes:
    try:
        nonce = base64.b64decode(message["nonce"], validate=True)
    except (ValueError, TypeError):
        raise AdmissionRefused("field 'nonce' is not base64") from None
    if len(nonce) != NONCE_SIZE:
        raise AdmissionRefused(f"field 'nonce' must be {NONCE_SIZE} bytes")
    return nonce


def _verify(evidence_json: Any, roots: TrustRoots, policy: Policy, expected: bytes, who: str) -> Evidence:
    try:
        evidence = Evidence.from_json(evidence_json, source=f"{who} evidence")
        verify_evidence(evidence, roots, policy, expected)
    except (InputError, VerificationError) as exc:
        raise AdmissionRefused(f"{who} evidence refused: {exc}") from None
    return evidence


def verifier_policy(own_measurement: bytes, extra: Policy | None = None) -> Policy:
    """The peer must run exactly the measurement the verifier runs (plus `extra`)."""
    parts: list[Policy] = [MeasurementAllowlist([own_measurement])]
    if extra is not None:
        parts.append(extra)
    return AllOf(parts)


@dataclass(frozen=True)
class NamedPolicy:
    """A policy whose refusal names where it comes from: the check becomes
    "<label>: <check>", e.g. "consortium attestation policy: policy.measurement"."""

    label: str
    policy: Policy

    def verify(self, claims: Any) -> None:
        try:
            self.policy.verify(claims)
        except VerificationError as exc:
            raise VerificationError(f"{self.label}: {exc.check}", exc.message, expected=exc.expected,
                                    found=exc.found) from None


def admission_policy(own_measurement: bytes, owners: list[tuple[str, Policy]]) -> Policy:
    """What the leader admits a worker under: its own measurement, and every policy of the
    owners it can know (each `(label, policy)`: the consortium's attestation policy, its own
    `policy.compute_attestation` if set); each refuses with its label in the check."""
    return AllOf([NamedPolicy("leader measurement", MeasurementAllowlist([own_measurement])),
                  *(NamedPolicy(label, policy) for label, policy in owners)])


@dataclass(frozen=True)
class Admitted:
    name: str
    certificate: x509.Certificate
    evidence: Evidence


class AdmissionServer:
    """The leader's admission port. Each admitted worker gets a CA-signed certificate with
    its evidence, kept in `admitted` (one entry per name). Refusals are logged with the
    check that failed.

    `connected(name)` says whether a worker of that name is connected to the scheduler now.
    A name already admitted is admitted again (its entry replaced: a restarted worker) only
    when it is not; without `connected`, never (a second admission is refused with retry)."""

    def __init__(self, ca: ClusterCA, attester: Attester, roots: TrustRoots, policy: Policy,
                 scheduler_address: Callable[[], str], *, host: str = "127.0.0.1", port: int = 0,
                 expected_workers: int | None = None, connected: Callable[[str], bool] | None = None) -> None:
        self._ca = ca
        self._attester = attester
        self._roots = roots
        self._policy = policy
        self._scheduler_address = scheduler_address
        self._expected = expected_workers
        self._connected = connected
        self.admitted: dict[str, Admitted] = {}
        self._lock = threading.Lock()
        self._handshakes = threading.BoundedSemaphore(MAX_HANDSHAKES)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        pair = _temp_pair(ca)
        try:
            self._ctx.load_cert_chain(*pair)
        finally:
            _release(pair)  # ssl has read them: the CA key stays only in this process's memory
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.5)
        self.address = f"{host}:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cluster-admission", daemon=True)

    def start(self) -> "AdmissionServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            if not self._handshakes.acquire(blocking=False):
                # Each admission costs the leader an attestation before the peer has proved
                # anything: at most MAX_HANDSHAKES at a time; the rest are closed at once.
                log.warning("cluster admission: %d handshakes already running; connection closed", MAX_HANDSHAKES)
                raw.close()
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            self._handle_one(raw)
        finally:
            self._handshakes.release()

    def _handle_one(self, raw: socket.socket) -> None:
        raw.settimeout(TIMEOUT)
        try:
            with self._ctx.wrap_socket(raw, server_side=True) as sock:
                try:
                    self._admit(sock)
                except AdmissionRefused as exc:
                    log.warning("cluster admission refused: %s", exc)
                    try:
                        _send(sock, {"refused": str(exc), "retry": isinstance(exc, AdmissionRetry)})
                    except OSError:
                        pass
        except (OSError, ssl.SSLError) as exc:
            log.warning("cluster admission connection failed: %s", type(exc).__name__)

    def _admit(self, sock: ssl.SSLSocket) -> None:
        worker_nonce = _nonce(_recv(sock, ("nonce",)))
        leader_nonce = secrets.token_bytes(NONCE_SIZE)
        own = self._attester.attest(report_data_for_admission("leader", worker_nonce, self._ca.key.public_key()))
        _send(sock, {"ca": cert_pem(self._ca.certificate).decode(), "nonce": base64.b64encode(leader_nonce).decode(),
                     "evidence": own.to_json()})
        hello = _recv(sock, ("name", "public_key", "evidence"))
        name = hello["name"]
        if not isinstance(name, str) or not WORKER_NAME.fullmatch(name):
            raise AdmissionRefused("field 'name': expected 1-64 letters, digits, '-' or '_'")
        try:
            public_key = serialization.load_pem_public_key(hello["public_key"].encode())
        except (ValueError, AttributeError):
            raise AdmissionRefused("field 'public_key': expected a PEM public key") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AdmissionRefused("field 'public_key': expected an EC P-256 key")
        worker_claims = admission_claims("worker", leader_nonce, public_key)
        evidence = _verify(hello["evidence"], self._roots, self._policy,
                           report_data_for_claims(worker_claims), f"worker '{name}'")
        with self._lock:
            again = name in self.admitted
            if again and (self._connected is None or self._connected(name)):
                # The admitted worker of this name is still in the cluster: a second one must not
                # displace it. Once the scheduler has dropped it, the same name is admitted again.
                raise AdmissionRetry(f"a worker named '{name}' is admitted and still connected to the cluster")
            if not again and self._expected is not None and len(self.admitted) >= self._expected:
                raise AdmissionRefused(f"the cluster already has its {self._expected} expected workers")
            previous = self.admitted[name].certificate.serial_number if again else 0
            try:
                cert = self._ca.issue(name, public_key, evidence=evidence, claims_buffer=worker_claims,
                                      hosts=("127.0.0.1",))
            except InputError as exc:
                raise AdmissionRefused(f"worker '{name}' evidence cannot go in an RA-TLS certificate: {exc}") from None
            self.admitted[name] = Admitted(name, cert, evidence)  # replaces a gone worker's entry
        if again:
            log.info("cluster admission: worker '%s' admitted again (evidence verified; its previous certificate, "
                     "serial %x, is superseded by serial %x)", name, previous, cert.serial_number)
        else:
            log.info("cluster admission: worker '%s' admitted (evidence verified, measurement %s...)",
                     name, "pinned")
        _send(sock, {"certificate": cert_pem(cert).decode(), "scheduler": self._scheduler_address()})


def request_admission(leader: str, name: str, key: ec.EllipticCurvePrivateKey, attester: Attester,
                      roots: TrustRoots, policy: Policy) -> tuple[bytes, bytes, str]:
    """Join the leader at host:port; returns (CA PEM, certificate PEM, scheduler address)
    or raises AdmissionRefused naming the check that failed."""
    host, _, port = leader.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # The server certificate is checked below against the CA whose key the leader's
    # evidence binds: attestation, not a public CA, is what authenticates the leader.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    worker_nonce = secrets.token_bytes(NONCE_SIZE)
    try:
        raw = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    except OSError as exc:
        raise AdmissionRetry(f"cannot reach the leader's admission port {leader}: {exc.strerror or exc}") from None
    with ctx.wrap_socket(raw) as sock:
        _send(sock, {"nonce": base64.b64encode(worker_nonce).decode()})
        offer = _recv(sock, ("ca", "nonce", "evidence"))
        try:
            ca = x509.load_pem_x509_certificate(offer["ca"].encode())
        except ValueError:
            raise AdmissionRefused("field 'ca': expected a PEM certificate") from None
        peer = sock.getpeercert(binary_form=True)
        if peer != ca.public_bytes(serialization.Encoding.DER):
            raise AdmissionRefused("the leader's TLS certificate is not the CA its evidence binds")
        _verify(offer["evidence"], roots, policy,
                report_data_for_admission("leader", worker_nonce, ca.public_key()), "leader")
        leader_nonce = _nonce(offer)
        public_key = key.public_key()
        evidence = attester.attest(report_data_for_admission("worker", leader_nonce, public_key))
        _send(sock, {"name": name, "evidence": evidence.to_json(),
                     "public_key": public_key.public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()})
        done = _recv(sock, ("certificate", "scheduler"))
    return offer["ca"].encode(), done["certificate"].encode(), done["scheduler"]


def _temp_pair(ca: ClusterCA) -> tuple[str, str]:
    """ssl wants files: the CA cert and key as memory-only files (dask_tls.private_files)."""
    from teenet.cluster.dask_tls import private_files

    return private_files({"admission.pem": cert_pem(ca.certificate), "admission.key": _key(ca)})


def _release(paths: tuple[str, ...]) -> None:
    from teenet.cluster.dask_tls import release

    release(paths)


def _key(ca: ClusterCA) -> bytes:
    from teenet.cluster.ca import key_pem

    return key_pem(ca.key)
