"""Everything a running node holds: its config, keys, enclave, catalog, state and links."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from teenet.attestation.policy import AllOf, policy_from_config
from teenet.audit import AuditLog
from teenet.config import Consortium, NodeConfig, load_node_config
from teenet.identity import MemberKeys
from teenet.pki import TlsFiles
from teenet.node.catalog import Catalog
from teenet.node.enclave import EnclaveRuntime, build_enclave
from teenet.node.links import CoordinatorLink
from teenet.node.store import NodeStore

log = logging.getLogger("teenet.node")


@dataclass
class NodeRuntime:
    config: NodeConfig
    consortium: Consortium
    keys: MemberKeys
    enclave: EnclaveRuntime
    catalog: Catalog
    store: NodeStore
    audit_log: AuditLog
    coordinator: CoordinatorLink
    tls: TlsFiles
    compute_policy: AllOf
    data_policy: AllOf
    compute_measurements: tuple[str, ...]
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.config.node

    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def audit(self, event: str, **fields: Any) -> None:
        self.audit_log.append({"event": event, "node": self.name, **fields})

    def close(self) -> None:
        self.coordinator.close()
        self.store.close()
        self.audit_log.close()


def open_runtime(config_path: Path) -> NodeRuntime:
    config = load_node_config(config_path)
    consortium = config.consortium
    enclave = build_enclave(config.enclave.backend, config.enclave.sim_dir,
                            intel_collateral=config.enclave.intel_collateral)
    # Long-term keys are read (and, under key_protection, decrypted or unsealed) at start:
    # a key or key folder others can read, a symbolic link, or a wrong passphrase stops here.
    protection = config.key_protection.resolve(enclave.derive_sealing_key)
    keys = MemberKeys.load(config.keys_dir, protection)
    tls = replace(config.tls, protection=protection)
    tls.read()
    state_dir = config.state_dir
    store = NodeStore(state_dir / "node.db")
    audit_log = AuditLog(state_dir / "audit.db", keys.signing)
    src = str(config_path)
    compute_cfg = config.policy.compute_attestation if config.policy else None
    data_cfg = config.policy.data_attestation if config.policy else None
    compute_policy = policy_from_config(compute_cfg, source=f"{src}: policy.compute_attestation")
    data_policy = policy_from_config(data_cfg, source=f"{src}: policy.data_attestation")
    measurements = tuple(m.lower() for m in ((compute_cfg or {}).get("measurements") or []))
    link = CoordinatorLink(config.coordinator, tls, consortium.coordinator_name)
    return NodeRuntime(config, consortium, keys, enclave, Catalog.from_config(config.tables), store, audit_log,
                       link, tls, compute_policy, data_policy, measurements)
