"""`teenet demo`: a whole network on this machine, three joint jobs, then stop.

It creates a sandbox (three agencies, a compute node, a coordinator; simulated
attestation), starts every daemon as a process on loopback, and as the analyst submits a
PSI, an aggregate and a vertical training job, waits for each, verifies the enclave's
evidence and signature on the results, decrypts them and shows what came out.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import typer

from teenet.cli.output import console

app = typer.Typer()

JOBS = ("psi-overlap", "spend-by-region", "default-risk")


@app.callback(invoke_without_command=True)
def demo(directory: Path = typer.Option(None, "--dir", help="Keep the sandbox here (default: a temporary folder)."),
         rows: int = typer.Option(20_000, "--rows", help="Rows per synthetic table."),
         keep_running: bool = typer.Option(False, "--keep-running", help="Leave the network up afterwards.")) -> None:
    """Run a PSI, an aggregate and a joint training job on a local consortium, then stop."""
    from teenet.cli.job import _Analyst, _validate, wait_for
    from teenet.cli.sandbox import down_sandbox, init_sandbox, up_sandbox
    from teenet.errors import TeenetError
    from teenet.jobspec import sign_job
    from teenet.node.results import fetch_and_open, write_results

    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="teenet-demo-")
        directory = Path(tmp.name)
    t0 = time.monotonic()
    console.rule("teenet demo")
    with console.status("creating the consortium: PKI, keys, simulated TEE platform, synthetic tables"):
        summary = init_sandbox(directory, rows=rows, force=True)
    console.print(f"consortium in {summary['directory']}: bank, telco, insurer, compute-1, coordinator, analyst")
    console.print(f"enclave measurement pinned by every owner: {summary['measurement'][:32]}...")
    console.print("[yellow]attestation is SIMULATED in the demo (allow_simulated: true)[/yellow]")
    with console.status("starting 5 daemons on loopback (mutual TLS)"):
        up_sandbox(directory)
    console.print("network up")
    failed = []
    try:
        analyst = _Analyst(directory / "analyst.yaml")
        for name in JOBS:
            spec_path = directory / "jobs" / f"{name}.yaml"
            spec = _validate(spec_path, analyst)
            signed = sign_job(spec, analyst.name, analyst.consortium.name, analyst.keys.signing)
            console.rule(f"{name} ({spec.function})")
            started = time.monotonic()
            reply = analyst.stub.SubmitJob(signed.to_proto(), timeout=10)
            st = wait_for(analyst, reply.job_id, timeout=300)
            if st.state != "succeeded":
                failed.append(name)
                console.print(f"[red]{name} {st.state}: {st.reason}[/red]")
                continue
            opened, claims = fetch_and_open(analyst.stub, reply.job_id, analyst.name, analyst.keys,
                                            analyst.consortium, sim_dir=directory / "sim-platform")
            files = write_results(opened, directory / "results" / name)
            console.print(f"[green]succeeded[/green] in {time.monotonic() - started:.1f}s; results verified against "
                          f"enclave {claims.measurement.hex()[:16]}... ({claims.platform.value})")
            for o in opened:
                console.print(f"  {o.kind}: {_short(o)}")
            console.print(f"  files: {', '.join(str(f.relative_to(directory)) for f in files)}")
    finally:
        if not keep_running:
            with console.status("stopping the network"):
                down_sandbox(directory)
    console.rule()
    console.print(f"demo finished in {time.monotonic() - t0:.1f}s" + (
        f"; sandbox and results kept in {directory}" if not tmp else "; run with --dir DIR to keep the results"))
    if tmp is not None and not keep_running:
        tmp.cleanup()
    if failed:
        raise TeenetError(f"demo jobs failed: {', '.join(failed)}")


def _short(o) -> str:
    """One readable line per result: curves and long lists are in the files, not here."""
    if o.media_type == "application/json":
        data = json.loads(o.payload)
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "roc"}
            if isinstance(data.get("rows"), list) and len(data["rows"]) > 3:
                data["rows"] = data["rows"][:3] + [f"... {len(data['rows']) - 3} more"]
        text = json.dumps(data, sort_keys=True, default=_round)
    else:
        summary = {k: v for k, v in dict(o.summary).items() if k in ("model", "coefficients", "importances", "rows")}
        text = f"{o.media_type}, {len(o.payload)} bytes; " + json.dumps(summary, sort_keys=True, default=_round)
    return text if len(text) < 400 else text[:397] + "..."


def _round(value):
    return str(value)
