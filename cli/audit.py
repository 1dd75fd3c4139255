"""`teenet audit verify|show|witness-status|acknowledge`: check a hash-chained audit log
offline, or print it; a node's view of the other members' witnessed logs (teenet/witness.py)
and its operator's acknowledgement of an equivocation alarm.

Works on any teenet audit log file: the coordinator's database or a node's audit.db,
named with `--db`, or found from a node's or the coordinator's config (`--config`, or
TEENET_CONFIG). With a node config, checkpoints are checked against that member's signing
key from the consortium file; with the coordinator's, against its audit key. `verify`
exits 1 naming the first broken entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from teenet.audit import ChainReport, read_log, read_tree_heads, verify_chain
from teenet.cli.common import CONFIG_HELP, config_path
from teenet.cli.output import JSON_HELP, emit
from teenet.errors import InputError, VerificationError
from teenet.identity import ed25519_public_from_b64

app = typer.Typer(no_args_is_help=True)

DB_HELP = "The SQLite file holding the log (coordinator.db or a node's audit.db)."


def _log_of(db: Path | None, config: Path | None) -> tuple[Path, Any]:
    """The log's file and, from a config, its owner's public key (None with --db alone)."""
    if db is not None:
        if config is not None:
            raise InputError("give --db or --config, not both")
        return db, None
    path = config_path(config)
    from teenet.yamlload import load_yaml

    root = load_yaml(path).root().value
    if isinstance(root, dict) and "node" in root:
        from teenet.config import load_node_config

        node = load_node_config(path)
        return node.state_dir / "audit.db", node.member.keys.signing
    from teenet.audit import load_audit_key
    from teenet.coordinator.config import load_coordinator_config

    coordinator = load_coordinator_config(path)
    if not coordinator.audit_key.is_file():
        raise InputError("the coordinator's audit key does not exist yet (has it run?)",
                         source=str(coordinator.audit_key))
    key = load_audit_key(coordinator.audit_key, create=False, protection=coordinator.key_protection.resolve())
    return coordinator.database, key.public_key()


def _existing_log(db: Path) -> Path:
    if not db.is_file():
        raise InputError("no audit log here (has the node or coordinator run yet?)", source=str(db))
    return db


@app.command("verify")
def verify(db: Path = typer.Option(None, "--db", help=DB_HELP),
           config: Path = typer.Option(None, "--config", "-c", help="A node's or the coordinator's config, "
                                       "instead of --db: " + CONFIG_HELP),
           public_key: str = typer.Option(None, "--public-key",
                                          help="The log owner's Ed25519 public key (base64 of the raw 32 bytes)."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Verify every link and signed checkpoint of an audit log; name the first broken entry."""
    from_config = db is None
    db, owner_key = _log_of(db, config)
    key = ed25519_public_from_b64(public_key, source="--public-key", field="public_key") if public_key else owner_key
    entries, checkpoints = read_log(_existing_log(db))
    report = verify_chain(entries, checkpoints, key, read_tree_heads(db))
    data: dict[str, Any] = report.to_json() | {"db": str(db), "key_pinned": key is not None}
    witnessing = _witnessing_of(config) if from_config else None
    if witnessing is not None:
        data["witnessing"] = witnessing

    def render(c: Console) -> None:
        _render_report(c, report, pinned=key is not None)
        if witnessing is not None:
            _render_witnessing(c, witnessing)
    emit(data, as_json, render)
    if witnessing is not None and witnessing["equivocations"]:
        if as_json:
            raise typer.Exit(1)
        members = sorted({a["member"] for a in witnessing["equivocations"]})
        raise VerificationError("member.equivocated", f"this node caught {', '.join(members)} equivocating its "
                                "audit log (see above; `teenet audit acknowledge MEMBER` once handled)")
    if not report.ok:
        if as_json:
            raise typer.Exit(1)
        assert report.first_break is not None
        raise VerificationError("audit.chain", f"{db}: {report.first_break}")


def _witnessing_of(config: Path | None) -> dict[str, Any] | None:
    """For a node's config, its witnessing state; None for the coordinator's or with --db."""
    path = config_path(config)
    from teenet.yamlload import load_yaml

    root = load_yaml(path).root().value
    if not (isinstance(root, dict) and "node" in root):
        return None
    from teenet.config import load_node_config

    db = load_node_config(path).state_dir / "node.db"
    return witness_report(path) if db.is_file() else None


def _render_witnessing(c: Console, w: dict[str, Any]) -> None:
    for r in w["logs"]:
        c.print(f"witnessed log of {escape(r['member'])}: cosigned through size {r['cosigned_size']}, "
                f"{r['cosignatures']} cosignature(s), "
                + ("witnessed by the quorum" if r["witnessed"] else f"below the quorum of {w['witness_quorum']}"))
    for a in w["equivocations"]:
        ev = a["evidence"]
        c.print(f"[red]EQUIVOCATION[/red] by {escape(a['member'])} ({a['kind']}): verified\n{escape(ev['verified'])}"
                f"conflicting\n{escape(ev['conflicting'])}")


def _render_report(c: Console, report: ChainReport, *, pinned: bool) -> None:
    if report.ok:
        c.print(f"[green]ok[/green]: {report.entries} entries, {report.checkpoints} signed checkpoint(s), "
                f"head {report.last_seq} {report.last_hash.hex()[:16]}…")
    if report.ok and report.tree_head:
        origin, size, root = report.tree_head.splitlines()[:3]
        c.print(f"signed tree head: {origin} size {size} root {root} ({report.tree_heads} verified)")
    if report.ok and report.signed_through < report.last_seq:
        c.print(f"[yellow]note[/yellow]: entries after {report.signed_through} are chained but not yet "
                "covered by a signed checkpoint")
    if report.signer and not pinned:
        c.print(f"[yellow]note[/yellow]: checkpoints checked against the key the log itself names "
                f"({report.signer}); pass --public-key to pin the owner's key")
    elif not report.signer:
        c.print("[yellow]note[/yellow]: no signed checkpoint: the chain is intact but not signed")


@app.command("show")
def show(db: Path = typer.Option(None, "--db", help=DB_HELP),
         config: Path = typer.Option(None, "--config", "-c", help="A node's or the coordinator's config, "
                                     "instead of --db: " + CONFIG_HELP),
         limit: int = typer.Option(50, "--limit", min=1, help="Show the last N entries."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print the last entries of an audit log (run `verify` to check them)."""
    db, _ = _log_of(db, config)
    entries, checkpoints = read_log(_existing_log(db))
    signed = {c.seq for c in checkpoints}
    tail = entries[-limit:]
    rows = []
    for e in tail:
        try:
            rows.append(e.to_json() | {"signed": e.seq in signed})
        except Exception:  # a damaged payload is shown as such; `verify` says why
            rows.append({"seq": e.seq, "at": None, "event": None, "prev_hash": e.prev_hash.hex(),
                         "entry_hash": e.entry_hash.hex(), "signed": e.seq in signed, "damaged": True})

    def render(c: Console) -> None:
        table = Table("seq", "at", "event", "hash", show_lines=False)
        for r in rows:
            event = r["event"] or {}
            kind = event.get("type") or event.get("event") or "?"
            rest = ", ".join(f"{k}={_short(v)}" for k, v in event.items() if k not in ("type", "event", "at"))
            table.add_row(str(r["seq"]) + (" ✓" if r["signed"] else ""), str(r["at"] or "-"),
                          escape(f"{kind}: {rest}" if rest else str(kind)), r["entry_hash"][:16])
        c.print(table)
        c.print(f"{len(rows)} of {len(entries)} entries; ✓ = signed checkpoint")

    emit({"db": str(db), "total": len(entries), "entries": rows}, as_json, render)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "…"


# Witnessing (teenet/witness.py): the other members' logs this node cosigns ------------------

def _node_witness(config: Path | None) -> tuple[Any, Any, Any]:
    """(node config, its NodeStore, its Witness) from a node config."""
    from teenet.config import load_node_config
    from teenet.node.store import NodeStore
    from teenet.witness import coordinator_log, witnessed_members

    cfg = load_node_config(config_path(config))
    db = cfg.state_dir / "node.db"
    if not db.is_file():
        raise InputError("no node database here (has the node run yet?)", source=str(db))
    store = NodeStore(db)
    # Reading the state needs no key: the witness cosigns only in the daemon.
    witness = store.witness(cfg.node, None, witnessed_members(cfg.consortium), coordinator_log(cfg.consortium))
    return cfg, store, witness


def witness_report(config: Path) -> dict[str, Any]:
    """What `verify` adds for a node config: each witnessed log and the open alarms."""
    cfg, store, witness = _node_witness(config)
    try:
        return {"witness_quorum": cfg.consortium.witness_quorum,
                "logs": witness.status(cfg.consortium.witness_quorum),
                "equivocations": witness.alarms(open_only=True)}
    finally:
        store.close()


def _coordinator_log_state(consortium: Any) -> str:
    if consortium.coordinator_audit_key is None:
        return ("unwitnessed: the consortium file names no coordinator.audit_key, so no member can check "
                "its checkpoints")
    return "witnessed"


@app.command("witness-status")
def witness_status(config: Path = typer.Option(None, "--config", "-c", help="A node's config: " + CONFIG_HELP),
                   as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Each other member's log this node witnesses: last cosigned size, cosignatures, alarms."""
    cfg, store, witness = _node_witness(config)
    try:
        quorum = cfg.consortium.witness_quorum
        data = {"node": cfg.node, "witness_quorum": quorum, "logs": witness.status(quorum),
                "alarms": witness.alarms(), "coordinator_log": _coordinator_log_state(cfg.consortium)}
    finally:
        store.close()

    def render(c: Console) -> None:
        table = Table("member", "origin", "cosigned size", "cosignatures", "witnessed", "state")
        for r in data["logs"]:
            table.add_row(escape(r["member"]), escape(r["origin"]), str(r["cosigned_size"]), str(r["cosignatures"]),
                          "yes" if r["witnessed"] else "no",
                          "[red]EQUIVOCATED[/red]" if r["blocked"] else "ok")
        c.print(table)
        if data["coordinator_log"] != "witnessed":
            c.print(f"[yellow]note[/yellow]: the coordinator's log is {data['coordinator_log']}")
        c.print(f"quorum: {quorum} cosignature(s); {sum(1 for a in data['alarms'] if not a['acknowledged_at'])} "
                f"open equivocation alarm(s)")
    emit(data, as_json, render)


@app.command("acknowledge")
def acknowledge(member: str = typer.Argument(..., help="The member whose equivocation alarm to close."),
                config: Path = typer.Option(None, "--config", "-c", help="A node's config: " + CONFIG_HELP),
                operator: str = typer.Option("operator", "--operator", help="Who acknowledges (audited)."),
                as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Close MEMBER's equivocation alarm (audited): new jobs with it are taken again, and its
    log's next checkpoint becomes this witness's new starting point."""
    from teenet.audit import AuditLog
    from teenet.identity import MemberKeys
    from teenet.node.enclave import build_enclave

    cfg, store, witness = _node_witness(config)
    try:
        if not operator.strip():
            raise InputError("--operator must not be empty (it goes into the audit log)")
        if not store.equivocated([member]):
            cfg.consortium.member(member)  # an unknown member is said as such
            raise InputError(f"no open equivocation alarm for '{member}' on this node")

        def sealing_key():  # built only for key_protection: enclave
            return build_enclave(cfg.enclave.backend, cfg.enclave.sim_dir,
                                 intel_collateral=cfg.enclave.intel_collateral).derive_sealing_key()

        keys = MemberKeys.load(cfg.keys_dir, cfg.key_protection.resolve(sealing_key))
        audit = AuditLog(cfg.state_dir / "audit.db", keys.signing)
        try:
            # The audit entry first: the alarm never closes without its record.
            audit.append({"event": "equivocation_acknowledged", "node": cfg.node, "member": member,
                          "operator": operator})
            closed = witness.acknowledge(member, operator)
        finally:
            audit.close()
    finally:
        store.close()
    emit({"node": cfg.node, "member": member, "operator": operator, "closed": closed}, as_json,
         lambda c: c.print(f"{escape(member)}: {closed} equivocation alarm(s) acknowledged by {escape(operator)} "
                           f"(audited); new jobs with it are taken again"))
