"""A coordinator that lies, in front of real data nodes, a real compute node and the analyst.

The coordinator here is the real one (`teenet.coordinator.server.serve`, its store, state
machine and audit chain) started in the test process with a subclass of `Coordinator`
whose `poll` and `fetch_results` lie for chosen jobs: they alter or swap the job, drop,
forge or replay approvals, replay old offers or offers of an enclave the owners did not
pin, hand out another job's results, and inject jobs no analyst signed. The data nodes and
the compute node are real processes. Each case shows that the lie is detected where it
lands, the reason in job status and in the audit logs, and that no table left an owner.
The telco's policy requires hardware evidence, so it also shows an owner refusing simulated
compute evidence. Cases are listed in docs/security.md.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from attack_kit import Analyst, AttackNet, edit_yaml, one_byte_copy, restart_node, start_node, wait_until
from teenet.coordinator.state import Coordinator, WorkItem
from teenet.proto import teenet_pb2 as pb

pytestmark = pytest.mark.slow

JOB = """\
name: {name}
function: psi
compute: compute-1
inputs:
  - {{party: bank,    table: customers, key: customer_id, columns: []}}
  - {{party: {other}, table: {table},  key: customer_id, columns: []}}
params: {{normalise: {{trim: true, case: none, type: int}}}}
release:
  - {{kind: size, to: [analyst, bank]}}
"""


TELCO_APPROVAL_SECONDS = 8


def job(name: str, other: str = "insurer") -> str:
    return JOB.format(name=name, other=other, table={"insurer": "policies", "telco": "usage"}[other])


class LyingCoordinator(Coordinator):
    """The real coordinator, except where a test told it to lie about a job (by job name)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lies: dict[str, dict[str, object]] = {}
        self.injected: list[list] = []  # [node, WorkItem, times left]
        self.lied: dict[str, int] = {}
        self._lie_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lie_lock:
            self.lied[name] = self.lied.get(name, 0) + 1

    def poll(self, node: str) -> list[WorkItem]:
        items = []
        for item in super().poll(node):
            lie = self.lies.get(item.job.name, {}).get(item.kind)
            if lie is not None:
                self._count(item.job.name)
                item = lie(self, item)
                if item is None:  # the lie withholds the item
                    continue
            items.append(item)
        with self._lie_lock:
            for entry in self.injected:
                if entry[0] == node and entry[2] > 0:
                    entry[2] -= 1
                    items.append(entry[1])
        return items

    def withdraw_approval(self, job_id: str, party: str, revocation: bytes, signature: bytes) -> str:
        name = self.store.get_job(job_id).name
        if self.lies.get(name, {}).get("hide_revocation"):  # acknowledge it, keep nothing, tell nobody
            self._count(name)
            return "approval withdrawn"
        return super().withdraw_approval(job_id, party, revocation, signature)

    def fetch_results(self, job_id: str, recipient: str):
        found = super().fetch_results(job_id, recipient)
        lie = self.lies.get(found.job.name, {}).get("fetch")
        if lie is not None:
            self._count(found.job.name)
            found = lie(self, found)
        return found


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from teenet.cli.sandbox import down_sandbox, init_sandbox
    from teenet.coordinator import server
    from teenet.coordinator.config import load_coordinator_config

    d = tmp_path_factory.mktemp("lyingnet")
    init_sandbox(d, rows=2000)
    def telco_policy(c):  # compute enclaves on real hardware only; its approvals hold 8 s
        c["policy"]["compute_attestation"]["allow_simulated"] = False
        c["policy"]["approval_validity"] = TELCO_APPROVAL_SECONDS

    edit_yaml(d / "telco.yaml", telco_policy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server, "Coordinator", LyingCoordinator)
        running = server.serve(load_coordinator_config(d / "coordinator.yaml"))
    try:
        for name in ("compute-1", "bank", "telco", "insurer"):
            start_node(d, name)
        net = AttackNet(d, compute_wire=None)  # type: ignore[arg-type]
        net.extra["coordinator"] = running.coordinator
        net.extra["analyst"] = Analyst(net)
        # One honest job whose approvals, offer and results the lies below replay.
        analyst = net.extra["analyst"]
        old = analyst.submit(job("honest-old"))
        assert analyst.wait(old).state == "succeeded"
        net.extra["old"] = old
        yield net
        net.extra["analyst"].close()
    finally:
        down_sandbox(d)
        running.stop(grace=1)


@pytest.fixture
def liar(net) -> LyingCoordinator:
    return net.extra["coordinator"]


@pytest.fixture
def analyst(net) -> Analyst:
    return net.extra["analyst"]


def _nothing_shipped(net: AttackNet, job_id: str) -> None:
    assert net.audit_for("compute-1", job_id, "table_received") == []
    assert net.audit_for("compute-1", job_id, "released_results") == []
    for party in ("bank", "telco", "insurer"):
        assert net.audit_for(party, job_id, "released_table") == []


def _compute_refuses(net, liar, analyst, name: str, lie, check: str):
    liar.lies[name] = {"compute": lie}
    job_id = analyst.submit(job(name))
    st = analyst.wait(job_id)
    assert liar.lied.get(name), "the lie was never told"
    assert st.state == "failed" and st.reason.startswith("compute enclave refused the job: " + check), st.reason
    assert any(check in e["reason"] for e in net.audit_for("compute-1", job_id, "job_failed"))
    assert net.audit_for("compute-1", job_id, "job_accepted") == []  # no keys made, no offer
    assert list(st.uploaded) == []
    _nothing_shipped(net, job_id)
    return st


# --- lies to the compute node ----------------------------------------------------------------

def test_a_job_altered_after_approval_is_refused_by_the_compute_enclave(net, liar, analyst):
    """The coordinator swaps the insurer's table for the telco's in an approved job. Under the
    job's id the enclave refuses it as not that job (`job.id`); under the altered spec's own
    digest, as a job the analyst did not sign (`job.signature`). Either way: no keys."""
    from teenet.coordinator.state import job_digest

    altered: dict[str, str] = {}

    def alter(self, item, relabel: bool):
        spec = item.job.canonical_spec.replace(b'"party":"insurer","table":"policies"',
                                               b'"party":"telco","table":"usage"')
        assert spec != item.job.canonical_spec
        job_id = job_digest(spec).hex() if relabel else item.job.job_id
        altered[item.job.name] = job_id
        return dataclasses.replace(item, job=dataclasses.replace(item.job, canonical_spec=spec, job_id=job_id))

    _compute_refuses(net, liar, analyst, "altered-inputs", lambda s, i: alter(s, i, False), "job.id")
    liar.lies["altered-relabelled"] = {"compute": lambda s, i: alter(s, i, True)}
    job_id = analyst.submit(job("altered-relabelled"))
    failed = wait_until(lambda: net.audit_for("compute-1", altered.get("altered-relabelled", "-"), "job_failed"),
                        30, "the compute enclave to refuse the altered job")
    assert failed[0]["reason"] == "compute enclave refused the job: job.signature", failed
    for jid in (job_id, altered["altered-relabelled"]):
        assert net.audit_for("compute-1", jid, "job_accepted") == []
        _nothing_shipped(net, jid)
    assert analyst.status(job_id).state == "approved" and liar.store.offer(job_id) is None


def test_another_signed_job_passed_off_with_these_approvals_is_refused(net, liar, analyst):
    def swap(self, item):  # a validly signed, older job, relabelled as this one
        other = self.store.get_job(net.extra["old"])
        return dataclasses.replace(item, job=dataclasses.replace(other, job_id=item.job.job_id))

    _compute_refuses(net, liar, analyst, "swapped-job", swap, "job.id")


def test_an_old_job_and_its_approvals_under_a_new_jobs_id_are_refused(net, liar, analyst):
    """The coordinator withholds job Y (approved by both owners) from the compute node, then
    hands the compute node Y's signed spec and Y's signed approvals under new job X's id.
    Everything it relays is genuine; only the label is X's. Were the enclave to bind its keys
    to the label, X's tables would be shipped to it and Y's function, params and releases run
    on them. It refuses: the id is the signed job's digest, and nothing leaves for either job."""
    liar.lies["withheld-old"] = {"compute": lambda self, item: None}
    old = analyst.submit(job("withheld-old"))
    assert analyst.wait(old, states={"approved"}).state == "approved"

    def swap(self, item):
        y = self.store.get_job(old)
        return dataclasses.replace(item, job=dataclasses.replace(y, job_id=item.job.job_id),
                                   decisions=tuple(self.store.decisions(old)))

    liar.lies["swap-new"] = {"compute": swap}
    new = analyst.submit(job("swap-new"))
    st = analyst.wait(new)
    assert liar.lied.get("swap-new") and liar.lied.get("withheld-old")
    assert st.state == "failed" and st.reason.startswith("compute enclave refused the job: job.id"), st.reason
    assert any(e["reason"].startswith("compute enclave refused the job: job.id")
               for e in net.audit_for("compute-1", new, "job_failed"))
    assert list(st.uploaded) == []
    for job_id in (new, old):
        assert net.audit_for("compute-1", job_id, "job_accepted") == []  # no keys for either
        _nothing_shipped(net, job_id)
    assert analyst.status(old).state == "approved"  # Y was not consumed by the lie


def test_a_replay_after_the_compute_node_restarts_is_refused(net, liar, analyst):
    """A job runs once. After it succeeded and the compute node restarted (its memory gone),
    the coordinator hands it the same signed job and approvals again: the enclave's durable
    record refuses it; no keys, no offer, no second run."""
    job_id = analyst.submit(job("replay-me"))
    assert analyst.wait(job_id).state == "succeeded"
    # The enclave audits `released_results` once the coordinator took the results, which is
    # also when the analyst may already see `succeeded`: wait for the audit, not the state.
    wait_until(lambda: net.audit_for("compute-1", job_id, "released_results"), 20,
               "the compute node to audit its released results")
    before = {e: len(net.audit_for("compute-1", job_id, e)) for e in ("job_accepted", "table_received",
                                                                       "released_results")}
    assert before == {"job_accepted": 1, "table_received": 2, "released_results": 1}
    restart_node(net.directory, "compute-1")
    record = liar.store.get_job(job_id)
    with liar._lie_lock:
        liar.injected.append(["compute-1", WorkItem("compute", record,
                                                    decisions=tuple(liar.store.decisions(job_id))), 3])
    refusals = wait_until(lambda: [e for e in net.audit_for("compute-1", job_id, "job_refused")
                                   if e["reason"].startswith("job.replay")], 30,
                          "the restarted compute node to refuse the replay")
    assert len(refusals) == 1
    wait_until(lambda: all(entry[2] == 0 for entry in liar.injected if entry[0] == "compute-1"), 20,
               "the replays to be handed out")
    after = {e: len(net.audit_for("compute-1", job_id, e)) for e in before}
    assert after == before
    assert liar.store.offer(job_id) is not None and analyst.status(job_id).state == "succeeded"


def test_a_dropped_approval_is_refused_by_the_compute_enclave(net, liar, analyst):
    def drop(self, item):
        return dataclasses.replace(item, decisions=tuple(d for d in item.decisions if d.party != "insurer"))

    _compute_refuses(net, liar, analyst, "dropped-approval", drop, "approval.missing")
    job_id = next(j.job_id for j in analyst.stub.ListJobs(pb.ListJobsRequest(limit=100), timeout=10).jobs
                  if j.name == "dropped-approval")
    # the compute node's own audit names whose approval is missing; the reason outside names the check
    assert any("'insurer'" in e["detail"] for e in net.audit_for("compute-1", job_id, "job_failed"))


def test_a_forged_approval_is_refused_by_the_compute_enclave(net, liar, analyst):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from teenet.approval import Decision, sign_decision

    def forge(self, item):  # lower the insurer's k to 1 and re-sign with a key of its own
        own = ed25519.Ed25519PrivateKey.generate()
        out = []
        for d in item.decisions:
            if d.party == "insurer":
                body = dataclasses.replace(Decision.from_canonical(d.canonical), min_group_size=1)
                signed = sign_decision(body, own)
                d = dataclasses.replace(d, canonical=signed.decision, signature=signed.signature)
            out.append(d)
        return dataclasses.replace(item, decisions=tuple(out))

    _compute_refuses(net, liar, analyst, "forged-approval", forge, "approval.signature")


def test_an_approval_replayed_from_another_job_is_refused_by_the_compute_enclave(net, liar, analyst):
    def replay(self, item):
        old = {d.party: d for d in self.store.decisions(net.extra["old"])}
        return dataclasses.replace(item, decisions=tuple(old["insurer"] if d.party == "insurer" else d
                                                         for d in item.decisions))

    _compute_refuses(net, liar, analyst, "replayed-approval", replay, "approval.job")


def _decisions(liar, job_id: str) -> dict:
    from teenet.approval import Decision

    return {d.party: Decision.from_canonical(d.canonical) for d in liar.store.decisions(job_id)}


def test_an_expired_approval_is_refused_by_the_compute_enclave(net, liar, analyst):
    """The telco's policy lets its approvals hold 8 s, the bank's the default day. The
    coordinator sits on the approved job past the telco's window, then hands it over."""
    import time

    hold = {"until": float("inf")}
    liar.lies["expired"] = {"compute": lambda self, item: None if time.time() < hold["until"] else item}
    job_id = analyst.submit(job("expired", "telco"))
    assert analyst.wait(job_id, states={"approved"}).state == "approved"
    decisions = _decisions(liar, job_id)
    bank, telco = decisions["bank"], decisions["telco"]
    assert 86_000 < bank.not_after - time.time() <= 86_400  # the default: a day
    assert 0 < telco.not_after - time.time() <= TELCO_APPROVAL_SECONDS
    hold["until"] = telco.not_after + 1.5
    st = analyst.wait(job_id, timeout=TELCO_APPROVAL_SECONDS + 30)
    assert st.state == "failed" and st.reason == "compute enclave refused the job: approval.expired", st.reason
    failed = net.audit_for("compute-1", job_id, "job_failed")
    assert failed and "'telco'" in failed[0]["detail"], failed
    assert net.audit_for("compute-1", job_id, "job_accepted") == []
    _nothing_shipped(net, job_id)


def _revoke(net, job_id: str, capsys) -> tuple[int, str]:
    from teenet.cli.main import main

    capsys.readouterr()
    code = main(["approvals", "revoke", job_id, "--config", str(net / "bank.yaml"), "--operator", "olga",
                 "--reason", "the purpose changed", "--json"])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_withdrawn_approval_fails_the_job_and_the_compute_enclave_refuses_it(net, liar, analyst, capsys):
    """The bank approves, then its operator withdraws the approval before any key is sealed
    (the coordinator holds the job back from the compute node meanwhile). The job fails with
    the bank's withdrawal; handed the job, its approvals and the revocation anyway, the
    compute enclave refuses it; nothing is sealed or shipped."""
    liar.lies["withdrawn"] = {"compute": lambda self, item: None}
    job_id = analyst.submit(job("withdrawn"))
    assert analyst.wait(job_id, states={"approved"}).state == "approved"
    code, out = _revoke(net, job_id, capsys)
    assert code == 0, out
    st = analyst.wait(job_id)
    assert st.state == "failed" and st.reason == "bank withdrew its approval", st.reason
    revoked = net.audit_for("bank", job_id, "approval_revoked")
    assert revoked and revoked[0]["operator"] == "olga"
    assert [e.event["party"] for e in liar.audit.entries(after=0, limit=10000)
            if e.event.get("type") == "approval.revoked" and e.event.get("job_id") == job_id] == ["bank"]
    relayed = liar.store.revocations(job_id)
    assert [r.party for r in relayed] == ["bank"]
    with liar._lie_lock:
        liar.injected.append(["compute-1", WorkItem("compute", liar.store.get_job(job_id),
                                                    decisions=tuple(liar.store.decisions(job_id)),
                                                    revocations=tuple(relayed)), 2])
    failed = wait_until(lambda: net.audit_for("compute-1", job_id, "job_failed"), 20,
                        "the compute enclave to refuse the withdrawn job")
    assert failed[0]["reason"] == "compute enclave refused the job: approval.revoked", failed
    assert net.audit_for("compute-1", job_id, "job_accepted") == []
    _nothing_shipped(net, job_id)
    code, out = _revoke(net, job_id, capsys)  # once is enough
    assert code != 0 and "already withdrawn" in out, out


def test_a_coordinator_that_hides_a_withdrawal_gets_no_table_of_the_owner(net, liar, analyst, capsys):
    """The coordinator acknowledges the bank's revocation, keeps nothing, and lets the job go
    on: the compute enclave makes keys and the insurer ships its table. The bank never seals
    a key after revoking, so the enclave never has every table: nothing runs, nothing is
    released; the insurer's table sits in the enclave until the job ends."""
    hold = {"on": True}
    liar.lies["hidden-withdrawal"] = {"compute": lambda self, item: None if hold["on"] else item,
                                      "hide_revocation": True}
    job_id = analyst.submit(job("hidden-withdrawal"))
    assert analyst.wait(job_id, states={"approved"}).state == "approved"
    code, out = _revoke(net, job_id, capsys)
    assert code == 0, out
    wait_until(lambda: net.audit_for("bank", job_id, "approval_revoked") and liar.lied.get("hidden-withdrawal"),
               20, "the bank to send its revocation")
    hold["on"] = False
    wait_until(lambda: net.audit_for("insurer", job_id, "released_table"), 30, "the insurer to ship")
    wait_until(lambda: net.audit_for("bank", job_id, "upload_withheld"), 20, "the bank to withhold its table")
    assert net.audit_for("bank", job_id, "released_table") == []
    assert [e["party"] for e in net.audit_for("compute-1", job_id, "table_received")] == ["insurer"]
    assert net.audit_for("compute-1", job_id, "released_results") == []
    assert analyst.status(job_id).state == "negotiating_keys"
    assert liar.store.results(job_id) == []
    analyst.cancel(job_id, "test over")
    wait_until(lambda: net.audit_for("compute-1", job_id, "job_dropped"), 20, "the enclave to drop the job")


def test_an_approval_cannot_be_withdrawn_once_a_key_was_sealed(net, capsys):
    code, out = _revoke(net, net.extra["old"], capsys)
    assert code != 0 and "already sealed" in out, out


# --- lies to the data nodes ------------------------------------------------------------------

def _owners_refuse(net, liar, analyst, name: str, lie, check: str, other: str = "insurer", detail: str = ""):
    """`check` is what the status says; `detail` (default: the check) what the owners' audits say."""
    if lie is not None:
        liar.lies[name] = {"upload": lie}
    job_id = analyst.submit(job(name, other))
    st = analyst.wait(job_id)
    assert lie is None or liar.lied.get(name), "the lie was never told"
    assert st.state == "failed" and "refused the compute enclave: " in st.reason and check in st.reason, st.reason
    refusers = ("bank", other) if lie is not None else (other,)
    refusals = [e for p in refusers for e in net.audit_for(p, job_id, "compute_refused")]
    assert refusals and all((detail or check) in e["reason"] for e in refusals)
    if lie is not None:
        assert list(st.uploaded) == []
        _nothing_shipped(net, job_id)
    else:  # the honest offer: the bank (which allows simulation) may have shipped to the enclave it trusts
        assert net.audit_for(other, job_id, "released_table") == []
        assert [e for e in net.audit_for("compute-1", job_id, "table_received") if e["party"] == other] == []
        assert net.audit_for("compute-1", job_id, "released_results") == []
        wait_until(lambda: net.audit_for("compute-1", job_id, "job_dropped")
                   or not net.audit_for("compute-1", job_id, "table_received"), 10,
                   "the compute enclave to drop what it holds of the failed job")
    return st


def test_a_replayed_old_offer_is_refused_by_the_data_nodes(net, liar, analyst):
    def replay(self, item):
        return dataclasses.replace(item, offer=self.store.offer(net.extra["old"]))

    st = _owners_refuse(net, liar, analyst, "replayed-offer", replay, "offer.job", detail="offer.job: the compute "
                        "offer is for another job")
    assert st.reason == "bank refused the compute enclave: offer.job" or st.reason.startswith("insurer"), st.reason


def test_an_old_offer_relabelled_for_this_job_is_refused_by_the_data_nodes(net, liar, analyst):
    def relabel(self, item):
        return dataclasses.replace(item, offer=dataclasses.replace(self.store.offer(net.extra["old"]),
                                                                   job_id=item.job.job_id))

    _owners_refuse(net, liar, analyst, "relabelled-offer", relabel, "binding.report_data")


def test_an_offer_from_an_enclave_whose_code_differs_by_one_byte_is_refused(net, liar, analyst, tmp_path):
    """The coordinator relays the offer of a compute host that runs altered code on the
    same (simulated) hardware: genuine evidence, fresh keys bound to this job, but a
    measurement no owner pinned."""
    from teenet.attestation.measure import build_manifest, installed_dependencies, runtime_name
    from teenet.attestation.sim import SimulatedPlatform, UnsafeSimulatedAttester
    from teenet.negotiation import ComputeEnclaveSession

    _, what = one_byte_copy(tmp_path)
    root = tmp_path / "teenet"
    dirs = {"teenet": root, **{f"teenet.{p}": root / p for p in ("node", "coordinator", "models", "cli")}}
    altered = build_manifest(dirs, installed_dependencies(), runtime_name()).measurement()
    attester = UnsafeSimulatedAttester(SimulatedPlatform.load_or_create(net / "sim-platform"), altered)

    def substitute(self, item):
        session = ComputeEnclaveSession(bytes.fromhex(item.job.job_id), attester)
        o = session.offer("compute-1", item.offer.endpoint)
        return dataclasses.replace(item, offer=dataclasses.replace(
            item.offer, hpke_suite=o.suite.value, hpke_public_key=o.hpke_public_key,
            signing_public_key=o.signing_public_key, evidence=o.evidence))

    st = _owners_refuse(net, liar, analyst, "one-byte-offer", substitute, "policy.measurement")
    assert st.reason.endswith("refused the compute enclave: policy.measurement"), st.reason
    refusals = [e["reason"] for p in ("bank", "insurer") for e in net.audit_for(p, st.job_id, "compute_refused")]
    assert refusals and all(altered.hex() in r for r in refusals), what  # the detail is in the owners' audits


def test_simulated_compute_evidence_is_refused_by_an_owner_that_requires_hardware(net, liar, analyst):
    st = _owners_refuse(net, liar, analyst, "needs-hardware", None, "policy.hardware", other="telco")
    assert st.reason.startswith("telco refused the compute enclave")


def test_jobs_no_analyst_signed_are_refused_by_the_data_nodes(net, liar, analyst):
    """The coordinator injects three jobs into the bank's work: an approved job's spec with its
    inputs altered, a job signed by a stranger to the consortium, and one re-signed by a data
    member. The bank's node verifies each itself and never signs a decision on them."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    old = liar.store.get_job(net.extra["old"])
    altered = old.canonical_spec.replace(b'"kind":"size"', b'"kind":"ids"')
    stranger = analyst.sign(job("from-mallory"), key=ed25519.Ed25519PrivateKey.generate(),
                            analyst="mallory")
    by_telco = analyst.sign(job("from-telco"), key=net.keys("telco").signing, analyst="telco")
    forged = [dataclasses.replace(old, canonical_spec=altered),
              dataclasses.replace(old, job_id=stranger.job_id, canonical_spec=stranger.canonical_spec,
                                  analyst="mallory", signature=stranger.signature, name="from-mallory"),
              dataclasses.replace(old, job_id=by_telco.job_id, canonical_spec=by_telco.canonical_spec,
                                  analyst="telco", signature=by_telco.signature, name="from-telco")]
    forged[0] = dataclasses.replace(forged[0], job_id="ab" * 32)
    with liar._lie_lock:
        liar.injected += [["bank", WorkItem("decide", j), 2] for j in forged]
    expected = {"ab" * 32: "job.signature", stranger.job_id: "job.analyst", by_telco.job_id: "job.analyst"}

    def refused():
        events = {e["job_id"]: e["reason"] for e in net.audit("bank") if e["event"] == "job_refused"}
        return all(jid in events for jid in expected) and events

    events = wait_until(refused, 20, "the bank to refuse the injected jobs")
    for jid, check in expected.items():
        assert events[jid].startswith(check), events[jid]
        assert [e for e in net.audit("bank") if e.get("job_id") == jid and e["event"] != "job_refused"] == []
    assert "'mallory'" in events[stranger.job_id] and "(data)" in events[by_telco.job_id]


# --- lies to the analyst ---------------------------------------------------------------------

def test_another_jobs_result_is_refused_by_the_analyst(net, liar, analyst):
    from teenet.errors import TeenetError

    def other_results(self, found):  # this job and offer, the old job's sealed results
        return dataclasses.replace(found, results=tuple(self.store.results(net.extra["old"], "analyst")))

    def other_job(self, found):  # everything of the old job
        return self.fetch_results.__func__(self, net.extra["old"], "analyst")  # type: ignore[attr-defined]

    for name, lie, check in (("other-results", other_results, "result.job"),
                             ("other-job", other_job, "result.job: the coordinator returned another job")):
        job_id = analyst.submit(job(name))
        assert analyst.wait(job_id).state == "succeeded"
        liar.lies[name] = {"fetch": lie}
        with pytest.raises(TeenetError) as refused:
            analyst.result(job_id)
        assert str(refused.value).startswith(check), str(refused.value)
        assert liar.lied.get(name)
        del liar.lies[name]
        opened, _ = analyst.result(job_id)  # told the truth, the same results verify and open
        assert [o.kind for o in opened] == ["size"]
