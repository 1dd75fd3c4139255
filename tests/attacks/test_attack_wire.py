"""What the coordinator sees, decrypted: every gRPC message it receives and sends, its
database and its log, searched for every distinctive cell value of every input table.

The earlier checks searched captures of TCP proxies in front of mutual-TLS endpoints,
i.e. TLS ciphertext, so they could not fail. Here the real coordinator (server, store,
state machine, audit) runs in the test process with a server interceptor that records each
request and each reply (or refusal text) as protobuf bytes, on the decrypted side, in
front of real node processes. Jobs of every ending run through it: succeeded, failed on a
malformed row, rejected by an owner's policy, and cancelled. The bank's `ledger` is a
SQLite table whose row 66,001 holds a distinctive string in its integer `customer_id`
column: the job over it fails mid-upload at the bank, whose reader's error quotes it.

A value is searched as text (a whole token) and, for numbers, as 8-byte little- and
big-endian integers or doubles. Values that would match by chance are left out and counted
(integers below 10,000 such as ages and counts, floats with fewer than 6 characters, strings
under 5 characters): they appear in any message as lengths, versions and timestamps.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import struct
import threading

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from attack_kit import Analyst, AttackNet, edit_yaml, start_node, wait_until

pytestmark = pytest.mark.slow

POISON = "TEENET-POISON-4417-QZ"
LEDGER_ROWS = 70_000
POISON_ROW = 66_000  # past the reader's first batch of 65,536 rows: the table's schema reads fine

PSI = """\
name: {name}
function: psi
compute: compute-1
inputs:
  - {{party: bank,    table: {table}, key: customer_id, columns: []}}
  - {{party: insurer, table: policies, key: customer_id, columns: []}}
params: {{normalise: {{trim: true, case: none, type: int}}}}
release:
  - {{kind: {kind}, to: [{to}]}}
"""
# The insurer's rules approve training only by an operator: this job waits, and is cancelled.
WAITING = """\
name: waits-for-the-insurer
function: train
compute: compute-1
inputs:
  - {party: bank,    table: customers, key: customer_id, columns: [income, defaulted]}
  - {party: insurer, table: policies,  key: customer_id, columns: [claims, premium]}
params: {layout: vertical, model: logistic_regression, label: {party: bank, column: defaulted},
         test_fraction: 0.25, seed: 3}
release:
  - {kind: metrics, to: [analyst]}
"""


class MessageRecorder(grpc.ServerInterceptor):
    """Keeps every message of every call (unary, and the streamed results), as the servicer
    receives and answers it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()

    def _keep(self, method: str, direction: str, data: bytes) -> None:
        with self._lock:
            self.messages.append((method, direction, data))

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is not None and handler.stream_unary is not None:  # PostResultStream
            return self._client_stream(handler_call_details.method, handler)
        if handler is not None and handler.unary_stream is not None and "Health" not in handler_call_details.method:
            return self._server_stream(handler_call_details.method, handler)  # FetchResultStream
        if handler is None or handler.unary_unary is None:
            assert handler is None or "Health" in handler_call_details.method, handler_call_details.method
            return handler
        method, inner = handler_call_details.method, handler.unary_unary

        def recorded(request, context):
            self._keep(method, "in", request.SerializeToString())
            try:
                reply = inner(request, context)
            except BaseException:
                details = getattr(context, "details", lambda: None)()
                self._keep(method, "refused", (details or "").encode() if isinstance(details, str) else details or b"")
                raise
            self._keep(method, "out", reply.SerializeToString())
            return reply

        return grpc.unary_unary_rpc_method_handler(recorded, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    def _refused(self, method: str, context) -> None:
        details = getattr(context, "details", lambda: None)()
        self._keep(method, "refused", (details or "").encode() if isinstance(details, str) else details or b"")

    def _client_stream(self, method: str, handler):
        inner = handler.stream_unary

        def recorded(request_iterator, context):
            def kept():
                for request in request_iterator:
                    self._keep(method, "in", request.SerializeToString())
                    yield request
            try:
                reply = inner(kept(), context)
            except BaseException:
                self._refused(method, context)
                raise
            self._keep(method, "out", reply.SerializeToString())
            return reply

        return grpc.stream_unary_rpc_method_handler(recorded, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)

    def _server_stream(self, method: str, handler):
        inner = handler.unary_stream

        def recorded(request, context):
            self._keep(method, "in", request.SerializeToString())
            try:
                for reply in inner(request, context):
                    self._keep(method, "out", reply.SerializeToString())
                    yield reply
            except BaseException:
                self._refused(method, context)
                raise

        return grpc.unary_stream_rpc_method_handler(recorded, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)

    def blob(self) -> bytes:
        with self._lock:
            return b"\n".join(sorted({m[2] for m in self.messages}))


class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _ledger(path, customer_ids) -> None:
    rng = np.random.default_rng(11)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ledger (customer_id INTEGER, amount REAL)")
    ids = [int(c) for c in customer_ids] + list(range(50_000_000, 50_000_000 + LEDGER_ROWS - len(customer_ids)))
    rows = [(cid, round(float(a), 2)) for cid, a in zip(ids, rng.lognormal(7.0, 1.0, len(ids)))]
    rows[POISON_ROW] = (POISON, rows[POISON_ROW][1])  # SQLite keeps the text as it is
    conn.executemany("INSERT INTO ledger VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox
    from teenet.coordinator import server
    from teenet.coordinator.config import load_coordinator_config

    d = tmp_path_factory.mktemp("wirenet")
    init_sandbox(d, rows=2000)
    customers = pq.read_table(d / "data" / "bank" / "customers.parquet")
    _ledger(d / "data" / "bank" / "ledger.db", customers.column("customer_id").to_pylist())

    def bank(c):
        c["tables"]["ledger"] = {"format": "sqlite", "path": str(d / "data" / "bank" / "ledger.db"),
                                 "query": "SELECT customer_id, amount FROM ledger"}
        c["policy"]["tables"]["ledger"] = ["customer_id", "amount"]

    edit_yaml(d / "bank.yaml", bank)
    edit_yaml(d / "consortium.yaml",
              lambda c: c["members"]["bank"]["tables"].__setitem__("ledger", ["customer_id", "amount"]))
    recorder, logs = MessageRecorder(), LogRecorder()
    logs.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(logs)
    previous = root.level
    root.setLevel(logging.DEBUG)
    running = server.serve(load_coordinator_config(d / "coordinator.yaml"), interceptors=[recorder])
    try:
        for name in ("compute-1", "bank", "telco", "insurer"):
            start_node(d, name)
        net = AttackNet(d, compute_wire=None)  # type: ignore[arg-type]
        net.extra.update(recorder=recorder, logs=logs, coordinator=running.coordinator,
                         database=load_coordinator_config(d / "coordinator.yaml").database)
        analyst = net.extra["analyst"] = Analyst(net)
        jobs = net.extra["jobs"] = {}
        for name in ("psi-overlap", "spend-by-region"):
            jobs[name] = analyst.submit((d / "jobs" / f"{name}.yaml").read_text())
        jobs["poisoned"] = analyst.submit(PSI.format(name="poisoned", table="ledger", kind="size", to="analyst, bank"))
        jobs["rejected"] = analyst.submit(PSI.format(name="ids-to-analyst", table="customers", kind="ids",
                                                     to="analyst"), validate=False)
        cancelled = jobs["cancelled"] = analyst.submit(WAITING)
        wait_until(lambda: net.audit_for("insurer", cancelled, "approval_pending"), 60, "the insurer's operator")
        analyst.cancel(cancelled, "changed my mind")
        net.extra["states"] = {name: analyst.wait(job_id, timeout=120) for name, job_id in jobs.items()}
        for name in ("psi-overlap", "spend-by-region"):
            analyst.result(jobs[name])  # the analyst fetches: the mailbox's replies are recorded too
        # every node reported what it had to: nothing more is on its way to the coordinator
        wait_until(lambda: net.audit_for("bank", jobs["poisoned"], "upload_failed"), 30, "the bank's failure")
        yield net
        analyst.close()
    finally:
        down_sandbox(d)
        running.stop(grace=1)
        root.removeHandler(logs)
        root.setLevel(previous)


# --- the search -----------------------------------------------------------------------------

class Needles:
    """Every cell value of the input tables, in the forms it could take on the wire."""

    def __init__(self) -> None:
        self.text: set[bytes] = set()
        self.strings: set[bytes] = set()
        self.words: set[int] = set()  # 8-byte patterns, read as little-endian uint64
        self.values = 0
        self.skipped = 0

    def add(self, value) -> None:
        if value is None:
            return
        self.values += 1
        if isinstance(value, str):
            if len(value) >= 5:
                self.strings.add(value.encode())
            else:
                self.skipped += 1
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            v = int(value)
            if abs(v) < 10_000:
                self.skipped += 1
                return
            self.text.add(str(v).encode())
            for order in ("<q", ">q"):
                self.words.add(struct.unpack("<Q", struct.pack(order, v))[0])
        elif isinstance(value, float):
            text = repr(value)
            if len(text) < 6 or value == int(value) and abs(value) < 10_000:
                self.skipped += 1
                return
            self.text.add(text.encode())
            for order in ("<d", ">d"):
                self.words.add(struct.unpack("<Q", struct.pack(order, value))[0])

    def found_in(self, blob: bytes) -> list[str]:
        hits: list[str] = []
        tokens = set(re.findall(rb"[A-Za-z0-9_.+\-]+", blob)) | set(re.findall(rb"-?[0-9]+(?:\.[0-9]+)?", blob))
        hits += [f"text {t.decode()}" for t in sorted(self.text & tokens)]
        hits += [f"string {s.decode()}" for s in sorted(self.strings) if s in blob]
        if len(blob) >= 8 and self.words:
            raw = np.frombuffer(blob, dtype=np.uint8).astype(np.uint64)
            windows = np.zeros(len(blob) - 7, dtype=np.uint64)
            for k in range(8):
                windows |= raw[k:len(blob) - 7 + k] << np.uint64(8 * k)
            wanted = np.fromiter(self.words, dtype=np.uint64)
            for w in np.unique(windows[np.isin(windows, wanted)]):
                hits.append(f"8 bytes {int(w).to_bytes(8, 'little').hex()}")
        return hits


@pytest.fixture(scope="module")
def needles(wire) -> Needles:
    found = Needles()
    for party, table in (("bank", "customers"), ("telco", "usage"), ("insurer", "policies")):
        for column in pq.read_table(wire / "data" / party / f"{table}.parquet").to_pydict().values():
            for value in column:
                found.add(value)
    conn = sqlite3.connect(wire / "data" / "bank" / "ledger.db")
    for row in conn.execute("SELECT customer_id, amount FROM ledger"):
        for value in row:
            found.add(value)
    conn.close()
    assert POISON.encode() in found.strings
    return found


def test_every_ending_went_through_the_recorded_coordinator(wire):
    states = {name: (st.state, st.reason) for name, st in wire.extra["states"].items()}
    assert states["psi-overlap"][0] == states["spend-by-region"][0] == "succeeded", states
    assert states["poisoned"] == ("failed", "bank could not read ledger: input.value (field 'customer_id')"), states
    assert states["rejected"][0] == "failed" and states["rejected"][1].startswith("rejected by "), states
    assert states["cancelled"] == ("cancelled", "changed my mind"), states
    # The value did reach the reader's error: the bank's operator reads it in the bank's own audit.
    failed = wire.audit_for("bank", wire.extra["jobs"]["poisoned"], "upload_failed")
    assert POISON in failed[0]["detail"], failed
    methods = {m for m, _, _ in wire.extra["recorder"].messages}
    assert {"/teenet.v1.Coordinator/SubmitJob", "/teenet.v1.Coordinator/Poll", "/teenet.v1.Coordinator/ReportStatus",
            "/teenet.v1.Coordinator/PostResultStream", "/teenet.v1.Coordinator/FetchResultStream",
            "/teenet.v1.Coordinator/CancelJob",
            # the members' log heads and cosignatures (teenet/witness.py) cross the same wire
            "/teenet.v1.Coordinator/PublishCheckpoint", "/teenet.v1.Coordinator/GetCheckpoints",
            "/teenet.v1.Coordinator/PostCosignature"} <= methods, methods


def test_the_search_finds_a_value_planted_in_any_form(needles):
    some_id = next(t for t in sorted(needles.text) if t.isdigit())
    for planted in (b"x" * 40 + some_id + b",", struct.pack("<q", int(some_id)), struct.pack(">q", int(some_id)),
                    b"..." + POISON.encode() + b"..."):
        assert needles.found_in(b"\x00\x01 noise " + planted + b" noise"), planted
    assert needles.found_in(b"\x00\x01 noise without any value " * 100) == []
    assert needles.values > 150_000 and needles.skipped < needles.values / 2, (needles.values, needles.skipped)


def test_no_cell_value_is_in_any_message_the_coordinator_received_or_sent(wire, needles):
    blob = wire.extra["recorder"].blob()
    assert b"bank could not read ledger" in blob  # the poisoned job's report is in there
    assert needles.found_in(blob) == []


def test_no_cell_value_is_in_the_coordinators_database_or_its_log(wire, needles):
    database = wire.extra["database"]
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert len(stored) > 10_000
    assert needles.found_in(stored) == []
    log = "\n".join(wire.extra["logs"].lines).encode()
    assert b"bank could not read ledger" in log
    assert needles.found_in(log) == []


def test_the_poisoned_value_reached_no_node_but_its_owner(wire):
    """The compute host keeps the enclave's log and audit outside the enclave; the other
    owners are other agencies: none of them holds the bank's bad cell."""
    for name in ("compute-1", "telco", "insurer"):
        assert POISON not in wire.log_text(name), name
        assert POISON not in repr(wire.audit(name)), name


def test_a_member_outside_a_job_reads_none_of_its_audit_entries(wire):
    """The telco has no part in the spend-by-region job, the poisoned one, the rejected one or
    the cancelled one (bank and insurer only): the coordinator's GetAudit gives it none of
    their entries, though it gives them to the insurer, and the telco's own job's to it."""
    from teenet.proto import teenet_pb2 as pb

    jobs = wire.extra["jobs"]
    theirs = {jobs[n] for n in ("spend-by-region", "poisoned", "rejected", "cancelled")}

    def job_ids(member: str) -> set[str]:
        channel, stub = wire.coordinator_stub(member)
        with channel:
            entries = stub.GetAudit(pb.AuditRequest(after_seq=0, limit=1000), timeout=10).entries
        import json

        return {json.loads(e.payload)["event"].get("job_id") for e in entries}

    insurer, telco = job_ids("insurer"), job_ids("telco")
    assert theirs <= insurer
    assert jobs["psi-overlap"] in telco
    assert telco & theirs == set()
    assert telco <= {jobs["psi-overlap"]}
