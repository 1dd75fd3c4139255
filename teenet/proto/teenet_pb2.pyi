from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedJob(_message.Message):
    __slots__ = ("canonical_spec", "analyst", "signature")
    CANONICAL_SPEC_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    canonical_spec: bytes
    analyst: str
    signature: bytes
    def __init__(self, canonical_spec: _Optional[bytes] = ..., analyst: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id", "wait_ms", "updated_after")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    wait_ms: int
    updated_after: float
    def __init__(self, job_id: _Optional[str] = ..., wait_ms: _Optional[int] = ..., updated_after: _Optional[float] = ...) -> None: ...

class PartyDecision(_message.Message):
    __slots__ = ("party", "decision", "reason")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    party: str
    decision: str
    reason: str
    def __init__(self, party: _Optional[str] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "name", "state", "reason", "analyst", "function", "compute", "decisions", "uploaded", "created_at", "updated_at", "results")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: str
    reason: str
    analyst: str
    function: str
    compute: str
    decisions: _containers.RepeatedCompositeFieldContainer[PartyDecision]
    uploaded: _containers.RepeatedScalarFieldContainer[str]
    created_at: float
    updated_at: float
    results: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., analyst: _Optional[str] = ..., function: _Optional[str] = ..., compute: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[PartyDecision, _Mapping]]] = ..., uploaded: _Optional[_Iterable[str]] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., results: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitJobReply(_message.Message):
    __slots__ = ("job_id", "state", "duplicate")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    duplicate: bool
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("limit", "state")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    state: str
    def __init__(self, limit: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class ListJobsReply(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("job_id", "analyst", "reason", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    analyst: str
    reason: str
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., analyst: _Optional[str] = ..., reason: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SignedDecision(_message.Message):
    __slots__ = ("job_id", "party", "decision", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    party: str
    decision: bytes
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., party: _Optional[str] = ..., decision: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ComputeOffer(_message.Message):
    __slots__ = ("job_id", "compute", "hpke_suite", "hpke_public_key", "signing_public_key", "evidence", "endpoint", "cluster")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    HPKE_SUITE_FIELD_NUMBER: _ClassVar[int]
    HPKE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    compute: str
    hpke_suite: str
    hpke_public_key: bytes
    signing_public_key: bytes
    evidence: bytes
    endpoint: str
    cluster: ClusterOffer
    def __init__(self, job_id: _Optional[str] = ..., compute: _Optional[str] = ..., hpke_suite: _Optional[str] = ..., hpke_public_key: _Optional[bytes] = ..., signing_public_key: _Optional[bytes] = ..., evidence: _Optional[bytes] = ..., endpoint: _Optional[str] = ..., cluster: _Optional[_Union[ClusterOffer, _Mapping]] = ...) -> None: ...

class WorkerOffer(_message.Message):
    __slots__ = ("name", "partition", "endpoint", "hpke_public_key", "signing_public_key", "evidence", "certificate_sha256", "certificate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HPKE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    partition: int
    endpoint: str
    hpke_public_key: bytes
    signing_public_key: bytes
    evidence: bytes
    certificate_sha256: bytes
    certificate: bytes
    def __init__(self, name: _Optional[str] = ..., partition: _Optional[int] = ..., endpoint: _Optional[str] = ..., hpke_public_key: _Optional[bytes] = ..., signing_public_key: _Optional[bytes] = ..., evidence: _Optional[bytes] = ..., certificate_sha256: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class ClusterPartitionKey(_message.Message):
    __slots__ = ("party", "sealed_key")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    SEALED_KEY_FIELD_NUMBER: _ClassVar[int]
    party: str
    sealed_key: bytes
    def __init__(self, party: _Optional[str] = ..., sealed_key: _Optional[bytes] = ...) -> None: ...

class ClusterOffer(_message.Message):
    __slots__ = ("workers", "partitions", "partition_keys", "signature")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEYS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerOffer]
    partitions: int
    partition_keys: _containers.RepeatedCompositeFieldContainer[ClusterPartitionKey]
    signature: bytes
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerOffer, _Mapping]]] = ..., partitions: _Optional[int] = ..., partition_keys: _Optional[_Iterable[_Union[ClusterPartitionKey, _Mapping]]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("node", "since", "wait_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    since: int
    wait_ms: int
    def __init__(self, node: _Optional[str] = ..., since: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class WorkItem(_message.Message):
    __slots__ = ("kind", "job_id", "job", "decisions", "offer", "reason", "revocations")
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    job_id: str
    job: SignedJob
    decisions: _containers.RepeatedCompositeFieldContainer[SignedDecision]
    offer: ComputeOffer
    reason: str
    revocations: _containers.RepeatedCompositeFieldContainer[SignedApprovalRevocation]
    def __init__(self, kind: _Optional[str] = ..., job_id: _Optional[str] = ..., job: _Optional[_Union[SignedJob, _Mapping]] = ..., decisions: _Optional[_Iterable[_Union[SignedDecision, _Mapping]]] = ..., offer: _Optional[_Union[ComputeOffer, _Mapping]] = ..., reason: _Optional[str] = ..., revocations: _Optional[_Iterable[_Union[SignedApprovalRevocation, _Mapping]]] = ...) -> None: ...

class PollReply(_message.Message):
    __slots__ = ("items", "generation")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[WorkItem]
    generation: int
    def __init__(self, items: _Optional[_Iterable[_Union[WorkItem, _Mapping]]] = ..., generation: _Optional[int] = ...) -> None: ...

class StatusReport(_message.Message):
    __slots__ = ("job_id", "node", "event", "detail")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    node: str
    event: str
    detail: str
    def __init__(self, job_id: _Optional[str] = ..., node: _Optional[str] = ..., event: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class SealedResultHead(_message.Message):
    __slots__ = ("job_id", "recipient", "kind", "key_envelope", "statement", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    recipient: str
    kind: str
    key_envelope: bytes
    statement: bytes
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., recipient: _Optional[str] = ..., kind: _Optional[str] = ..., key_envelope: _Optional[bytes] = ..., statement: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ResultStreamPart(_message.Message):
    __slots__ = ("job_id", "head", "message", "end")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    head: SealedResultHead
    message: bytes
    end: bool
    def __init__(self, job_id: _Optional[str] = ..., head: _Optional[_Union[SealedResultHead, _Mapping]] = ..., message: _Optional[bytes] = ..., end: _Optional[bool] = ...) -> None: ...

class FetchResultsRequest(_message.Message):
    __slots__ = ("job_id", "recipient")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    recipient: str
    def __init__(self, job_id: _Optional[str] = ..., recipient: _Optional[str] = ...) -> None: ...

class ResultFetchOpening(_message.Message):
    __slots__ = ("job", "offer", "status")
    JOB_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    job: SignedJob
    offer: ComputeOffer
    status: JobStatus
    def __init__(self, job: _Optional[_Union[SignedJob, _Mapping]] = ..., offer: _Optional[_Union[ComputeOffer, _Mapping]] = ..., status: _Optional[_Union[JobStatus, _Mapping]] = ...) -> None: ...

class ResultFetchPart(_message.Message):
    __slots__ = ("opening", "head", "message")
    OPENING_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    opening: ResultFetchOpening
    head: SealedResultHead
    message: bytes
    def __init__(self, opening: _Optional[_Union[ResultFetchOpening, _Mapping]] = ..., head: _Optional[_Union[SealedResultHead, _Mapping]] = ..., message: _Optional[bytes] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "prev_hash", "entry_hash", "payload")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    seq: int
    prev_hash: str
    entry_hash: str
    payload: str
    def __init__(self, seq: _Optional[int] = ..., prev_hash: _Optional[str] = ..., entry_hash: _Optional[str] = ..., payload: _Optional[str] = ...) -> None: ...

class AuditCheckpoint(_message.Message):
    __slots__ = ("seq", "entry_hash", "signature", "signer_public_key")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entry_hash: str
    signature: bytes
    signer_public_key: str
    def __init__(self, seq: _Optional[int] = ..., entry_hash: _Optional[str] = ..., signature: _Optional[bytes] = ..., signer_public_key: _Optional[str] = ...) -> None: ...

class AuditReply(_message.Message):
    __slots__ = ("entries", "checkpoint")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    checkpoint: AuditCheckpoint
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., checkpoint: _Optional[_Union[AuditCheckpoint, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("ok", "detail")
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    detail: str
    def __init__(self, ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class SignedApprovalRevocation(_message.Message):
    __slots__ = ("job_id", "party", "revocation", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    party: str
    revocation: bytes
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., party: _Optional[str] = ..., revocation: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PublishedCheckpoint(_message.Message):
    __slots__ = ("publisher", "note", "prev_size", "proof")
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    PREV_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    publisher: str
    note: str
    prev_size: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, publisher: _Optional[str] = ..., note: _Optional[str] = ..., prev_size: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("origin", "min_size", "after", "limit", "max_size", "rows")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    origin: str
    min_size: int
    after: int
    limit: int
    max_size: int
    rows: int
    def __init__(self, origin: _Optional[str] = ..., min_size: _Optional[int] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ..., max_size: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class CheckpointCosignature(_message.Message):
    __slots__ = ("witness", "body", "line")
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    witness: str
    body: str
    line: str
    def __init__(self, witness: _Optional[str] = ..., body: _Optional[str] = ..., line: _Optional[str] = ...) -> None: ...

class CheckpointsReply(_message.Message):
    __slots__ = ("checkpoints", "cosignatures", "origins", "latest_size", "next_cursor", "more", "rows")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    LATEST_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[PublishedCheckpoint]
    cosignatures: _containers.RepeatedCompositeFieldContainer[CheckpointCosignature]
    origins: _containers.RepeatedScalarFieldContainer[str]
    latest_size: int
    next_cursor: int
    more: bool
    rows: int
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[PublishedCheckpoint, _Mapping]]] = ..., cosignatures: _Optional[_Iterable[_Union[CheckpointCosignature, _Mapping]]] = ..., origins: _Optional[_Iterable[str]] = ..., latest_size: _Optional[int] = ..., next_cursor: _Optional[int] = ..., more: _Optional[bool] = ..., rows: _Optional[int] = ...) -> None: ...

class KeyEnvelope(_message.Message):
    __slots__ = ("job_id", "party", "table", "sealed_key", "evidence", "signing_public_key", "signature")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    SEALED_KEY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNING_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    party: str
    table: str
    sealed_key: bytes
    evidence: bytes
    signing_public_key: bytes
    signature: bytes
    def __init__(self, job_id: _Optional[str] = ..., party: _Optional[str] = ..., table: _Optional[str] = ..., sealed_key: _Optional[bytes] = ..., evidence: _Optional[bytes] = ..., signing_public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ShippedModel(_message.Message):
    __slots__ = ("train_job", "train_offer", "head")
    TRAIN_JOB_FIELD_NUMBER: _ClassVar[int]
    TRAIN_OFFER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    train_job: SignedJob
    train_offer: ComputeOffer
    head: SealedResultHead
    def __init__(self, train_job: _Optional[_Union[SignedJob, _Mapping]] = ..., train_offer: _Optional[_Union[ComputeOffer, _Mapping]] = ..., head: _Optional[_Union[SealedResultHead, _Mapping]] = ...) -> None: ...

class UploadMessage(_message.Message):
    __slots__ = ("key", "header", "chunk", "model", "fingerprint")
    KEY_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    key: KeyEnvelope
    header: bytes
    chunk: bytes
    model: ShippedModel
    fingerprint: LineageFingerprint
    def __init__(self, key: _Optional[_Union[KeyEnvelope, _Mapping]] = ..., header: _Optional[bytes] = ..., chunk: _Optional[bytes] = ..., model: _Optional[_Union[ShippedModel, _Mapping]] = ..., fingerprint: _Optional[_Union[LineageFingerprint, _Mapping]] = ...) -> None: ...

class LineageFingerprint(_message.Message):
    __slots__ = ("root", "chunks", "mac", "shipped_seq", "shipped_at", "shipped_prev_hash", "shipped_tree_head", "shipped_proof", "shipped_rows")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_AT_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_PROOF_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_ROWS_FIELD_NUMBER: _ClassVar[int]
    root: bytes
    chunks: int
    mac: bytes
    shipped_seq: int
    shipped_at: str
    shipped_prev_hash: bytes
    shipped_tree_head: str
    shipped_proof: _containers.RepeatedScalarFieldContainer[bytes]
    shipped_rows: str
    def __init__(self, root: _Optional[bytes] = ..., chunks: _Optional[int] = ..., mac: _Optional[bytes] = ..., shipped_seq: _Optional[int] = ..., shipped_at: _Optional[str] = ..., shipped_prev_hash: _Optional[bytes] = ..., shipped_tree_head: _Optional[str] = ..., shipped_proof: _Optional[_Iterable[bytes]] = ..., shipped_rows: _Optional[str] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("job_id", "party", "table", "rows", "sealed_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SEALED_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    party: str
    table: str
    rows: int
    sealed_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., party: _Optional[str] = ..., table: _Optional[str] = ..., rows: _Optional[int] = ..., sealed_bytes: _Optional[int] = ...) -> None: ...
