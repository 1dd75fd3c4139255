"""`teenet coordinator serve`: run the (untrusted) coordinator from its config."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from teenet.cli.common import config_path

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
