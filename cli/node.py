"""`teenet node serve`: run a node daemon (data or compute) from its config."""

from __future__ import annotations

from pathlib import Path

import typer

from teenet.cli.common import config_path

app = typer.Typer(no_args_is_help=True)


@app.command("serve")
def serve(config: Path = typer.Option(None, "--config", "-c", help="The node's config (or TEENET_CONFIG).")) -> None:
    """Run this institution's node until SIGTERM or Ctrl-C."""
    from teenet.node.daemon import serve as serve_node

    serve_node(config_path(config))
