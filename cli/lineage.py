"""`teenet lineage show`: what went into a result, every link verified offline.

A result file (written by `teenet job result --out DIR`, as DIR/lineage-KIND.json) carries
the signed job, the compute offer with the enclave's evidence, and each result's signed
statement, whose lineage names the inputs' fingerprints, the function, the release rules
and the compute node's signed audit tree head with the inclusion proof of the event that
dropped the inputs and keys. See teenet/lineage.py and docs/architecture.md (Lineage).

Witnessing: each log a result depends on (the compute node's, at the tree head covering
the drop event; each owner's, at the tree head covering its `shipped` entry where the
result names it; with `--model-lineage`, the train result's too) is judged against the coordinator's checkpoint board (with `--config`),
or offline against a checkpoints file (`--checkpoints`, written by `job result --out` as
DIR/checkpoints.json, or by `lineage show --save-checkpoints`). Exit codes (docs/cli.md):
0 verified and witnessed, 1 broken (or bad input), 3 verified but not (yet) witnessed.
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


EXIT_UNWITNESSED = 3  # verified, but no checkpoint a quorum cosigned covers it (yet)
CHECKPOINTS_FILE = "checkpoints.json"


class CoordinatorBoard:
    """The coordinator's board (teenet.witness.GrpcBoard) read-only, its transport errors
    said as one TeenetError (witnessing then stays unjudged, it is not a broken lineage)."""

    def __init__(self, stub: Any, hint: str = "try again later, or pass --checkpoints FILE") -> None:
        from teenet.witness import GrpcBoard

        self._board = GrpcBoard(stub)
        self._hint = hint

    def _call(self, fn, *args):
        import grpc

        try:
            return fn(*args)
        except grpc.RpcError as exc:
            raise TeenetError(f"the coordinator's checkpoint board could not be read ({exc.code().name}); "
                              f"{self._hint}") from None

    def latest_size(self, origin: str) -> int:
        return self._call(self._board.latest_size, origin)

    def checkpoint_page(self, origin: str, **where):
        return self._call(lambda: self._board.checkpoint_page(origin, **where))

    def cosignature_page(self, origin: str, **where):
        return self._call(lambda: self._board.cosignature_page(origin, **where))


def read_checkpoints_file(path: Path):
    from teenet.witness import FileBoard

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("checkpoints file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a JSON checkpoints file: {exc}", source=str(path)) from None
    return FileBoard(doc, source=str(path))


def write_checkpoints_file(path: Path, reports) -> None:
    from teenet.witness import checkpoints_file

    doc = checkpoints_file(w for r in reports for w in r.witnessing)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def lineage_of_results(fetched, consortium, roots, out: Path, board=None) -> list[dict[str, Any]]:
    """For `teenet job result`: write `out/lineage-KIND.json` for each fetched result that
    carries lineage, verify it (and, with `board`, judge its witnessing and save what it was
    judged on as `out/checkpoints.json`), and return what to show."""
    from teenet.lineage import render, result_file, statement_lineage, verify_lineage

    out.mkdir(parents=True, exist_ok=True)
    shown, reports = [], []
    for r in fetched.results:
        if statement_lineage(r.statement) is None:
            continue
        doc = result_file(signed_job=fetched.job, offer=fetched.offer, result=r)
        path = out / f"lineage-{r.kind}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        report = verify_lineage(doc, consortium, roots, board)
        reports.append(report)
        shown.append({"kind": r.kind, "file": str(path), "ok": report.ok, "broken": report.broken,
                      "status": report.status, "witnessing": [w.to_json() for w in report.witnessing],
                      "lineage": report.lineage, "text": render(report)})
    if board is not None and any(r.witnessing for r in reports):
        write_checkpoints_file(out / CHECKPOINTS_FILE, reports)
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
         config: Path = ConfigOpt,
         checkpoints: Path = typer.Option(None, "--checkpoints",
                                          help="Judge witnessing offline from this checkpoints file "
                                               "(job result --out writes DIR/checkpoints.json) instead of "
                                               "the coordinator's board."),
         save_checkpoints: Path = typer.Option(None, "--save-checkpoints",
                                               help="Write the checkpoints and cosignatures witnessing was "
                                                    "judged on to this file (for offline verification)."),
         model_lineage: Path = typer.Option(None, "--model-lineage",
                                            help="For a predict result: the train job's model result file "
                                                 "(its lineage-model.json); its own lineage is verified and "
                                                 "linked to the model the predict result names."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print a result's lineage tree, verify every link and whether each log it depends on
    is witnessed by the consortium's quorum. Exit 0 verified and witnessed, 1 broken (naming
    the first broken link), 3 verified but not yet witnessed."""
    from teenet.cli.job import _Analyst
    from teenet.lineage import render, verify_lineage
    from teenet.node.results import recipient_roots

    analyst = _Analyst(config)
    board = read_checkpoints_file(checkpoints) if checkpoints is not None else CoordinatorBoard(analyst.stub)
    path = Path(result)
    doc = read_result_file(path) if path.exists() or result.endswith(".json") else _fetch_doc(analyst, result)
    model_doc = read_result_file(model_lineage) if model_lineage is not None else None
    report = verify_lineage(doc, analyst.consortium, recipient_roots(analyst.consortium, analyst.sim_dir), board,
                            model_doc=model_doc)
    if save_checkpoints is not None and report.witnessing:
        write_checkpoints_file(save_checkpoints, [report])
    emit(report.to_json(), as_json, lambda c: c.print(render(report), markup=False))
    if not report.ok:
        broken = [name for name, ok, _ in report.links if not ok]
        raise VerificationError(report.broken or "lineage", f"lineage does not verify: broken link(s) "
                                f"{', '.join(broken) or 'none checked'}")
    if not report.witnessed:
        raise typer.Exit(EXIT_UNWITNESSED)
