"""The coordinator's config file: where it listens, whom it serves, where it keeps its state.

    name: coordinator            # must be the consortium file's coordinator name
    listen: 127.0.0.1:7000        # host:port (port 0 picks a free one)
    consortium: consortium.yaml
    state_dir: state/coordinator  # optional, default: the config file's folder
    database: coordinator.db      # optional, default: <state_dir>/coordinator.db
    audit_key: audit.key          # optional, default: <state_dir>/audit.key (made if absent); its
                                  # folder must be mode 0700 and the key 0600 (teenet.keyfiles)
    checkpoint_every: 64          # optional: sign the audit chain every N entries
    max_result_bytes: 4294967296  # optional: sealed results one job may store (default 4 GiB)
    compute_silence: 60           # optional: seconds a compute node may go without polling
                                  # before its negotiating/running jobs fail (default 60)
    tls: {ca: ca.pem, cert: coordinator.pem, key: coordinator.key}
    console: {listen: 127.0.0.1:8700}  # optional web console (job states and counts), /metrics
    log_format: json              # optional: text (default) or json, one object per line
    key_protection: {method: passphrase, passphrase_env: TEENET_KEY_PASSPHRASE}  # optional:
                                  # none (default) | passphrase; protects the audit and TLS keys

Relative paths resolve against the config file's folder. Errors name file, line and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from teenet.pki import TlsFiles
from teenet.config import (ConsoleConfig, console_section, key_protection_section, log_format_field, resolve_path,
                           tls_files)
from teenet.keyfiles import KeyProtectionSettings
from teenet.yamlload import load_yaml

_LISTEN = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
DEFAULT_MAX_RESULT_BYTES = 4 << 30
# A live compute node polls at least every 20 s (the longest long poll) plus its interval;
# 60 s of silence is three such polls missed.
DEFAULT_COMPUTE_SILENCE = 60.0


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str
    listen: str
    consortium: Path
    state_dir: Path
    database: Path
    audit_key: Path
    tls: TlsFiles
    checkpoint_every: int = 64
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    compute_silence: float = DEFAULT_COMPUTE_SILENCE
    source: str = ""
    console: ConsoleConfig | None = None  # off unless configured; token file in state_dir
    log_format: str = "text"
    key_protection: KeyProtectionSettings = KeyProtectionSettings()


def load_coordinator_config(path: str | Path) -> CoordinatorConfig:
    """Read and check a coordinator config file."""
    doc = load_yaml(Path(path))
    base = Path(path).resolve().parent
    f = doc.root().mapping(required=("name", "listen", "consortium", "tls"),
                           optional=("state_dir", "database", "audit_key", "checkpoint_every", "key_protection",
                                     "max_result_bytes", "compute_silence", "console", "log_format"),
                           what="a coordinator config mapping")
    listen = f["listen"].string(what='a listen address "host:port"', max_length=300)
    match = _LISTEN.fullmatch(listen)
    if not match or int(match["port"]) > 65535:
        raise f["listen"].error(f"'{listen}' is not \"host:port\" with a port from 0 to 65535")
    state_dir = resolve_path(f["state_dir"], base) if "state_dir" in f else base
    return CoordinatorConfig(
        name=f["name"].string(pattern=_NAME, what="a member name (lowercase letter, then a-z 0-9 _ -)"),
        listen=listen,
        consortium=resolve_path(f["consortium"], base),
        state_dir=state_dir,
        database=resolve_path(f["database"], base) if "database" in f else state_dir / "coordinator.db",
        audit_key=resolve_path(f["audit_key"], base) if "audit_key" in f else state_dir / "audit.key",
        tls=tls_files(f["tls"], base),
        checkpoint_every=(f["checkpoint_every"].integer(minimum=1, maximum=1_000_000)
                          if "checkpoint_every" in f else 64),
        max_result_bytes=(f["max_result_bytes"].integer(minimum=1 << 20, maximum=1 << 40)
                          if "max_result_bytes" in f else DEFAULT_MAX_RESULT_BYTES),
        compute_silence=(f["compute_silence"].number(minimum=1, maximum=86400)
                         if "compute_silence" in f else DEFAULT_COMPUTE_SILENCE),
        source=doc.source,
        console=(console_section(f["console"], base, state_dir / "console.token") if "console" in f else None),
        log_format=log_format_field(f.get("log_format")),
        # The coordinator runs outside any TEE: there is no enclave to seal its keys to.
        key_protection=key_protection_section(f.get("key_protection"), base, source=doc.source,
                                              methods=("none", "passphrase")),
    )
