"""`teenet coordinator serve`: run the (untrusted) coordinator from its config."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from teenet.cli.common import config_path, reprotect_keys
from teenet.cli.output import JSON_HELP

app = typer.Typer(no_args_is_help=True)


@app.command("serve")
def serve(config: Path = typer.Option(None, "--config", "-c",
                                      help="The coordinator's config (or TEENET_CONFIG).")) -> None:
    """Serve the Coordinator gRPC service until SIGTERM or Ctrl-C."""
    from teenet.coordinator.config import load_coordinator_config
    from teenet.coordinator.server import run_until_signalled

    # One line per state change is the coordinator's operating log, whatever --verbose says.
    logging.getLogger("teenet.coordinator").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
    cfg = load_coordinator_config(config_path(config))

    def ready(port: int) -> None:
        print(f"coordinator '{cfg.name}' listening on port {port}", file=sys.stderr, flush=True)

    run_until_signalled(cfg, ready=ready)


@app.command("protect-keys")
def protect_keys(config: Path = typer.Option(None, "--config", "-c", help="The coordinator's config (or TEENET_CONFIG)."),
                 from_method: str = typer.Option("none", "--from", help="How the keys are protected now: none or passphrase."),
                 from_passphrase_env: str = typer.Option(None, "--from-passphrase-env",
                                                         help="With --from passphrase: the variable holding it."),
                 from_passphrase_file: Path = typer.Option(None, "--from-passphrase-file",
                                                           help="With --from passphrase: a file (mode 0600) holding it."),
                 as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Re-protect the coordinator's audit key and TLS key as its config's key_protection says."""
    from teenet.coordinator.config import load_coordinator_config

    cfg = load_coordinator_config(config_path(config))
    reprotect_keys([cfg.audit_key, cfg.tls.key], from_method, from_passphrase_env, from_passphrase_file,
               cfg.key_protection, None, as_json)


def _standalone() -> int:
    """`python -m teenet.cli.coordinator serve ...`: this group alone, errors as one line."""
    from teenet.errors import TeenetError

    try:
        app(standalone_mode=False)
    except TeenetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_standalone())
