"""`teenet approvals list|approve|reject|revoke`: the operator's view of jobs waiting on this node,
and the withdrawal of an approval before any table key of its job was sealed.

A waiting job's reason names the analysis rule of each table that matched it; a rejected
one, the rule and field that refused it (or the privacy budget and what remains)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from teenet.cli.common import config_path, resolve_job_id
from teenet.cli.output import JSON_HELP, emit
from teenet.config import load_node_config
from teenet.errors import InputError
from teenet.node.approvals import describe_job, record_operator_decision
from teenet.node.store import NodeStore

app = typer.Typer(no_args_is_help=True)


def _store(config: Path | None) -> tuple[NodeStore, str]:
    cfg = load_node_config(config_path(config))
    db = cfg.state_dir / "node.db"
    if not db.exists():
        raise InputError(f"node '{cfg.node}' has no state yet ({db}); is `teenet node serve` running?")
    return NodeStore(db), cfg.node


@app.command("list")
def list_(config: Path = typer.Option(None, "--config", "-c", help="The node's config."),
          all_: bool = typer.Option(False, "--all", help="Also show jobs already decided."),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Jobs that wait for an operator's decision: who asks, for which columns, what leaves, to whom."""
    store, party = _store(config)
    records = store.jobs() if all_ else store.jobs("pending")
    rows = [{"job_id": r.job_id, "status": r.status, "reason": r.reason, **describe_job(r.canonical_spec, party)}
            for r in records]

    def render(console) -> None:
        if not rows:
            console.print("no jobs wait for a decision" if not all_ else "no jobs seen yet")
            return
        t = Table("job", "name", "analyst", "function", "your tables and columns", "release", "epsilon", "status")
        for r in rows:
            t.add_row(r["job_id"][:12], r["name"], r["analyst"], r["function"],
                      "; ".join(f"{x['table']}({', '.join(x['columns'])})" for x in r["tables"]),
                      "; ".join(f"{x['kind']}->{', '.join(x['to'])}" for x in r["release"]),
                      "-" if not r["spend"]["epsilon"] else f"{r['spend']['epsilon']:g}",
                      # The reason names the analysis rules that matched (pending) or the rule that refused.
                      r["status"] + (f": {r['reason']}" if r["status"] in ("pending", "rejected", "failed", "revoked")
                                     else ""))
        console.print(t)

    emit(rows, as_json, render)


def _act(action: str, job: str, config: Path | None, operator: str, reason: str, as_json: bool) -> None:
    store, _ = _store(config)
    job_id = resolve_job_id(job, [r.job_id for r in store.jobs()])
    done = record_operator_decision(store, job_id, action, operator, reason)  # type: ignore[arg-type]
    emit(done.to_json(), as_json,
         lambda c: c.print(f"{action} recorded for job {job_id[:12]}; the node signs and sends it on its next poll"))


@app.command("approve")
def approve(job: str = typer.Argument(..., help="Job id (or a unique prefix)."),
            config: Path = typer.Option(None, "--config", "-c", help="The node's config."),
            operator: str = typer.Option("operator", "--operator", help="Who approves (recorded in the audit log)."),
            reason: str = typer.Option("", "--reason", help="Why."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Approve a waiting job (only within what the owner's policy allows at all)."""
    _act("approve", job, config, operator, reason, as_json)


@app.command("reject")
def reject(job: str = typer.Argument(..., help="Job id (or a unique prefix)."),
           reason: str = typer.Option(..., "--reason", help="Why (the analyst sees it)."),
           config: Path = typer.Option(None, "--config", "-c", help="The node's config."),
           operator: str = typer.Option("operator", "--operator", help="Who rejects."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Reject a waiting job with a reason."""
    _act("reject", job, config, operator, reason, as_json)


@app.command("revoke")
def revoke(job: str = typer.Argument(..., help="Job id (or a unique prefix)."),
           config: Path = typer.Option(None, "--config", "-c", help="The node's config."),
           operator: str = typer.Option("operator", "--operator", help="Who withdraws (recorded in the audit log)."),
           reason: str = typer.Option("", "--reason", help="Why (goes in the signed revocation)."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Withdraw this node's approval of a job, until a table key of it has been sealed.

    From the moment it is recorded the node seals and ships nothing for the job; the node
    then signs the revocation and sends it to the coordinator, which fails the job and hands
    the revocation to the compute enclave with the job's approvals."""
    store, _ = _store(config)
    job_id = resolve_job_id(job, [r.job_id for r in store.jobs()])
    store.revoke(job_id, operator, reason)
    emit({"job_id": job_id, "action": "revoke", "operator": operator, "reason": reason}, as_json,
         lambda c: c.print(f"approval of job {job_id[:12]} withdrawn; nothing of it will be sealed, and the node "
                           "signs and sends the revocation on its next poll"))
