"""A model released by a train job, shipped into a predict job: its reference and its provenance.

A predict spec names the model as

    params:
      model: {job: "<64-hex id of the train job>", from: <party that received the model>}

The `from` party (an input owner of the predict job, so its approval of the job is its
consent to ship the model) fetches the model it received, verifies it as any recipient
does, and ships it to the predict job's compute enclave: the train job as the analyst
signed it, the offer (evidence and keys) of the enclave that ran it, the model result's
signed head and its sealed stream, and the result key sealed to the predict enclave.

`verify_shipped_model` is what that enclave checks before a byte of the model is used:
the analyst's signature on the train job and that it is the job the spec names; that it
is a train job releasing `model` to `from`; the releasing enclave's evidence (against the
consortium's result policy) and its binding to that job and keys; the releasing enclave's
signature over the whole result stream, whose statement names that train job's digest;
and that the stream opens under the shipped key to an ONNX model for `from`. Anything
else is refused. This module does not decide whether the model may be shipped (the
owners' approvals do) or how it scores (teenet.models.predict does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from teenet.attestation.policy import policy_from_config
from teenet.errors import InputError, VerificationError
from teenet.jobspec import SignedJob, verify_signed_job
from teenet.negotiation import ComputeOffer, verify_compute_offer
from teenet.release import SealedResult, open_with_key, verify_result_signature
from teenet.sealed_bytes import ResultKey

# The pseudo-table name of the shipped model in its key envelope: never a catalog table name.
MODEL_INPUT = "@model"
MODEL_KIND = "model"
ONNX_MEDIA_TYPE = "application/onnx"
_JOB_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelReference:
    """params.model of a predict job: which train job's model, shipped by which party."""

    job: str
    sender: str

    @classmethod
    def parse(cls, params: Mapping[str, Any], input_parties: Sequence[str]) -> "ModelReference":
        ref = params.get("model")
        if not isinstance(ref, Mapping) or set(ref) != {"job", "from"}:
            raise InputError('expected {job: "<64-hex id of the train job>", from: <party that received '
                             'the model>}', field="params.model")
        job, sender = ref["job"], ref["from"]
        if not isinstance(job, str) or not _JOB_ID.fullmatch(job):
            raise InputError("expected the train job's id: 64 lowercase hex characters", field="params.model.job")
        if not isinstance(sender, str) or sender not in input_parties:
            raise InputError(f"the party that ships the model must be an input party of this job (one of "
                             f"{', '.join(sorted(set(input_parties)))})", field="params.model.from")
        return cls(job, sender)


def verify_shipped_model(*, ref: ModelReference, train_job: SignedJob, train_offer: ComputeOffer,
                         result: SealedResult, key: ResultKey, consortium, roots) -> bytes:
    """The model's ONNX bytes, once every provenance check passed; VerificationError otherwise."""
    if train_job.job_id != ref.job:
        raise VerificationError("model.job", "the shipped train job is not the one the predict job names",
                                expected=ref.job[:16], found=train_job.job_id[:16])
    spec = verify_signed_job(train_job, consortium)
    if spec.function != "train":
        raise VerificationError("model.job", "the named job is not a train job", expected="train",
                                found=spec.function)
    if not any(r.kind == MODEL_KIND and ref.sender in r.to for r in spec.release):
        raise VerificationError("model.recipient", f"the train job does not release its model to {ref.sender}")
    if train_offer.job_id != ref.job or train_offer.compute != spec.compute:
        raise VerificationError("model.offer", "the releasing enclave's offer is for another job or compute node")
    policy = policy_from_config(consortium.attestation, source="consortium attestation")
    verify_compute_offer(train_offer, bytes.fromhex(ref.job), policy, roots)
    if result.job_id != ref.job or result.kind != MODEL_KIND or result.recipient != ref.sender:
        raise VerificationError("model.result", f"the shipped result is not the train job's model for {ref.sender}")
    verify_result_signature(result, offer=train_offer)
    opened = open_with_key(result, key)
    if opened.media_type != ONNX_MEDIA_TYPE:
        raise VerificationError("model.result", "the shipped result is not an ONNX model",
                                expected=ONNX_MEDIA_TYPE, found=opened.media_type[:64])
    return opened.payload
