#!/usr/bin/env python3
"""A witness's poll of the checkpoint board on a long history: unpaged (before) vs paged (after).

Builds a real coordinator store (CoordinatorStore, migration 5) in a temp dir holding one
member's log with --checkpoints tree heads, each cosigned by --witnesses real witnesses
(each saw the first head, then paged through all the others, verifying every consistency
proof). Then, side by side in one run, --rounds times: the member publishes one more head
and one witness polls, measured two ways on the same board:

  before  the requests a witness sent before paged reads (teenet before issue 14's fix):
          GetCheckpoints without `rows` for the checkpoints past its head and for the
          cosignatures, each reply carrying every cosignature of the log, and the split-view
          check over all of them; served with the reply cap lifted (the board now refuses
          such a reply over PAGE_BYTES; the old one sent it and hit gRPC's 4 MiB limit)
  after   Witness.run_once through teenet.witness.GrpcBoard: paged reads past its cursors

Both go through the coordinator's reply function (coordinator/service.py board_reply) and
protobuf encoding in process (no TLS, no sockets: the bytes are what the wire would carry).
Prints and writes (--out, JSON) the reply bytes and the wall time per poll, and the ratios.

    .venv/bin/python scripts/board_poll.py --checkpoints 10000 --witnesses 3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from teenet.audit import default_origin  # noqa: E402
from teenet.coordinator.service import board_reply  # noqa: E402
from teenet.coordinator.store import CoordinatorStore  # noqa: E402
from teenet.proto import teenet_pb2 as pb  # noqa: E402
from teenet.tlog import Checkpoint, MerkleTree, SignedNote, cosign, sign_note  # noqa: E402
from teenet.witness import CheckpointBoard, Cosignature, GrpcBoard, Witness, count_cosignatures  # noqa: E402


class Loopback:
    """The coordinator's GetCheckpoints/PostCosignature in process, through the wire encoding."""

    def __init__(self, board: CheckpointBoard) -> None:
        self.board, self.bytes, self.calls = board, 0, 0

    def GetCheckpoints(self, request, timeout=None):
        req = pb.CheckpointRequest.FromString(request.SerializeToString())
        reply = (pb.CheckpointsReply(origins=self.board.origins(), rows=req.rows) if not req.origin
                 else board_reply(self.board, req))
        data = reply.SerializeToString()
        self.bytes += len(data)
        self.calls += 1
        return pb.CheckpointsReply.FromString(data)

    def PostCosignature(self, request, timeout=None):
        req = pb.CheckpointCosignature.FromString(request.SerializeToString())
        self.board.post_cosignature(req.witness, req.body, req.line)
        return pb.Ack(ok=True)


def _chain(key, n):
    origin = default_origin(key.public_key())
    tree, prev = MerkleTree(), 0
    for i in range(n):
        tree.append(b"entry %d" % i)
        size = tree.size
        yield sign_note(Checkpoint(origin, size, tree.root()).body(), origin, key), prev, (
            tree.consistency_proof(prev, size) if prev else [])
        prev = size


def _witness(conn_path: Path, name, key, publics) -> Witness:
    conn = sqlite3.connect(conn_path, isolation_level=None, check_same_thread=False)
    return Witness(conn, threading.RLock(), name, key, publics)


def old_poll(stub: Loopback, witness: Witness, origin: str, key, publics) -> None:
    """What a witness did per log before paging: two unpaged reads (each with every
    cosignature), cosign what is new, judge every cosignature for a split view."""
    head = witness.head(origin)
    reply = stub.GetCheckpoints(pb.CheckpointRequest(origin=origin, min_size=head[0]))
    for c in reply.checkpoints:
        body = SignedNote.parse(c.note).body
        if Checkpoint.parse(body).size > head[0]:
            stub.PostCosignature(pb.CheckpointCosignature(witness=witness.name, body=body,
                                                          line=cosign(body, witness.name, key, int(time.time()))))
    reply = stub.GetCheckpoints(pb.CheckpointRequest(origin=origin, min_size=1 << 62))
    cosigs = [Cosignature(c.witness, c.body, c.line) for c in reply.cosignatures]
    witness._split_view(cosigs, origin, "bank")
    count_cosignatures(cosigs, SignedNote.parse(head[2]).body, {n: k for n, k in publics.items() if n != "bank"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", type=int, default=10_000)
    ap.add_argument("--witnesses", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.checkpoints < 2 or args.witnesses < 1 or args.rounds < 1:
        ap.error("--checkpoints >= 2, --witnesses >= 1, --rounds >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="teenet-board-poll-"))
    names = ["bank"] + [f"w{i}" for i in range(args.witnesses)]
    keys = {n: ed25519.Ed25519PrivateKey.generate() for n in names}
    publics = {n: k.public_key() for n, k in keys.items()}
    origin = default_origin(publics["bank"])
    store = CoordinatorStore(tmp / "coordinator.db")
    store.conn.execute("PRAGMA synchronous=OFF")  # seeding only; measured below with the store's own FULL
    board = CheckpointBoard(store.conn, store.lock, publics, page_bytes=1 << 40)  # the old, uncapped reply
    paged = CheckpointBoard(store.conn, store.lock, publics)
    chain = _chain(keys["bank"], args.checkpoints + 2 * args.rounds)
    t0 = time.perf_counter()
    board.publish("bank", *next(chain))
    witnesses = [_witness(tmp / f"{n}.db", n, keys[n], publics) for n in names[1:]]
    for w in witnesses:
        w._conn.execute("PRAGMA synchronous=OFF")
        w.run_once(board)
    for _ in range(args.checkpoints - 1):
        board.publish("bank", *next(chain))
    for w in witnesses:
        w.run_once(board)
        w._conn.execute("PRAGMA synchronous=FULL")
    store.conn.execute("PRAGMA synchronous=FULL")
    print(f"built: {args.checkpoints} checkpoints x {args.witnesses} cosignatures in "
          f"{time.perf_counter() - t0:.1f}s ({tmp})", file=sys.stderr)

    w = witnesses[0]
    figures = {side: {"bytes": [], "seconds": [], "requests": []} for side in ("before", "after")}
    for _ in range(args.rounds):
        for side in ("before", "after"):
            board.publish("bank", *next(chain))
            if side == "before":
                stub = Loopback(board)
                t = time.perf_counter()
                old_poll(stub, w, origin, keys[w.name], publics)
                # the old round left its head unmoved; move it as the old code did (not timed)
                elapsed = time.perf_counter() - t
                w.run_once(board)
            else:
                stub = Loopback(paged)
                t = time.perf_counter()
                w.run_once(GrpcBoard(stub))
                elapsed = time.perf_counter() - t
            figures[side]["bytes"].append(stub.bytes)
            figures[side]["requests"].append(stub.calls)
            figures[side]["seconds"].append(elapsed)
    out = {"checkpoints": args.checkpoints, "witnesses": args.witnesses, "rounds": args.rounds}
    for side in ("before", "after"):
        out[side] = {"reply_bytes_per_poll": statistics.median(figures[side]["bytes"]),
                     "reads_per_poll": statistics.median(figures[side]["requests"]),
                     "seconds_per_poll_median": statistics.median(figures[side]["seconds"])}
    out["bytes_ratio_before_over_after"] = out["before"]["reply_bytes_per_poll"] / max(
        1, out["after"]["reply_bytes_per_poll"])
    out["time_ratio_before_over_after"] = out["before"]["seconds_per_poll_median"] / max(
        1e-9, out["after"]["seconds_per_poll_median"])
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
