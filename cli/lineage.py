"""`teenet lineage show`: what went into a result, every link verified offline.

A result file (written by `teenet job result --out DIR`, as DIR/lineage-KIND.json) carries
the signed job, the compute offer with the enclave's evidence, and each result's signed
statement, whose lineage names the inputs' fingerprints, the function, the release rules
and the compute node's signed audit tree head with the inclusion proof of the event that
dropped the inputs and keys. See teenet/lineage.py and docs/architecture.md (Lineage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from teenet.errors import InputError, TeenetError, VerificationError
from teenet.cli.output import JSON_HELP, emit

app = typer.Typer(no_args_is_help=True, help="What went into a result, verified offline.")

ConfigOpt = typer.Option(None, "--config", "-c",
                         help="Analyst or node config: its consortium file is the trust anchor (or TEENET_CONFIG).")


def read_result_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("result file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a JSON result file: {exc}", source=str(path)) from None
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object (a teenet result file)", source=str(path))
    return doc


def lineage_of_results(fetched, consortium, roots, out: Path) -> list[dict[str, Any]]:
    """For `teenet job result`: write `out/lineage-KIND.json` for each fetched result that
    carries lineage, verify it, and return what to show (the report, its text, the file)."""
    from teenet.lineage import render, result_file, statement_lineage, verify_lineage

    out.mkdir(parents=True, exist_ok=True)
    shown = []
    for r in fetched.results:
        if statement_lineage(r.statement) is None:
            continue
        doc = result_file(signed_job=fetched.job, offer=fetched.offer, result=r)
        path = out / f"lineage-{r.kind}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        report = verify_lineage(doc, consortium, roots)
        shown.append({"kind": r.kind, "file": str(path), "ok": report.ok, "broken": report.broken,
                      "lineage": report.lineage, "text": render(report)})
    return shown


def _fetch_doc(analyst, job: str) -> dict[str, Any]:
    from teenet.lineage import result_file, statement_lineage
    from teenet.node.results import fetch_sealed

    job_id = analyst.job_id(job)
    fetched = fetch_sealed(analyst.stub, job_id, analyst.name)
    for r in fetched.results:
        if statement_lineage(r.statement) is not None:
            return result_file(signed_job=fetched.job, offer=fetched.offer, result=r)
    raise TeenetError(f"job {job_id[:12]} has no result with a lineage statement for {analyst.name}")


@app.command("show")
def show(result: str = typer.Argument(..., help="A result file (teenet job result --out), or a job id."),
         config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print a result's lineage tree and verify every link; exit 1 naming the first broken one."""
    from teenet.cli.job import _Analyst
    from teenet.lineage import render, verify_lineage
    from teenet.node.results import recipient_roots

    analyst = _Analyst(config)
    path = Path(result)
    doc = read_result_file(path) if path.exists() or result.endswith(".json") else _fetch_doc(analyst, result)
    report = verify_lineage(doc, analyst.consortium, recipient_roots(analyst.consortium, analyst.sim_dir))
    emit(report.to_json(), as_json, lambda c: c.print(render(report), markup=False))
    if not report.ok:
        broken = [name for name, ok, _ in report.links if not ok]
        raise VerificationError(report.broken or "lineage", f"lineage does not verify: broken link(s) "
                                f"{', '.join(broken) or 'none checked'}")
