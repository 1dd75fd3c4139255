"""`teenet audit verify|show`: check a hash-chained audit log offline, or print it.

Works on any teenet audit log file: the coordinator's database or a node's audit.db.
`verify` exits 1 naming the first broken entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from teenet.audit import ChainReport, read_log, verify_chain
from teenet.cli.output import JSON_HELP, emit
from teenet.errors import VerificationError
from teenet.identity import ed25519_public_from_b64

app = typer.Typer(no_args_is_help=True)

DB_HELP = "The SQLite file holding the log (coordinator.db or a node's audit.db)."


@app.command("verify")
def verify(db: Path = typer.Option(..., "--db", help=DB_HELP),
           public_key: str = typer.Option(None, "--public-key",
                                          help="The log owner's Ed25519 public key (base64 of the raw 32 bytes)."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Verify every link and signed checkpoint of an audit log; name the first broken entry."""
    key = ed25519_public_from_b64(public_key, source="--public-key", field="public_key") if public_key else None
    entries, checkpoints = read_log(db)
    report = verify_chain(entries, checkpoints, key)
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
    if report.ok and report.signed_through < report.last_seq:
        c.print(f"[yellow]note[/yellow]: entries after {report.signed_through} are chained but not yet "
                "covered by a signed checkpoint")
    if report.signer and not pinned:
        c.print(f"[yellow]note[/yellow]: checkpoints checked against the key the log itself names "
                f"({report.signer}); pass --public-key to pin the owner's key")
    elif not report.signer:
        c.print("[yellow]note[/yellow]: no signed checkpoint: the chain is intact but not signed")


@app.command("show")
def show(db: Path = typer.Option(..., "--db", help=DB_HELP),
         limit: int = typer.Option(50, "--limit", min=1, help="Show the last N entries."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print the last entries of an audit log (run `verify` to check them)."""
    entries, checkpoints = read_log(db)
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
