"""`teenet budget show|raise`: a data node's privacy budget per shared table.

`show` reads the node's ledger (its state database) next to the budgets its config sets;
`raise` adds to one table's budget, in the node's audit chain (with the operator's name and
reason) and then in its ledger, where the running daemon sees it at its next decision. The
ledger and what a job spends are kept by `teenet.node.budget` and `teenet.node.store`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from teenet.cli.common import config_path
from teenet.cli.output import JSON_HELP, emit

app = typer.Typer(no_args_is_help=True)


def _node(config: Path | None):
    from teenet.config import load_node_config
    from teenet.errors import InputError

    path = config_path(config)
    cfg = load_node_config(path)
    if cfg.role != "data":
        raise InputError(f"{path}: '{cfg.node}' is a {cfg.role} node; only data nodes keep privacy budgets")
    return cfg


def _table(cfg, table: str) -> str:
    from teenet.errors import InputError

    if table not in cfg.policy.tables:
        raise InputError(f"table '{table}' is not shared by {cfg.node}'s policy "
                         f"(shared: {', '.join(cfg.policy.tables) or 'none'})")
    return table


@app.command("show")
def show(config: Path = typer.Option(None, "--config", "-c", help="The data node's config."),
         table: str = typer.Option(None, "--table", help="Only this table."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Each shared table's privacy budget: configured, raised, spent by approved jobs, remaining."""
    from rich.table import Table

    from teenet.node.budget import table_budget
    from teenet.node.store import NodeStore

    cfg = _node(config)
    tables = [_table(cfg, table)] if table else list(cfg.policy.tables)
    db = cfg.state_dir / "node.db"
    store = NodeStore(db) if db.exists() else None
    try:
        rows = []
        for t in tables:
            if store is None:  # the node has not run yet: nothing raised or spent
                from teenet.node.budget import TableBudget
                from teenet.node.store import BudgetLedger

                budget = TableBudget(t, cfg.policy.budgets[t], BudgetLedger(t, 0.0, 0.0, 0.0, 0.0, 0))
                spends = []
            else:
                budget = table_budget(store, cfg.policy, t)
                spends = store.budget_spends(t)
            rows.append({**budget.to_json(), "spends": [{"job_id": j, "epsilon": e, "delta": d}
                                                        for j, e, d, _ in spends]})
    finally:
        if store is not None:
            store.close()

    def render(console) -> None:
        t = Table("table", "epsilon", "spent", "left", "delta", "spent", "left", "jobs",
                  title=f"privacy budgets at {cfg.node} (sequential composition)")
        for r in rows:
            t.add_row(r["table"], f"{r['epsilon']:g}", f"{r['spent_epsilon']:g}", f"{r['remaining_epsilon']:g}",
                      f"{r['delta']:g}", f"{r['spent_delta']:g}", f"{r['remaining_delta']:g}", str(r["jobs"]))
        console.print(t)

    emit({"node": cfg.node, "accountant": "sequential composition", "tables": rows}, as_json, render)


@app.command("raise")
def raise_(table: str = typer.Argument(..., help="The shared table whose budget to raise."),
           epsilon: float = typer.Option(..., "--epsilon", help="Epsilon to add (>= 0)."),
           delta: float = typer.Option(0.0, "--delta", help="Delta to add (>= 0)."),
           operator: str = typer.Option(..., "--operator", help="Who raises it (recorded in the audit log)."),
           reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
           config: Path = typer.Option(None, "--config", "-c", help="The data node's config."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Raise a table's privacy budget; audited with the operator's name and reason."""
    import math

    from teenet.audit import AuditLog
    from teenet.errors import InputError
    from teenet.identity import MemberKeys
    from teenet.node.budget import table_budget
    from teenet.node.store import NodeStore

    cfg = _node(config)
    _table(cfg, table)
    for name, value, top in (("--epsilon", epsilon, 1_000_000.0), ("--delta", delta, 0.5)):
        if not math.isfinite(value) or not 0 <= value <= top:
            raise InputError(f"{name} must be a number from 0 to {top:g}, found {value:g}")
    if epsilon == 0 and delta == 0:
        raise InputError("--epsilon and --delta are both 0: nothing to raise")
    if not operator.strip() or not reason.strip():
        raise InputError("--operator and --reason must not be empty (both go into the audit log)")
    # The node's own signing key signs the audit chain's checkpoints; read it as the node
    # does, under its key_protection (a passphrase, or sealed to this enclave).
    from teenet.node.enclave import build_enclave

    def sealing_key():  # built only for key_protection: enclave
        return build_enclave(cfg.enclave.backend, cfg.enclave.sim_dir,
                             intel_collateral=cfg.enclave.intel_collateral).derive_sealing_key()

    keys = MemberKeys.load(cfg.keys_dir, cfg.key_protection.resolve(sealing_key))
    store = NodeStore(cfg.state_dir / "node.db")
    audit = AuditLog(cfg.state_dir / "audit.db", keys.signing)
    try:
        before = table_budget(store, cfg.policy, table)
        # The audit entry first: a raise never takes effect without its record.
        audit.append({"event": "budget_raised", "node": cfg.node, "table": table, "epsilon": float(epsilon),
                      "delta": float(delta), "operator": operator, "reason": reason,
                      "budget_epsilon": before.epsilon + epsilon, "budget_delta": before.delta + delta})
        store.raise_budget(table, epsilon, delta, operator, reason)
        after = table_budget(store, cfg.policy, table)
    finally:
        audit.close()
        store.close()
    emit({"node": cfg.node, "operator": operator, "reason": reason, "raised": {"epsilon": epsilon, "delta": delta},
          **after.to_json()}, as_json,
         lambda c: c.print(f"{table}: budget raised by epsilon {epsilon:g}, delta {delta:g}; now epsilon "
                           f"{after.remaining_epsilon:g} of {after.epsilon:g} and delta {after.remaining_delta:g} "
                           f"of {after.delta:g} remain (audited as budget_raised by {operator})"))
