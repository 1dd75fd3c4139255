"""`teenet enclave measure`: the code measurement an owner pins in their allowlist."""

from __future__ import annotations

import typer

from teenet.attestation.measure import enclave_manifest
from teenet.cli.output import JSON_HELP, emit

app = typer.Typer(no_args_is_help=True)


@app.command("measure")
def measure(as_json: bool = typer.Option(False, "--json", help=JSON_HELP + " Includes the full manifest.")) -> None:
    """Print the SHA-384 measurement of the installed enclave code (pin it under attestation.measurements)."""
    manifest = enclave_manifest()
    digest = manifest.measurement().hex()

    def render(console) -> None:
        console.print(digest)

    emit({"measurement": digest, "manifest": manifest.to_json()}, as_json, render)
