"""A recipient's side of a release: fetch from the mailbox, verify offline, open, write files.

The coordinator is not trusted with any of this: the recipient checks the analyst's
signature on the job, the compute enclave's evidence against the consortium's policy and
its binding to this job and these keys, and the enclave's signature on each result before
it decrypts anything with its own key.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from teenet.attestation.evidence import Claims
from teenet.attestation.policy import policy_from_config
from teenet.attestation.roots import default_trust_roots
from teenet.errors import TeenetError, VerificationError
from teenet.identity import MemberKeys
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.negotiation import ComputeOffer, HpkeSuite, verify_compute_offer
from teenet.proto import teenet_pb2 as pb
from teenet.release import (OpenedResult, SealedResult, open_with_key, unwrap_result_key,
                            verify_result_signature)


@dataclass(frozen=True)
class FetchedResults:
    """What the coordinator handed out for one job and recipient, not yet verified."""

    job: SignedJob
    offer: ComputeOffer | None
    state: str
    reason: str
    results: tuple[SealedResult, ...]


def offer_from_proto(o: pb.ComputeOffer) -> ComputeOffer:
    return ComputeOffer(o.job_id, o.compute, HpkeSuite.parse(o.hpke_suite), o.hpke_public_key,
                        o.signing_public_key, o.evidence, o.endpoint)


def head_to_proto(r: SealedResult) -> pb.SealedResultHead:
    return pb.SealedResultHead(job_id=r.job_id, recipient=r.recipient, kind=r.kind, key_envelope=r.key_envelope,
                               statement=r.statement, signature=r.signature)


def result_from_proto(h: pb.SealedResultHead, messages: list[bytes]) -> SealedResult:
    return SealedResult(h.job_id, h.recipient, h.kind, h.key_envelope, h.statement, h.signature, tuple(messages))


def fetch_sealed(stub, job_id: str, recipient: str) -> FetchedResults:
    """Stream a job's sealed results for `recipient` from the coordinator's mailbox."""
    import grpc

    opening = None
    heads: list[tuple[pb.SealedResultHead, list[bytes]]] = []
    try:
        for part in stub.FetchResultStream(pb.FetchResultsRequest(job_id=job_id, recipient=recipient), timeout=600):
            which = part.WhichOneof("part")
            if which == "opening":
                opening = part.opening
            elif which == "head":
                heads.append((part.head, []))
            elif which == "message" and heads:
                heads[-1][1].append(part.message)
            else:
                raise VerificationError("result.stream", "the coordinator's result stream is out of order")
    except grpc.RpcError as exc:
        raise TeenetError(f"coordinator refused to hand out results: {exc.details()}") from None
    if opening is None:
        raise VerificationError("result.stream", "the coordinator's result stream has no opening")
    offer = offer_from_proto(opening.offer) if opening.HasField("offer") else None
    return FetchedResults(SignedJob.from_proto(opening.job), offer, opening.status.state, opening.status.reason,
                          tuple(result_from_proto(h, m) for h, m in heads))


@dataclass(frozen=True)
class VerifiedRelease:
    spec: object
    offer: ComputeOffer
    claims: Claims
    results: tuple[SealedResult, ...]  # each one's signature checked, not yet opened


def verify_release(fetched: FetchedResults, job_id: str, recipient: str, consortium, roots) -> VerifiedRelease:
    """Check everything but the decryption: the analyst's signature on the job, that it is the
    job asked for, the compute evidence against the consortium's policy and its binding to
    this job and keys, that each result is one the job releases to `recipient`, that none
    is missing, and the enclave's signature over each whole result stream."""
    signed = fetched.job
    if signed.job_id != job_id:
        raise VerificationError("result.job", "the coordinator returned another job",
                                expected=job_id[:16], found=signed.job_id[:16])
    spec = verify_signed_job(signed, consortium)
    offer = fetched.offer
    if offer is None:
        raise VerificationError("result.offer", "the coordinator sent no compute offer for the job")
    if offer.compute != spec.compute:
        raise VerificationError("result.compute", "results come from a compute node the job did not name",
                                expected=spec.compute, found=offer.compute)
    policy = policy_from_config(consortium.attestation, source="consortium attestation")
    verified = verify_compute_offer(offer, bytes.fromhex(job_id), policy, roots)
    expected = {(r.kind, recipient) for r in spec.release if recipient in r.to}
    seen = set()
    for res in fetched.results:
        if (res.kind, res.recipient) not in expected:
            raise VerificationError("result.kind", f"result '{res.kind}' was not released to {recipient} by this job")
        verify_result_signature(res, offer=offer)
        seen.add((res.kind, res.recipient))
    missing = sorted(k for k, _ in expected - seen)
    if missing:
        raise VerificationError("result.missing", f"the mailbox lacks result(s) {', '.join(missing)} for {recipient}")
    return VerifiedRelease(spec, offer, verified.claims, fetched.results)


def recipient_roots(consortium, sim_dir: Path | None):
    """The trust roots a recipient checks result evidence with (the simulated ARK only where
    the consortium allows simulated evidence)."""
    sim_ark = None
    if sim_dir is not None and (consortium.attestation or {}).get("allow_simulated"):
        from teenet.attestation.sim import SimulatedPlatform

        sim_ark = SimulatedPlatform.load_or_create(Path(sim_dir)).ark
    return default_trust_roots(sim_ark=sim_ark)


def fetch_and_open(stub, job_id: str, recipient: str, keys: MemberKeys, consortium,
                   sim_dir: Path | None = None) -> tuple[list[OpenedResult], Claims]:
    fetched = fetch_sealed(stub, job_id, recipient)
    if fetched.state != "succeeded":
        raise TeenetError(f"job {job_id[:12]} is {fetched.state or 'unknown'}"
                          + (f": {fetched.reason}" if fetched.reason else "") + "; no results")
    release = verify_release(fetched, job_id, recipient, consortium, recipient_roots(consortium, sim_dir))
    opened = [open_with_key(r, unwrap_result_key(r, recipient=recipient, recipient_key=keys.hpke))
              for r in release.results]
    return opened, release.claims


def write_results(opened: list[OpenedResult], out: Path) -> list[Path]:
    """Write each result in a form a person can use; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for r in opened:
        if r.media_type == "application/onnx":
            files.append(_write(out / f"{r.kind}.onnx", r.payload))
            files.append(_write(out / f"{r.kind}.json", json.dumps(r.summary, indent=2, sort_keys=True).encode()))
        elif r.media_type == "application/vnd.apache.arrow.stream":
            import pyarrow as pa  # here, not at import: a fetch of a model or a summary never needs it
            import pyarrow.csv as pacsv

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
