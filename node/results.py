"""A recipient's side of a release: fetch from the mailbox, verify offline, open, write files.

The coordinator is not trusted with any of this: the recipient checks the analyst's
signature on the job, the compute enclave's evidence against the consortium's policy and
its binding to this job and these keys, and the enclave's signature on each result before
it decrypts anything with its own key.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from teenet.attestation.evidence import Claims
from teenet.attestation.policy import policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.errors import TeenetError, VerificationError
from teenet.identity import MemberKeys
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.negotiation import ComputeOffer, HpkeSuite, verify_compute_offer
from teenet.proto import teenet_pb2 as pb
from teenet.release import OpenedResult, SealedResult, open_result


def fetch_and_open(stub, job_id: str, recipient: str, keys: MemberKeys, consortium,
                   sim_dir: Path | None = None) -> tuple[list[OpenedResult], Claims]:
    import grpc

    try:
        reply = stub.FetchResults(pb.FetchResultsRequest(job_id=job_id, recipient=recipient), timeout=60)
    except grpc.RpcError as exc:
        raise TeenetError(f"coordinator refused to hand out results: {exc.details()}") from None
    if reply.status.state != "succeeded":
        raise TeenetError(f"job {job_id[:12]} is {reply.status.state or 'unknown'}"
                          + (f": {reply.status.reason}" if reply.status.reason else "") + "; no results")
    signed = SignedJob.from_proto(reply.job)
    if signed.job_id != job_id:
        raise VerificationError("result.job", "the coordinator returned another job",
                                expected=job_id[:16], found=signed.job_id[:16])
    spec = verify_signed_job(signed, consortium)
    o = reply.offer
    offer = ComputeOffer(o.job_id, o.compute, HpkeSuite.parse(o.hpke_suite), o.hpke_public_key,
                         o.signing_public_key, o.evidence, o.endpoint)
    if offer.compute != spec.compute:
        raise VerificationError("result.compute", "results come from a compute node the job did not name",
                                expected=spec.compute, found=offer.compute)
    policy = policy_from_config(consortium.attestation, source="consortium attestation")
    sim_ark = None
    if sim_dir is not None and (consortium.attestation or {}).get("allow_simulated"):
        from teenet.attestation.sim import SimulatedPlatform

        sim_ark = SimulatedPlatform.load_or_create(Path(sim_dir)).ark
    verified = verify_compute_offer(offer, bytes.fromhex(job_id), policy, default_trust_roots(sim_ark=sim_ark))
    expected = {(r.kind, recipient) for r in spec.release if recipient in r.to}
    opened = []
    seen = set()
    for r in reply.results:
        res = SealedResult(r.job_id, r.recipient, r.kind, r.envelope, r.signature)
        if (res.kind, res.recipient) not in expected:
            raise VerificationError("result.kind", f"result '{res.kind}' was not released to {recipient} by this job")
        opened.append(open_result(res, offer=offer, recipient=recipient, recipient_key=keys.hpke))
        seen.add((res.kind, res.recipient))
    missing = sorted(k for k, _ in expected - seen)
    if missing:
        raise VerificationError("result.missing", f"the mailbox lacks result(s) {', '.join(missing)} for {recipient}")
    return opened, verified.claims


def write_results(opened: list[OpenedResult], out: Path) -> list[Path]:
    """Write each result in a form a person can use; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for r in opened:
        if r.media_type == "application/onnx":
            files.append(_write(out / f"{r.kind}.onnx", r.payload))
            files.append(_write(out / f"{r.kind}.json", json.dumps(r.summary, indent=2, sort_keys=True).encode()))
        elif r.media_type == "application/vnd.apache.arrow.stream":
            table = pa.ipc.open_stream(io.BytesIO(r.payload)).read_all()
            sink = io.BytesIO()
            pacsv.write_csv(table, sink)
            files.append(_write(out / f"{r.kind}.csv", sink.getvalue()))
        else:
            data = json.loads(r.payload) if r.media_type == "application/json" else None
            files.append(_write(out / f"{r.kind}.json",
                                json.dumps(data, indent=2, sort_keys=True).encode() if data is not None else r.payload))
            roc = _roc(data)
            if roc is not None:
                files.append(_roc_png(out / "roc.png", *roc))
    return files


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _roc(data) -> tuple[list[float], list[float], float | None] | None:
    if not isinstance(data, dict):
        return None
    roc = data.get("roc") or data.get("roc_curve")
    if not isinstance(roc, dict) or "fpr" not in roc or "tpr" not in roc:
        return None
    auc = data.get("auc") or data.get("roc_auc")
    return list(roc["fpr"]), list(roc["tpr"]), auc if isinstance(auc, (int, float)) else None


def _roc_png(path: Path, fpr: list[float], tpr: list[float], auc: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC {auc:.3f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (held-out rows)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
