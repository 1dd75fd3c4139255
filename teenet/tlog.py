"""A verifiable log: RFC 9162 Merkle tree hashing, proofs, and C2SP checkpoints and cosignatures.

What this module decides: how a log's entries hash into one tree head (RFC 9162 §2.1:
leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right), the empty tree is
SHA-256 of nothing), how an inclusion proof shows one entry is in a tree head (§2.1.3)
and how a consistency proof shows a later tree head extends an earlier one (§2.1.4);
and how a tree head is written and signed so that other parties can check and cosign it:
a C2SP tlog-checkpoint (origin, size, base64 root hash, optional extension lines) inside
a C2SP signed-note, with Ed25519 note signatures (key id type 0x01) by the log's owner
and Ed25519 tlog-cosignatures (`cosignature/v1`, key id type 0x04, a big-endian 8-byte
timestamp before the signature) by witnesses.

What it does not decide: which events a log records, where it is stored, who witnesses
whom, or how many cosignatures a consortium asks for. Those belong to the audit log and
the nodes. Nothing here trusts its input: every verifier fails closed with a
`VerificationError` that names the check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from teenet.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
NOTE_SIGNATURE_TYPE_ED25519 = 0x01
COSIGNATURE_TYPE_ED25519 = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
EM_DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only Merkle tree over leaf hashes, keeping every complete subtree's hash.

    Level h holds, back to back, the hashes of the complete subtrees of 2**h leaves in
    order, so an append costs O(log n) hashes, a root or proof O(log n) look-ups (plus a
    few hashes for the incomplete right edge), and memory is about 64 bytes per leaf.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        for h in leaf_hashes:
            self.append_hash(h)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, entry: bytes) -> int:
        """Add an entry (hashed as a leaf); returns its index."""
        return self.append_hash(leaf_hash(entry))

    def append_hash(self, leaf: bytes) -> int:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash has 32 bytes")
        index = self.size
        self._levels[0] += leaf
        level, i, h = 0, index, leaf
        while i & 1:  # this node completed its parent: hash the pair one level up
            left = self._levels[level][(i - 1) * HASH_SIZE:i * HASH_SIZE]
            h = node_hash(bytes(left), h)
            level += 1
            i >>= 1
            if len(self._levels) == level:
                self._levels.append(bytearray())
            self._levels[level] += h
        return index

    def leaf(self, index: int) -> bytes:
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _subtree(self, start: int, size: int) -> bytes:
        """MTH of leaves [start, start + size)."""
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            i = start // size
            return bytes(self._levels[level][i * HASH_SIZE:(i + 1) * HASH_SIZE])
        k = _largest_power_of_two_below(size)
        return node_hash(self._subtree(start, k), self._subtree(start + k, size - k))

    def root(self, size: int | None = None) -> bytes:
        """The tree head of the first `size` leaves (all of them by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {size}")
        proof: list[bytes] = []
        start = 0
        while size > 1:
            k = _largest_power_of_two_below(size)
            if index < k:
                proof.append(self._subtree(start + k, size - k))
                size = k
            else:
                proof.append(self._subtree(start, k))
                start, index, size = start + k, index - k, size - k
        return proof[::-1]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[0:new_size])."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size} in a tree of {self.size}")
        if old_size == 0 or old_size == new_size:
            return []
        proof: list[bytes] = []
        start, m, n, complete = 0, old_size, new_size, True
        while m != n:
            k = _largest_power_of_two_below(n)
            if m <= k:
                proof.append(self._subtree(start + k, n - k))
                n = k
            else:
                proof.append(self._subtree(start, k))
                start, m, n, complete = start + k, m - k, n - k, False
        if not complete:
            proof.append(self._subtree(start, n))
        return proof[::-1]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises VerificationError('tlog.inclusion') unless the proof holds."""
    if not 0 <= index < size:
        raise VerificationError("tlog.inclusion", "leaf index outside the tree", expected=f"< {size}", found=index)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            raise VerificationError("tlog.inclusion", "the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise VerificationError("tlog.inclusion", "the entry is not in the tree head this proof claims")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises VerificationError('tlog.consistency') unless `new_root`
    extends `old_root` (the same first `old_size` entries, only appended to)."""
    def fail(why: str) -> VerificationError:
        return VerificationError("tlog.consistency", why, expected=f"tree {old_size} inside tree {new_size}")

    if not 0 <= old_size <= new_size:
        raise fail("the later tree head is smaller than the earlier one")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise fail("two different tree heads of the same size")
        return
    if old_size == 0:
        if proof:
            raise fail("a proof from the empty tree must be empty")
        return
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        raise fail("the consistency proof is empty or malformed")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise fail("the later tree head does not extend the earlier one")


# C2SP tlog-checkpoint ------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    """A tree head as C2SP tlog-checkpoint text: origin, size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or self.origin != self.origin.strip():
            raise ValueError("a checkpoint origin is one non-empty line without surrounding blanks")
        if self.size < 0 or len(self.root_hash) != HASH_SIZE:
            raise ValueError("a checkpoint has a size >= 0 and a 32-byte root hash")
        if any(not e or "\n" in e for e in self.extensions):
            raise ValueError("checkpoint extension lines are non-empty single lines")

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, body: str) -> "Checkpoint":
        def bad(why: str) -> VerificationError:
            return VerificationError("tlog.checkpoint", f"not a C2SP checkpoint: {why}")

        if not body.endswith("\n"):
            raise bad("the body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise bad("expected origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise bad("the size line is not a decimal without leading zeros")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError):
            raise bad("the root hash line is not base64") from None
        if len(root) != HASH_SIZE or not origin or any(not e for e in extensions):
            raise bad("wrong root hash length, empty origin or an empty extension line")
        return cls(origin, int(size_text), root, tuple(extensions))


# C2SP signed-note and tlog-cosignature ------------------------------------------------------------

def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError("a note key name is non-empty, without spaces or '+'")


def note_key_id(name: str, key: ed25519.Ed25519PublicKey, signature_type: int = NOTE_SIGNATURE_TYPE_ED25519) -> bytes:
    """SHA-256(name || "\\n" || type || public key)[:4], as signed-note and tlog-cosignature define it."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + _raw_public(key)).digest()[:4]


def _signature_line(name: str, blob: bytes) -> str:
    return f"{EM_DASH} {name} {base64.b64encode(blob).decode()}\n"


def sign_note(body: str, name: str, key: ed25519.Ed25519PrivateKey) -> str:
    """A signed note: the body, a blank line, and the owner's signature line."""
    _check_name(name)
    if not body.endswith("\n") or "\n\n" in body:
        raise ValueError("a note body ends with a newline and has no blank line")
    blob = note_key_id(name, key.public_key()) + key.sign(body.encode())
    return body + "\n" + _signature_line(name, blob)


def cosignature_message(body: str, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n".encode() + body.encode()


def cosign(body: str, name: str, key: ed25519.Ed25519PrivateKey, timestamp: int) -> str:
    """A witness's tlog-cosignature line over a checkpoint body, at `timestamp` (POSIX seconds)."""
    _check_name(name)
    if not 0 <= timestamp < 1 << 63:
        raise ValueError("a cosignature timestamp is a POSIX time below 2**63")
    blob = (note_key_id(name, key.public_key(), COSIGNATURE_TYPE_ED25519) + timestamp.to_bytes(8, "big")
            + key.sign(cosignature_message(body, timestamp)))
    return _signature_line(name, blob)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # everything after the key id (a cosignature's timestamp included)


@dataclass(frozen=True)
class SignedNote:
    body: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def parse(cls, text: str) -> "SignedNote":
        def bad(why: str) -> VerificationError:
            return VerificationError("tlog.note", f"not a signed note: {why}")

        if len(text.encode()) > MAX_NOTE_BYTES:
            raise bad("too large")
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            raise bad("expected a body, a blank line and signature lines")
        body, sig_text = text[:split + 1], text[split + 2:]
        signatures = []
        for line in sig_text[:-1].split("\n"):
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != EM_DASH:
                raise bad("a signature line is '\u2014 <name> <base64>'")
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (binascii.Error, ValueError):
                raise bad("a signature is not base64") from None
            if len(blob) < 5:
                raise bad("a signature is too short")
            signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
        if not signatures:
            raise bad("no signature line")
        return cls(body, tuple(signatures))

    def text(self) -> str:
        return self.body + "\n" + "".join(_signature_line(s.name, s.key_id + s.signature) for s in self.signatures)

    def with_signature(self, line: str) -> "SignedNote":
        extra = SignedNote.parse(self.body + "\n" + line).signatures
        return SignedNote(self.body, self.signatures + extra)


def verify_note(note: SignedNote, name: str, key: ed25519.Ed25519PublicKey) -> None:
    """The note carries a valid Ed25519 signature by `name`'s `key`; else VerificationError."""
    key_id = note_key_id(name, key)
    for s in note.signatures:
        if s.name == name and s.key_id == key_id:
            try:
                key.verify(s.signature, note.body.encode())
                return
            except Exception:
                raise VerificationError("tlog.note_signature", f"the signature of '{name}' does not verify") from None
    raise VerificationError("tlog.note_signature", f"the note carries no signature of '{name}'")


def verify_cosignature(note: SignedNote, name: str, key: ed25519.Ed25519PublicKey) -> int:
    """The note carries a valid tlog-cosignature by witness `name`; returns its timestamp."""
    key_id = note_key_id(name, key, COSIGNATURE_TYPE_ED25519)
    for s in note.signatures:
        if s.name == name and s.key_id == key_id:
            if len(s.signature) != 8 + 64:
                raise VerificationError("tlog.cosignature", f"the cosignature of '{name}' is malformed")
            timestamp = int.from_bytes(s.signature[:8], "big")
            try:
                key.verify(s.signature[8:], cosignature_message(note.body, timestamp))
            except Exception:
                raise VerificationError("tlog.cosignature", f"the cosignature of '{name}' does not verify") from None
            return timestamp
    raise VerificationError("tlog.cosignature", f"the note carries no cosignature of '{name}'")
