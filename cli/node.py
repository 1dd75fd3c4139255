"""`teenet node serve`: run a node daemon (data or compute) from its config."""

from __future__ import annotations

from pathlib import Path
import typer

from teenet.cli.common import config_path, reprotect_keys
from teenet.cli.output import JSON_HELP

app = typer.Typer(no_args_is_help=True)


@app.command("serve")
def serve(config: Path = typer.Option(None, "--config", "-c", help="The node's config (or TEENET_CONFIG).")) -> None:
    """Run this institution's node until SIGTERM or Ctrl-C."""
    from teenet.node.daemon import serve as serve_node

    serve_node(config_path(config))


@app.command("protect-keys")
def protect_keys(config: Path = typer.Option(None, "--config", "-c", help="The node's config (or TEENET_CONFIG)."),
                 from_method: str = typer.Option("none", "--from",
                                                 help="How the keys are protected now: none, passphrase or enclave."),
                 from_passphrase_env: str = typer.Option(None, "--from-passphrase-env",
                                                         help="With --from passphrase: the variable holding it."),
                 from_passphrase_file: Path = typer.Option(None, "--from-passphrase-file",
                                                           help="With --from passphrase: a file (mode 0600) holding it."),
                 as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Re-protect this node's member keys and TLS key as its config's key_protection says."""
    from teenet.config import load_node_config
    from teenet.identity import HPKE_KEY_FILE, SIGNING_KEY_FILE
    from teenet.node.enclave import build_enclave

    cfg = load_node_config(config_path(config))
    derive = None
    if "enclave" in (from_method, cfg.key_protection.method):
        enclave = build_enclave(cfg.enclave.backend, cfg.enclave.sim_dir, intel_collateral=cfg.enclave.intel_collateral)
        derive = enclave.derive_sealing_key
    paths = [cfg.keys_dir / SIGNING_KEY_FILE, cfg.keys_dir / HPKE_KEY_FILE, cfg.tls.key]
    reprotect_keys(paths, from_method, from_passphrase_env, from_passphrase_file, cfg.key_protection, derive, as_json)

