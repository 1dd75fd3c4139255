"""`teenet job validate|submit|status|list|result|cancel`: what an analyst does."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import grpc
import typer

from teenet.cli.common import config_path, resolve_job_id
from teenet.cli.output import JSON_HELP, console, emit
from teenet.errors import InputError, TeenetError
from teenet.proto import teenet_pb2 as pb

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    # Every job command is a client: once it returns, the process may end at once.
    from teenet.cli.main import quick_exit_allowed

    quick_exit_allowed()

TERMINAL = {"succeeded", "failed", "cancelled"}
# Seconds one GetJob may wait at the coordinator for the job to move (a long poll).
LONG_POLL_SECONDS = 5.0
ConfigOpt = typer.Option(None, "--config", "-c",
                         help="The analyst's config, or a node's config to act as that party (or TEENET_CONFIG).")


class _Analyst:
    """A member's config, keys and coordinator connection: an analyst's config, or a node's
    config (so an owner named as a recipient can follow jobs and fetch its own results)."""

    def __init__(self, config: Path | None) -> None:
        from teenet.config import load_analyst_config, load_node_config
        from dataclasses import replace

        from teenet.identity import MemberKeys
        from teenet.keyfiles import NO_PROTECTION
        from teenet.node.links import CoordinatorLink
        from teenet.yamlload import load_yaml

        self.path = config_path(config)
        data = load_yaml(self.path).data
        self.node_state: Path | None = None  # a node's node.db when acting as that party
        if isinstance(data, dict) and "node" in data:
            node = load_node_config(self.path)
            protection = node.key_protection.resolve()  # 'enclave' keys open only inside the node
            self.name, self.consortium, keys_dir = node.node, node.consortium, node.keys_dir
            self.tls = replace(node.tls, protection=protection)
            coordinator, self.sim_dir = node.coordinator, node.enclave.sim_dir
            self.node_state = node.state_dir / "node.db"
        else:
            cfg = load_analyst_config(self.path)
            protection = NO_PROTECTION
            self.name, self.consortium, keys_dir, self.tls = cfg.analyst, cfg.consortium, cfg.keys_dir, cfg.tls
            coordinator, self.sim_dir = cfg.coordinator, cfg.sim_dir
        self.keys = MemberKeys.load(keys_dir, protection)
        self.link = CoordinatorLink(coordinator, self.tls, self.consortium.coordinator_name)

    @property
    def stub(self):
        return self.link.stub

    def job_id(self, prefix: str) -> str:
        if len(prefix) == 64:
            return prefix.lower()
        jobs = self.stub.ListJobs(pb.ListJobsRequest(limit=1000), timeout=10).jobs
        return resolve_job_id(prefix, [j.job_id for j in jobs])


def _rpc(fn):
    """Turn gRPC failures into one clear line."""
    try:
        return fn()
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            raise TeenetError("the coordinator is not reachable (is `teenet coordinator serve` running?)") from None
        raise TeenetError(f"coordinator refused: {exc.details()}") from None


def _validate(spec_path: Path, analyst: "_Analyst | None"):
    from teenet.cli import validation_cache
    from teenet.jobspec import check_against_consortium, parse_job_spec

    spec = parse_job_spec(spec_path, source=str(spec_path))
    if analyst is not None:
        check_against_consortium(spec, analyst.consortium, source=str(spec_path))
    if validation_cache.passed_before(spec):
        return spec
    from teenet.errors import ReleaseRefused
    from teenet.models import InputSpec, ReleaseRequest, validate_job

    try:
        validate_job(spec.function, [InputSpec(i.party, i.table, tuple(i.keys), tuple(i.columns)) for i in spec.inputs],
                     dict(spec.params), [ReleaseRequest(r.kind, tuple(r.to)) for r in spec.release])
        if spec.function == "predict" and "model" in spec.params:
            from teenet.shipped_model import ModelReference

            ModelReference.parse(spec.params, [i.party for i in spec.inputs])
    except InputError as exc:
        document = getattr(spec, "document", None)
        line = document.line_of(_field_path(exc.field)) if exc.field and document is not None else None
        message = str(exc).split(": ", 1)[-1] if exc.field else str(exc)
        raise InputError(message, source=str(spec_path), line=line, field=exc.field) from None
    except ReleaseRefused as exc:
        raise _located_refusal(exc, spec, spec_path) from None
    validation_cache.record_pass(spec)
    return spec


# A release rule names the request it refuses as `release[i]` (older models: `requests[i]`).
_RELEASE_REF = re.compile(r"\b(?:release|requests)\[(\d+)\](?:\.(kind|to))?")


def _located_refusal(exc: Exception, spec, spec_path: Path) -> InputError:
    """A release rule's refusal, at the file and line of the release it names."""
    text = _RELEASE_REF.sub(lambda m: f"release[{m[1]}]" + (f".{m[2]}" if m[2] else ""), str(exc))
    found = _RELEASE_REF.search(str(exc))
    document = getattr(spec, "document", None)
    if found is None or document is None:
        return InputError(text, source=str(spec_path))
    path: tuple[str | int, ...] = ("release", int(found[1])) + ((found[2],) if found[2] else ())
    return InputError(text, source=str(spec_path), line=document.line_of(path), field=_dotted(path))


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def _field_path(field: str) -> tuple[str | int, ...]:
    """'inputs[1].columns[0]' -> ('inputs', 1, 'columns', 0)."""
    path: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        path.append(int(index) if index else name)
    return tuple(path)


@app.command("validate")
def validate(spec: Path = typer.Argument(..., help="The job spec (YAML)."),
             config: Path = ConfigOpt,
             as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Check a job spec: schema, names, the consortium's catalog and the function's parameters."""
    import os

    analyst = _Analyst(config) if (config or os.environ.get("TEENET_CONFIG")) else None
    s = _validate(spec, analyst)
    emit({"valid": True, "name": s.name, "function": s.function}, as_json,
         lambda c: c.print(f"[green]valid[/green]: {s.name} ({s.function}, "
                           f"{len(s.inputs)} inputs, releases {', '.join(r.kind for r in s.release)})"))


def _status_json(st: pb.JobStatus) -> dict:
    return {"job_id": st.job_id, "name": st.name, "state": st.state, "reason": st.reason, "analyst": st.analyst,
            "function": st.function, "compute": st.compute,
            "decisions": [{"party": d.party, "decision": d.decision, "reason": d.reason} for d in st.decisions],
            "uploaded": list(st.uploaded), "results": list(st.results),
            "created_at": st.created_at, "updated_at": st.updated_at}


def _progress_line(st: pb.JobStatus) -> str:
    approvals = ", ".join(f"{d.party}:{d.decision}" for d in st.decisions)
    parts = [f"[bold]{st.state}[/bold]"]
    if approvals:
        parts.append(f"approvals {approvals}")
    if st.uploaded:
        parts.append(f"uploaded {', '.join(st.uploaded)}")
    if st.reason and st.state in TERMINAL:
        parts.append(st.reason)
    return " | ".join(parts)


def wait_for(analyst: _Analyst, job_id: str, timeout: float, quiet: bool = False) -> pb.JobStatus:
    deadline = time.monotonic() + timeout
    last = ""
    delay = 0.05
    seen = 0.0  # the job's updated_at as last seen: the coordinator answers when it moves
    while True:
        wait = max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
        changed = False
        try:
            st = analyst.stub.GetJob(pb.JobRef(job_id=job_id, wait_ms=int(wait * 1000), updated_after=seen),
                                     timeout=10 + wait)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise TeenetError(f"coordinator refused: {exc.details()}") from None
            st = None  # the coordinator is restarting; keep waiting
        if st is not None:
            changed, seen = st.updated_at != seen, st.updated_at
            line = _progress_line(st)
            if line != last and not quiet:
                console.print(f"  {job_id[:12]} {line}")
                last = line
            if st.state in TERMINAL:
                return st
        if time.monotonic() > deadline:
            raise TeenetError(f"job {job_id[:12]} did not finish within {timeout:.0f}s "
                              f"(last state: {st.state if st else 'unknown'})" + _waiting_hint(st))
        if not changed:  # the coordinator did not wait (restarting, busy, or older): poll gently
            time.sleep(delay)
            delay = min(0.5, delay * 1.5)


def _waiting_hint(st: pb.JobStatus | None) -> str:
    """Whom a job waits for: each owner that has not decided, with the reason its node gave."""
    if st is None or st.state != "awaiting_approvals":
        return ""
    waiting = [f"{d.party}: {d.reason}" if d.reason else f"{d.party}: no decision yet"
               for d in st.decisions if d.decision == "pending"]
    return ("; it waits for " + "; ".join(waiting) + " (the owner's operator decides with "
            f"`teenet approvals approve {st.job_id[:12]}`)") if waiting else ""


@app.command("submit")
def submit(spec: Path = typer.Argument(..., help="The job spec (YAML)."),
           config: Path = ConfigOpt,
           wait: bool = typer.Option(False, "--wait", help="Wait and show progress until the job ends."),
           timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait with --wait."),
           out: Path | None = typer.Option(None, "--out", "-o", help="With --wait: once the job succeeds, verify, "
                                           "decrypt and write this member's results to this folder (as "
                                           "`job result --out`), in the same process."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Sign a job spec with the analyst's key and submit it to the coordinator."""
    from teenet.jobspec import sign_job

    if out is not None and not wait:
        raise InputError("--out writes the results once the job ends: give --wait too", field="--out")
    analyst = _Analyst(config)
    s = _validate(spec, analyst)
    from teenet.cli.submissions import record_submission

    signed = sign_job(s, analyst.name, analyst.consortium.name, analyst.keys.signing)
    if analyst.node_state is None:  # on disk before it leaves: `job result` opens only recorded jobs
        record_submission(analyst.path, signed.job_id, s.name)
    reply = _rpc(lambda: analyst.stub.SubmitJob(signed.to_proto(), timeout=10))
    if not as_json:
        # Plain print: rich costs a submission ~0.1 s to import, and scripts read this line.
        print(f"submitted {s.name} as job {reply.job_id}", flush=True)
    if not wait:
        emit({"job_id": reply.job_id, "state": reply.state}, as_json, lambda c: None)
        return
    if out is not None:
        _warm_result_imports(arrow=any(r.kind in ARROW_KINDS and analyst.name in r.to for r in s.release))
    st = wait_for(analyst, reply.job_id, timeout, quiet=as_json)
    data = _status_json(st)
    fetched = None
    if out is not None and st.state == "succeeded":
        fetched = _fetch_results(analyst, st.job_id, out)
        data["result"] = fetched[0]

    def render(c) -> None:
        c.print(f"job {st.job_id[:12]} {st.state}" + (f": {st.reason}" if st.reason else ""))
        if fetched is not None:
            _render_results(c, *fetched[1:], fetched[0]["lineage"])

    emit(data, as_json, render)
    if st.state != "succeeded":
        raise typer.Exit(1)
    if fetched is not None:
        _exit_if_lineage_broken(fetched[0])


# The release kinds whose results are Arrow tables, written out as CSV with pyarrow.
ARROW_KINDS = frozenset({"ids", "scores"})


def _warm_result_imports(*, arrow: bool) -> None:
    """Import what opening and writing results needs in a background thread while the job
    runs, so `submit --wait --out` does not pay it after the job ends; pyarrow (~0.3 s) only
    when an Arrow result comes to this member. Only imports: a failure here is met again,
    and reported, when the results are opened."""
    import threading

    def warm() -> None:
        try:
            import teenet.node.results  # noqa: F401
            if arrow:
                import pyarrow.csv  # noqa: F401
        except Exception:  # noqa: BLE001 - the real import reports it
            pass

    threading.Thread(target=warm, name="warm-result-imports", daemon=True).start()


def _fetch_results(analyst: "_Analyst", job_id: str, out: Path):
    """Verify, open and write this member's results of `job_id`: (json data, claims, files)."""
    from teenet.node.results import fetch_and_open, write_results

    from teenet.cli.submissions import check_analyst_submitted, check_owner_approved

    # The job's spec digest is what every result's signed statement names: open only a job this
    # analyst submitted, or, with a node's config, one that node approved.
    if analyst.node_state is None:
        check_analyst_submitted(analyst.path, job_id)
    else:
        check_owner_approved(analyst.node_state, analyst.name, job_id)
    kept: dict = {}
    opened, claims = fetch_and_open(analyst.stub, job_id, analyst.name, analyst.keys, analyst.consortium,
                                    sim_dir=analyst.sim_dir, keep=kept)
    files = write_results(opened, out)
    data = {"job_id": job_id, "verified": True, "enclave": claims.to_json(),
            "results": [{"kind": o.kind, "media_type": o.media_type, "summary": o.summary} for o in opened],
            "files": [str(f) for f in files]}
    from teenet.cli import lineage as lineage_cli  # the result files and verified lineage (issue 14)

    board = lineage_cli.CoordinatorBoard(analyst.stub, "run `teenet lineage show FILE` later")
    data["lineage"] = lineage_cli.lineage_of_results(kept["fetched"], analyst.consortium, kept["roots"], out,
                                                     board=board)
    return data, claims, files


def _exit_if_lineage_broken(data: dict) -> None:
    """A result whose lineage does not verify is not a verified result: exit 1, naming the links."""
    broken = [(item["kind"], item["broken"]) for item in data.get("lineage", ()) if not item["ok"]]
    if broken:
        for kind, link in broken:
            print(f"error: the lineage of the {kind} result does not verify (broken at {link})",
                  file=sys.stderr, flush=True)
        raise typer.Exit(1)


def _render_results(c, claims, files, lineage=()) -> None:
    sim = " [yellow](SIMULATED attestation)[/yellow]" if claims.simulated else ""
    c.print(f"[green]verified[/green]: signed by the attested compute enclave "
            f"{claims.measurement.hex()[:16]}... on {claims.platform.value}{sim}")
    for f in files:
        c.print(f"  wrote {f}")
    for item in lineage:
        c.print(f"  wrote {item['file']}\nlineage of {item['kind']}:")
        c.print(item["text"], markup=False)


@app.command("status")
def status(job: str = typer.Argument(..., help="Job id or unique prefix."), config: Path = ConfigOpt,
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """A job's state, each owner's decision, uploads and results."""
    analyst = _Analyst(config)
    st = _rpc(lambda: analyst.stub.GetJob(pb.JobRef(job_id=analyst.job_id(job)), timeout=10))

    def render(c) -> None:
        c.print(f"job {st.job_id}\n  name {st.name} ({st.function} on {st.compute}), analyst {st.analyst}\n"
                f"  state [bold]{st.state}[/bold]" + (f": {st.reason}" if st.reason else ""))
        for d in st.decisions:
            c.print(f"  {d.party}: {d.decision}" + (f" ({d.reason})" if d.reason else ""))
        if st.uploaded:
            c.print(f"  uploaded: {', '.join(st.uploaded)}")
        if st.results:
            c.print(f"  results: {', '.join(st.results)}")

    emit(_status_json(st), as_json, render)


@app.command("list")
def list_(config: Path = ConfigOpt, state: str = typer.Option("", "--state", help="Only jobs in this state."),
          limit: int = typer.Option(50, "--limit"), as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Recent jobs."""
    analyst = _Analyst(config)
    jobs = _rpc(lambda: analyst.stub.ListJobs(pb.ListJobsRequest(limit=limit, state=state), timeout=10)).jobs

    def render(c) -> None:
        from rich.table import Table

        t = Table("job", "name", "function", "analyst", "state", "reason")
        for j in jobs:
            t.add_row(j.job_id[:12], j.name, j.function, j.analyst, j.state, j.reason)
        c.print(t)

    emit([_status_json(j) for j in jobs], as_json, render)


@app.command("cancel")
def cancel(job: str = typer.Argument(..., help="Job id or unique prefix."), config: Path = ConfigOpt,
           reason: str = typer.Option("cancelled by the analyst", "--reason"),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Cancel a job that has not ended (signed by the analyst's key)."""
    from teenet.canonical import domain_message

    analyst = _Analyst(config)
    job_id = analyst.job_id(job)
    sig = analyst.keys.signing.sign(domain_message("teenet/cancel/v1", bytes.fromhex(job_id), reason.encode()))
    st = _rpc(lambda: analyst.stub.CancelJob(pb.CancelRequest(job_id=job_id, analyst=analyst.name,
                                                               reason=reason, signature=sig), timeout=10))
    emit(_status_json(st), as_json, lambda c: c.print(f"job {job_id[:12]} {st.state}"))


@app.command("result")
def result(job: str = typer.Argument(..., help="Job id or unique prefix."), config: Path = ConfigOpt,
           out: Path = typer.Option(Path("results"), "--out", "-o", help="Folder to write the results to."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Verify the enclave's evidence and signature, then decrypt and write this analyst's results."""
    analyst = _Analyst(config)
    data, claims, files = _fetch_results(analyst, analyst.job_id(job), out)
    emit(data, as_json, lambda c: _render_results(c, claims, files, data["lineage"]))
    _exit_if_lineage_broken(data)
