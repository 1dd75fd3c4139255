"""The job spec: its strict schema, its canonical form, and the analyst's signature over it.

An analyst writes a spec in YAML (`parse_job_spec`); the CLI adds the analyst, the
consortium and a random nonce, signs the canonical JSON (`sign_job`), and every party that
receives it re-checks everything (`verify_signed_job`) with the same schema code. The
job id is hex(SHA-256("teenet/job/v1" || 0 || canonical spec)).

Which release kinds and params a function accepts is the function's own rule
(teenet.models); here a kind only has to be a well-formed name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.canonical import canonical_json, domain_digest, domain_message, parse_canonical_json
from teenet.errors import InputError, VerificationError
from teenet.identity import verify_ed25519
from teenet.proto import teenet_pb2
from teenet.yamlload import Located, LocatedDocument, load_yaml

if TYPE_CHECKING:
    from teenet.config import Consortium

# Names shared with the configs (teenet.config imports them): one rule, one place.
MEMBER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
COLUMN_NAME = TABLE_NAME
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RELEASE_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
NONCE_HEX = re.compile(r"[0-9a-f]{64}")
FUNCTIONS = ("psi", "aggregate", "train", "predict")

JOB_DOMAIN = "teenet/job/v1"
SIGNATURE_DOMAIN = "teenet/job-signature/v1"
SPEC_VERSION = 1

# Fields as written in YAML, and as they appear in the canonical JSON that is signed.
SPEC_FIELDS = ("name", "function", "compute", "inputs", "params", "release")
SPEC_REQUIRED = ("name", "function", "compute", "inputs", "release")
INPUT_FIELDS = ("party", "table", "key", "columns")
CANONICAL_SPEC_FIELDS = ("version", "analyst", "consortium", "nonce") + SPEC_FIELDS
CANONICAL_INPUT_FIELDS = ("party", "table", "keys", "columns")
RELEASE_FIELDS = ("kind", "to")

MAX_INPUTS = 16
MAX_KEY_COLUMNS = 8
MAX_COLUMNS = 1024
MAX_RELEASES = 16
MAX_RECIPIENTS = 64
MAX_PARAMS_DEPTH = 8
MAX_PARAMS_BYTES = 64 * 1024
MAX_CANONICAL_BYTES = 256 * 1024
_MAX_JSON_INT = 2**63 - 1


@dataclass(frozen=True)
class InputRef:
    """One party's table in a job: the key column(s) to join or match on and the columns used."""

    party: str
    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseRef:
    """One kind of result and the members it is sealed to."""

    kind: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec. `analyst`, `consortium` and `nonce` are set once it is signed.

    `params` is a read-only JSON-safe mapping (nested mappings read-only, lists as tuples).
    `document` is where it was read from, so later checks can name lines.
    """

    name: str
    function: str
    compute: str
    inputs: tuple[InputRef, ...]
    params: Mapping[str, Any]
    release: tuple[ReleaseRef, ...]
    analyst: str | None = None
    consortium: str | None = None
    nonce: str | None = None
    document: LocatedDocument | None = field(default=None, compare=False, repr=False)

    @property
    def parties(self) -> tuple[str, ...]:
        """Input parties in order of first appearance."""
        return tuple(dict.fromkeys(i.party for i in self.inputs))

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for rel in self.release for r in rel.to))

    def to_canonical(self, analyst: str, consortium: str, nonce: str) -> bytes:
        """The canonical JSON bytes that are hashed and signed."""
        for what, value, pattern in (("analyst", analyst, MEMBER_NAME), ("consortium", consortium, MEMBER_NAME),
                                     ("nonce", nonce, NONCE_HEX)):
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise InputError(f"expected {'64 lowercase hex digits' if what == 'nonce' else 'a member name'}",
                                 field=what)
        raw = canonical_json({
            "version": SPEC_VERSION, "analyst": analyst, "consortium": consortium, "nonce": nonce,
            "name": self.name, "function": self.function, "compute": self.compute,
            "inputs": [{"party": i.party, "table": i.table, "keys": list(i.keys), "columns": list(i.columns)}
                       for i in self.inputs],
            "params": thaw_json(self.params),
            "release": [{"kind": r.kind, "to": list(r.to)} for r in self.release],
        })
        if len(raw) > MAX_CANONICAL_BYTES:
            raise InputError(f"canonical job spec is {len(raw)} bytes; at most {MAX_CANONICAL_BYTES}")
        return raw

    def digest(self) -> bytes:
        """The job digest of a signed spec (raises InputError if it is not signed yet)."""
        if self.analyst is None or self.consortium is None or self.nonce is None:
            raise InputError("job spec is not signed yet: it has no digest")
        return job_digest(self.to_canonical(self.analyst, self.consortium, self.nonce))


def job_digest(canonical: bytes) -> bytes:
    return domain_digest(JOB_DOMAIN, canonical)


def parse_job_spec(path_or_text: str | bytes | os.PathLike[str], source: str | None = None) -> JobSpec:
    """Read and validate a YAML job spec. A `Path` is read from disk; a `str` is the YAML text."""
    doc = load_yaml(path_or_text, source=source)
    return _spec_from(doc.root(), canonical=False)


def _spec_from(root: Located, *, canonical: bool) -> JobSpec:
    """The one schema, for both the YAML an analyst writes and the canonical JSON that is signed."""
    if canonical:
        fields = root.mapping(required=CANONICAL_SPEC_FIELDS, what="a job spec mapping")
    else:
        fields = root.mapping(required=SPEC_REQUIRED, optional=("params",), what="a job spec mapping")
    name = fields["name"].string(pattern=JOB_NAME, what="a job name (letters, digits, '_', '.', '-'; up to 64)")
    function = fields["function"].string(choices=FUNCTIONS)
    compute = fields["compute"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
    inputs = _inputs(fields["inputs"], canonical=canonical)
    params = _json_value(fields["params"], depth=1) if "params" in fields else {}
    if not isinstance(params, dict):
        raise fields["params"]._type_error("a mapping")
    if len(canonical_json(params)) > MAX_PARAMS_BYTES:
        raise fields["params"].error(f"params are larger than {MAX_PARAMS_BYTES} bytes of JSON")
    release = _releases(fields["release"])
    signed: dict[str, Any] = {}
    if canonical:
        fields["version"].integer(minimum=SPEC_VERSION, maximum=SPEC_VERSION)
        signed["analyst"] = fields["analyst"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
        signed["consortium"] = fields["consortium"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
        signed["nonce"] = fields["nonce"].string(pattern=NONCE_HEX, what="64 lowercase hex digits")
    return JobSpec(name=name, function=function, compute=compute, inputs=inputs,
                   params=freeze_json(params), release=release, document=root.doc, **signed)


_MEMBER_WHAT = "a member name (lowercase letter, then a-z 0-9 _ -; up to 63)"
_TABLE_WHAT = "a table name (letter or _, then letters, digits, _; up to 63)"
_COLUMN_WHAT = "a column name (letter or _, then letters, digits, _; up to 63)"


def _inputs(node: Located, *, canonical: bool) -> tuple[InputRef, ...]:
    seen: dict[tuple[str, str], int] = {}
    out = []
    for item in node.sequence(min_items=1, max_items=MAX_INPUTS, what="a list of inputs"):
        if canonical:
            f = item.mapping(required=CANONICAL_INPUT_FIELDS, what="an input mapping")
            keys = f["keys"].strings(pattern=COLUMN_NAME, what=_COLUMN_WHAT, min_items=1,
                                     max_items=MAX_KEY_COLUMNS)
        else:
            f = item.mapping(required=("party", "table", "key"), optional=("columns",),
                             what="an input mapping {party, table, key, columns}")
            keys = _key(f["key"])
        party = f["party"].string(pattern=MEMBER_NAME, what=_MEMBER_WHAT)
        table = f["table"].string(pattern=TABLE_NAME, what=_TABLE_WHAT)
        columns = (f["columns"].strings(pattern=COLUMN_NAME, what=_COLUMN_WHAT, max_items=MAX_COLUMNS)
                   if "columns" in f else ())
        both = sorted(set(keys) & set(columns))
        if both:
            raise f["columns"].error(f"key column(s) {', '.join(both)} listed again in columns "
                                     "(key columns are always shipped)")
        if (party, table) in seen:
            raise f["table"].error(f"{party}/{table} is already an input (inputs[{seen[(party, table)]}])")
        seen[(party, table)] = item.path[-1]  # type: ignore[assignment]
        out.append(InputRef(party=party, table=table, keys=keys, columns=columns))
    return tuple(out)


def _key(node: Located) -> tuple[str, ...]:
    """`key` is one column name or a list of them (a multi-column key)."""
    if isinstance(node.value, str):
        return (node.string(pattern=COLUMN_NAME, what=_COLUMN_WHAT),)
    if isinstance(node.value, list):
        return node.strings(pattern=COLUMN_NAME, what=_COLUMN_WHAT, min_items=1, max_items=MAX_KEY_COLUMNS)
    raise node._type_error("a column name or a list of column names")


def _releases(node: Located) -> tuple[ReleaseRef, ...]:
    kinds: dict[str, int] = {}
    out = []
    for item in node.sequence(min_items=1, max_items=MAX_RELEASES, what="a list of releases"):
        f = item.mapping(required=RELEASE_FIELDS, what="a release mapping {kind, to}")
        kind = f["kind"].string(pattern=RELEASE_KIND, what="a release kind (lowercase name, e.g. model)")
        if kind in kinds:
            raise f["kind"].error(f"release kind '{kind}' is already listed (release[{kinds[kind]}]); "
                                  "put all its recipients in one 'to'")
        kinds[kind] = item.path[-1]  # type: ignore[assignment]
        to = f["to"].strings(pattern=MEMBER_NAME, what=_MEMBER_WHAT, min_items=1, max_items=MAX_RECIPIENTS)
        out.append(ReleaseRef(kind=kind, to=to))
    return tuple(out)


def _json_value(node: Located, *, depth: int) -> Any:
    """A JSON-safe copy of a params value: str-keyed mappings, lists, finite numbers, bounded depth."""
    value = node.value
    if isinstance(value, (dict, list)) and depth > MAX_PARAMS_DEPTH:
        raise node.error(f"params nest deeper than {MAX_PARAMS_DEPTH} levels")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise node.error("params mapping keys must be strings")
            out[key] = _json_value(node.child(key, item), depth=depth + 1)
        return out
    if isinstance(value, list):
        return [_json_value(node.child(i, item), depth=depth + 1) for i, item in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_JSON_INT:
            raise node.error("integer out of range (at most 64-bit)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise node.error("NaN and infinity are not allowed (expected a finite number)")
        return value
    raise node.error(f"expected a JSON value, found {type(value).__name__}")


def freeze_json(value: Any) -> Any:
    """Read-only view of JSON data: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze_json(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze_json(v) for v in value)
    return value


def thaw_json(value: Any) -> Any:
    """Plain JSON data (dicts and lists) from a frozen view, for canonical_json."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw_json(v) for v in value]
    return value


# --- against the consortium -------------------------------------------------------------

def check_against_consortium(spec: JobSpec, consortium: "Consortium", source: str | None = None) -> None:
    """Every name in `spec` exists in `consortium`: parties, compute, recipients, tables, columns.

    Errors name the spec's line when it was read from YAML.
    """
    doc = spec.document or LocatedDocument(source or "job spec", None)
    if source is not None and source != doc.source:
        doc = LocatedDocument(source, doc.data, doc.lines)
    members = consortium.members

    def listed(role: str | None = None) -> str:
        names = sorted(n for n, m in members.items() if role is None or m.role == role)
        return ", ".join(names) or "none"

    for i, inp in enumerate(spec.inputs):
        member = members.get(inp.party)
        if member is None:
            raise doc.error(("inputs", i, "party"), f"'{inp.party}' is not a member of consortium "
                                                    f"'{consortium.name}' (data members: {listed('data')})")
        if member.role != "data":
            raise doc.error(("inputs", i, "party"), f"'{inp.party}' is a {member.role} member, not a data member "
                                                    f"(data members: {listed('data')})")
        catalog = member.tables.get(inp.table)
        if catalog is None:
            published = ", ".join(sorted(member.tables)) or "none"
            raise doc.error(("inputs", i, "table"), f"table '{inp.table}' is not in {inp.party}'s published "
                                                    f"catalog (published: {published})")
        for j, key in enumerate(inp.keys):
            if key not in catalog:
                raise doc.error(_key_path(doc, i, j), f"key column '{key}' is not in {inp.party}/{inp.table} "
                                                      f"(columns: {', '.join(catalog)})")
        for j, column in enumerate(inp.columns):
            if column not in catalog:
                raise doc.error(("inputs", i, "columns", j), f"column '{column}' is not in {inp.party}/{inp.table} "
                                                             f"(columns: {', '.join(catalog)})")
    compute = members.get(spec.compute)
    if compute is None or compute.role != "compute":
        found = "not a member" if compute is None else f"a {compute.role} member"
        raise doc.error(("compute",), f"'{spec.compute}' is not a compute member of consortium "
                                      f"'{consortium.name}' ({found}; compute members: {listed('compute')})")
    for i, rel in enumerate(spec.release):
        for j, recipient in enumerate(rel.to):
            if recipient not in members:
                raise doc.error(("release", i, "to", j), f"recipient '{recipient}' is not a member of consortium "
                                                         f"'{consortium.name}' (members: {listed()})")


def _key_path(doc: LocatedDocument, i: int, j: int) -> tuple[str | int, ...]:
    """Where key j of input i was written: `key` (one name), `key[j]` (a list) or `keys[j]` (JSON)."""
    try:
        written = doc.data["inputs"][i]
    except (TypeError, KeyError, IndexError):
        return ("inputs", i)
    if "keys" in written:
        return ("inputs", i, "keys", j)
    return ("inputs", i, "key", j) if isinstance(written.get("key"), list) else ("inputs", i, "key")


# --- signing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedJob:
    """The canonical spec as signed by the analyst; the form that travels and is stored."""

    canonical_spec: bytes
    analyst: str
    signature: bytes

    @property
    def digest(self) -> bytes:
        return job_digest(self.canonical_spec)

    @property
    def job_id(self) -> str:
        return self.digest.hex()

    def to_proto(self) -> teenet_pb2.SignedJob:
        return teenet_pb2.SignedJob(canonical_spec=self.canonical_spec, analyst=self.analyst,
                                    signature=self.signature)

    @classmethod
    def from_proto(cls, message: teenet_pb2.SignedJob) -> "SignedJob":
        return cls(canonical_spec=bytes(message.canonical_spec), analyst=message.analyst,
                   signature=bytes(message.signature))


def sign_job(spec: JobSpec, analyst_name: str, consortium_name: str,
             signing_key: ed25519.Ed25519PrivateKey) -> SignedJob:
    """Add a fresh random nonce, build the canonical spec and sign its digest."""
    if not isinstance(signing_key, ed25519.Ed25519PrivateKey):
        raise InputError("expected an Ed25519 private key to sign the job")
    nonce = os.urandom(32).hex()
    canonical = spec.to_canonical(analyst_name, consortium_name, nonce)
    signature = signing_key.sign(domain_message(SIGNATURE_DOMAIN, job_digest(canonical)))
    return SignedJob(canonical_spec=canonical, analyst=analyst_name, signature=signature)


def verify_signed_job(signed: SignedJob, consortium: "Consortium") -> JobSpec:
    """Check a signed job end to end and return its spec; raise VerificationError naming the check.

    Order: size, the signer is a consortium analyst, the signature over the recomputed
    digest (so nothing unauthenticated is parsed further), canonical JSON, the schema, the
    analyst and consortium named inside, and every name against the consortium.
    """
    raw = signed.canonical_spec
    if len(raw) > MAX_CANONICAL_BYTES:
        raise VerificationError("job.size", "canonical job spec is too large",
                                expected=f"<= {MAX_CANONICAL_BYTES} bytes", found=f"{len(raw)} bytes")
    signer = consortium.members.get(signed.analyst) if isinstance(signed.analyst, str) else None
    if signer is None or signer.role != "analyst":
        raise VerificationError("job.analyst", "the signer is not an analyst of the consortium",
                                expected=f"one of {', '.join(m.name for m in consortium.analysts()) or 'none'}",
                                found=_shown(signed.analyst) + ("" if signer is None else f" ({signer.role})"))
    digest = job_digest(raw)
    if not verify_ed25519(signer.keys.signing, signed.signature, domain_message(SIGNATURE_DOMAIN, digest)):
        raise VerificationError("job.signature", "the analyst's signature does not verify over this job",
                                expected=f"Ed25519 signature by {signed.analyst}", found="invalid signature")
    try:
        data = parse_canonical_json(raw, what="job spec")
        spec = _spec_from(LocatedDocument(f"job {digest.hex()[:16]}", data).root(), canonical=True)
    except InputError as exc:
        raise VerificationError("job.schema", str(exc)) from None
    if spec.analyst != signed.analyst:
        raise VerificationError("job.analyst", "the analyst inside the spec is not the signer",
                                expected=signed.analyst, found=spec.analyst)
    if spec.consortium != consortium.name:
        raise VerificationError("job.consortium", "the job was made for another consortium",
                                expected=consortium.name, found=spec.consortium)
    # The schema accepts one spelling only: re-encoding must give the signed bytes.
    if spec.to_canonical(spec.analyst, spec.consortium, spec.nonce) != raw:  # type: ignore[arg-type]
        raise VerificationError("job.schema", "job spec is not in the canonical layout")
    try:
        check_against_consortium(spec, consortium)
    except InputError as exc:
        raise VerificationError("job.members", str(exc)) from None
    return spec


def _shown(name: object) -> str:
    text = name if isinstance(name, str) else repr(name)
    return "'" + text.encode("unicode_escape").decode("ascii")[:64] + "'"
