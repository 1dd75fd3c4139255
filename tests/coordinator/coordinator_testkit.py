"""Helpers for the coordinator tests: a consortium with real keys, jobs and decisions signed
the way the analyst CLI and the data nodes sign them."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from teenet.canonical import canonical_json, domain_message
from teenet.config import Consortium, Member
from teenet.coordinator.state import Coordinator, job_digest
from teenet.identity import MemberKeys

ROLES = {"alice": "analyst", "mallory": "analyst", "bank": "data", "telco": "data", "eve": "data",
         "enclave": "compute", "enclave2": "compute"}


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """Members' private keys and the consortium the coordinator sees."""

    keys: dict[str, MemberKeys]
    consortium: Consortium
    clock: Clock = field(default_factory=Clock)

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec = {"version": 1, "name": "overlap", "function": "psi", "compute": "enclave", "analyst": "alice",
                "consortium": "test-consortium", "nonce": secrets.token_hex(32),
                "inputs": [{"party": "bank", "table": "customers", "keys": ["email"], "columns": ["email"]},
                           {"party": "telco", "table": "subscribers", "keys": ["email"], "columns": ["email"]}],
                "params": {}, "release": [{"kind": "size", "to": ["alice", "bank"]}]}
        spec.update(overrides)
        return spec

    def signed_job(self, spec: dict[str, Any] | None = None, *, signer: str | None = None
                   ) -> tuple[bytes, str, bytes]:
        """(canonical spec, analyst, signature) as the analyst CLI submits them."""
        spec = spec if spec is not None else self.spec()
        raw = canonical_json(spec)
        key = self.keys[signer or spec["analyst"]].signing
        return raw, spec["analyst"], key.sign(domain_message("teenet/job-signature/v1", job_digest(raw)))

    def decision(self, job_id: str, party: str, verdict: str = "approve", reason: str = "policy ok", *,
                 signer: str | None = None) -> tuple[bytes, bytes]:
        raw = canonical_json({"version": 1, "job_id": job_id, "party": party, "decision": verdict,
                              "reason": reason})
        return raw, self.keys[signer or party].signing.sign(domain_message("teenet/decision/v1", raw))

    def cancel_signature(self, job_id: str, reason: str, signer: str = "alice") -> bytes:
        return self.keys[signer].signing.sign(domain_message("teenet/cancel/v1", bytes.fromhex(job_id),
                                                             reason.encode()))



def run_to_running(world: World, c: Coordinator) -> str:
    """Submit, approve by both owners, offer, upload both tables, report running; the job id."""
    out = c.submit_job(*world.signed_job())
    for party in ("bank", "telco"):
        c.submit_decision(out.job_id, party, *world.decision(out.job_id, party))
    c.post_offer(**offer_fields(out.job_id))
    c.report_status(out.job_id, "bank", "uploaded", "bank/customers")
    c.report_status(out.job_id, "telco", "uploaded", "telco/subscribers")
    c.report_status(out.job_id, "enclave", "running", "all inputs in")
    return out.job_id


def offer_fields(job_id: str, compute: str = "enclave") -> dict[str, Any]:
    return {"job_id": job_id, "compute": compute, "hpke_suite": "X25519-HKDF-SHA256-AES-256-GCM",
            "hpke_public_key": os.urandom(32), "signing_public_key": os.urandom(32),
            "evidence": b'{"platform": "sim-snp"}', "endpoint": "127.0.0.1:7100"}


def make_world() -> World:
    keys = {name: MemberKeys.generate() for name in ROLES}
    members = {name: Member(name=name, role=role, keys=keys[name].public(),
                            endpoint="127.0.0.1:7100" if role == "compute" else None)
               for name, role in ROLES.items()}
    consortium = Consortium(name="test-consortium", coordinator_name="coordinator",
                            coordinator_endpoint="127.0.0.1:7000", attestation=MappingProxyType({}),
                            members=MappingProxyType(members))
    return World(keys, consortium)


@dataclass
class TlsCoordinator:
    """A real coordinator serving mutual TLS on a loopback port, and a stub per member."""

    running: Any
    tls: dict[str, Any]
    channels: dict[str, Any] = field(default_factory=dict)

    def stub(self, member: str) -> Any:
        from teenet.pki import secure_channel
        from teenet.proto import teenet_pb2_grpc as rpc

        if member not in self.channels:
            self.channels[member] = secure_channel(f"127.0.0.1:{self.running.port}", self.tls[member],
                                                   server_name="coordinator")
        return rpc.CoordinatorStub(self.channels[member])

    def close(self, grace: float = 1) -> None:
        for channel in self.channels.values():
            channel.close()
        self.running.stop(grace=grace)


def serve_coordinator(world: World, base: Any, members: tuple[str, ...]) -> TlsCoordinator:
    """Start the real coordinator (server, store, audit) in this process, a dev PKI issuing
    `members` their client certificates, in folder `base`."""
    from teenet.coordinator.config import CoordinatorConfig
    from teenet.coordinator.server import serve
    from teenet.pki import DevPki

    pki = DevPki.create(base / "pki")
    tls = {name: pki.issue(name) for name in members + ("coordinator",)}
    config = CoordinatorConfig(name="coordinator", listen="127.0.0.1:0", consortium=base / "unused.yaml",
                               state_dir=base / "state", database=base / "state" / "coordinator.db",
                               audit_key=base / "state" / "audit.key", tls=tls["coordinator"], checkpoint_every=8)
    return TlsCoordinator(serve(config, consortium=world.consortium), tls)
