"""`teenet audit verify|show`: check a hash-chained audit log offline, or print it.

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
    db, owner_key = _log_of(db, config)
    key = ed25519_public_from_b64(public_key, source="--public-key", field="public_key") if public_key else owner_key
    entries, checkpoints = read_log(_existing_log(db))
    report = verify_chain(entries, checkpoints, key, read_tree_heads(db))
    data: dict[str, Any] = report.to_json() | {"db": str(db), "key_pinned": key is not None}
    emit(data, as_json, lambda c: _render_report(c, report, pinned=key is not None))
    if not report.ok:
        if as_json:
            raise typer.Exit(1)
        assert report.first_break is not None
        raise VerificationError("audit.chain", f"{db}: {report.first_break}")


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
