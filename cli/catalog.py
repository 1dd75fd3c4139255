"""`teenet catalog register|show`: an owner's timestamped record of holding a table, in its
own witnessed audit log (issue 14).

`register TABLE` computes the table's current fingerprint by the same definition as a
shipped table's (teenet/lineage.py, docs/format.md "Table registration"): the RFC 9162
root over the plaintext chunks of the canonical sealed Arrow stream of the columns the
owner's policy grants for it (`policy.tables.TABLE`, in the table's own column order), as
the node's catalog reads it. It appends `catalog_registered` (table, columns, fingerprint,
chunk count, row count rounded down to a multiple of the table's k, or "<k") to the node's
audit log and signs a tree head covering it, which the node's daemon publishes and the
other members cosign. The entry's time is the audit entry's `at`. `show` lists the
registrations in the log, each judged against the coordinator's board: is a
checkpoint a quorum cosigned at or beyond the tree head covering it (`witnessed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from teenet.cli.common import CONFIG_HELP, config_path
from teenet.cli.output import JSON_HELP, emit
from teenet.errors import InputError

app = typer.Typer(no_args_is_help=True, help="An owner's table registrations: fingerprints in its witnessed log.")

EVENT = "catalog_registered"
# The registration stream's binding: no job (32 zero bytes), the owner, the table. The
# binding is in the stream's header, not in its chunk plaintexts: it does not enter the fingerprint.
NO_JOB = bytes(32)


def registration_columns(cfg, table: str, source: str) -> list[str]:
    """The columns a registration covers: the granted ones, in the table's own order."""
    if table not in cfg.tables:
        raise InputError(f"'{table}' is not a table of node '{cfg.node}' (its tables: "
                         f"{', '.join(sorted(cfg.tables)) or 'none'})", source=source, field="tables")
    granted = (cfg.policy.tables if cfg.policy is not None else {}).get(table)
    if not granted:
        raise InputError(f"table '{table}' grants no columns: list them under policy.tables.{table}",
                         source=source, field=f"policy.tables.{table}")
    return list(granted)


def table_k(cfg, table: str) -> int:
    """The table's k under the owner's release rules (its policy's, or its analysis rule's if larger)."""
    policy = cfg.policy
    k = int(policy.min_group_size)
    rule = policy.analysis.get(table)
    return max(k, int(getattr(rule, "min_k", 0) or 0))


def table_fingerprint(catalog, owner: str, table: str, columns: list[str]) -> tuple[bytes, int, int, list[str]]:
    """(root, chunks, rows, columns in stream order): the sealed stream's fingerprint, sealed
    under a throwaway key exactly as a shipment is (the key and binding do not enter it)."""
    from teenet.lineage import Fingerprinter
    from teenet.sealing import StreamBinding, TableKey, seal_table

    order = [c for c in catalog.columns(table) if c in set(columns)]
    missing = [c for c in columns if c not in order]
    if missing:
        raise InputError(f"table '{table}' has no column(s) {', '.join(missing)} that its policy grants",
                         field=f"policy.tables.{table}")
    fp = Fingerprinter()
    rows = [0]

    def counted(batches):
        for b in batches:
            rows[0] += b.num_rows
            yield b

    for _ in seal_table(counted(catalog.batches(table, order)), TableKey.generate(),
                        StreamBinding(NO_JOB, owner, table), on_chunk=fp.add_chunk):
        pass
    return fp.root(), fp.chunks, rows[0], order


def _node(config: Path | None):
    from teenet.config import load_node_config

    path = config_path(config)
    cfg = load_node_config(path)
    if cfg.role != "data":
        raise InputError(f"node '{cfg.node}' is a {cfg.role} node; only a data node holds tables",
                         source=str(path), field="role")
    return path, cfg


@app.command("register")
def register(table: str = typer.Argument(..., help="A table of this node (its config's `tables`)."),
             config: Path = typer.Option(None, "--config", "-c", help="The data node's config: " + CONFIG_HELP),
             as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Fingerprint TABLE as it is now and record it in this node's witnessed audit log."""
    from teenet.audit import AuditLog
    from teenet.identity import MemberKeys
    from teenet.lineage import rounded_rows
    from teenet.node.catalog import Catalog
    from teenet.node.enclave import build_enclave

    path, cfg = _node(config)
    columns = registration_columns(cfg, table, str(path))
    root, chunks, rows, order = table_fingerprint(Catalog.from_config(cfg.tables), cfg.node, table, columns)

    def sealing_key():  # built only for key_protection: enclave
        return build_enclave(cfg.enclave.backend, cfg.enclave.sim_dir,
                             intel_collateral=cfg.enclave.intel_collateral).derive_sealing_key()

    keys = MemberKeys.load(cfg.keys_dir, cfg.key_protection.resolve(sealing_key))
    k = table_k(cfg, table)
    audit = AuditLog(cfg.state_dir / "audit.db", keys.signing)
    try:
        entry = audit.append({"event": EVENT, "node": cfg.node, "table": table, "columns": order,
                              "fingerprint": root.hex(), "chunks": chunks, "rows": rounded_rows(rows, k)})
        head = audit.checkpoint()  # a signed tree head covering it: the daemon publishes it
    finally:
        audit.close()
    data = {"node": cfg.node, "table": table, "columns": order, "fingerprint": root.hex(), "chunks": chunks,
            "rows": rounded_rows(rows, k), "k": k, "at": entry.at, "audit_seq": entry.seq,
            "tree_head_size": head.seq if head else entry.seq}
    emit(data, as_json, lambda c: c.print(
        f"registered {cfg.node}/{table}: fingerprint {root.hex()} ({chunks} chunk(s), rows {data['rows']}, "
        f"columns {', '.join(order)}) at {entry.at}, audit entry {entry.seq}; the node publishes it to its "
        "witnesses with its next head", markup=False))


@app.command("show")
def show(config: Path = typer.Option(None, "--config", "-c", help="The data node's config: " + CONFIG_HELP),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the table registrations in this node's audit log, oldest first."""
    from teenet.audit import read_log

    path, cfg = _node(config)
    db = cfg.state_dir / "audit.db"
    if not db.is_file():
        raise InputError("no audit log here (has the node run, or a table been registered, yet?)", source=str(db))
    entries, _ = read_log(db)
    rows: list[dict[str, Any]] = []
    for e in entries:
        try:
            event = e.event
        except InputError:
            continue  # a damaged entry: `teenet audit verify` names it
        if event.get("event") == EVENT:
            rows.append({"audit_seq": e.seq, "at": e.at, **{k: event.get(k) for k in
                                                            ("table", "fingerprint", "chunks", "rows", "columns")}})

    note = _witnessing(cfg, db, rows) if rows else ""

    def render(c) -> None:
        from rich.table import Table

        t = Table("entry", "at", "table", "rows", "fingerprint", "witnessed")
        for r in rows:
            t.add_row(str(r["audit_seq"]), str(r["at"]), str(r["table"]), str(r["rows"]), str(r["fingerprint"]),
                      str(r.get("witnessed", "not judged")))
        c.print(t)
        c.print(f"{len(rows)} registration(s) in {db}" + (f"; {note}" if note else ""))

    emit({"node": cfg.node, "registrations": rows, "witnessing_note": note}, as_json, render)


def _witnessing(cfg, db: Path, rows: list[dict[str, Any]]) -> str:
    """Judge, against the coordinator's board, whether a checkpoint a quorum cosigned covers
    each registration (`witnessed`: "yes" or "not yet"); a note when it cannot be judged."""
    from teenet.audit import read_tree_heads
    from teenet.cli.lineage import CoordinatorBoard
    from teenet.errors import TeenetError
    from teenet.node.links import CoordinatorLink
    from teenet.tlog import Checkpoint, SignedNote
    from teenet.witness import quorum_state, witnessed_members

    from dataclasses import replace

    heads = sorted((Checkpoint.parse(SignedNote.parse(n).body) for n in read_tree_heads(db)), key=lambda h: h.size)
    try:  # the node's own TLS identity, as `job` commands use it ('enclave' keys open only in the node)
        link = CoordinatorLink(cfg.coordinator, replace(cfg.tls, protection=cfg.key_protection.resolve()),
                               cfg.consortium.coordinator_name)
    except TeenetError as exc:
        return f"witnessing not judged: {exc}"
    board = CoordinatorBoard(link.stub, "try again later")
    key = cfg.member.keys.signing
    try:
        for r in rows:
            head = next((h for h in heads if h.size >= r["audit_seq"]), None)
            if head is None:
                r["witnessed"] = "not yet (no signed tree head covers it)"
                continue
            state = quorum_state(board, log="catalog", member=cfg.node, key=key, head=head,
                                 witnesses=witnessed_members(cfg.consortium), quorum=cfg.consortium.witness_quorum)
            r["witnessed"] = {"witnessed": "yes", "unwitnessed": "not yet"}.get(state.state, "INCONSISTENT")
            r["witnessing"] = state.to_json()
    except TeenetError as exc:
        for r in rows:
            r.pop("witnessed", None)
        return f"witnessing not judged: {exc}"
    finally:
        link.close()
    return ""
