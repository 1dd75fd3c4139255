"""The verifiable log's hashing, proofs, checkpoints and cosignatures (teenet/tlog.py).

Root hashes are the RFC 6962/9162 reference vectors published with transparency-dev/merkle
(testonly/constants.go); proofs are checked against a literal transcription of the RFC's
recursive definitions, and every tampered proof or signature must be refused.
"""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.errors import VerificationError
from teenet.tlog import (EMPTY_ROOT, Checkpoint, MerkleTree, SignedNote, cosign, leaf_hash, node_hash,
                         sign_note, verify_consistency, verify_cosignature, verify_inclusion, verify_note)

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]


# The RFC's definitions, transcribed literally (slow, obviously right) ------------------------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return leaf_hash(d[0])
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    return subproof(m, d[:k], b) + [mth(d[k:])] if m <= k else subproof(m - k, d[k:], False) + [mth(d[:k])]


def entries(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


# ---------------------------------------------------------------------------------------------
def test_roots_match_the_reference_vectors() -> None:
    tree = MerkleTree()
    assert tree.root() == ROOTS[0]
    for i, leaf in enumerate(LEAVES):
        tree.append(leaf)
        assert tree.root() == ROOTS[i + 1], f"tree of {i + 1}"
    assert [tree.root(n) for n in range(9)] == ROOTS


@pytest.mark.parametrize("n", range(1, 34))
def test_inclusion_proofs_follow_the_rfc_and_verify(n: int) -> None:
    data = entries(n)
    tree = MerkleTree(leaf_hash(e) for e in data)
    assert tree.root() == mth(data)
    for m in range(n):
        proof = tree.inclusion_proof(m)
        assert proof == path(m, data)
        verify_inclusion(leaf_hash(data[m]), m, n, proof, tree.root())


@pytest.mark.parametrize("new", range(1, 34))
def test_consistency_proofs_follow_the_rfc_and_verify(new: int) -> None:
    data = entries(new)
    tree = MerkleTree(leaf_hash(e) for e in data)
    for old in range(0, new + 1):
        proof = tree.consistency_proof(old, new)
        assert proof == ([] if old in (0, new) else subproof(old, data, True))
        verify_consistency(old, new, tree.root(old), tree.root(new), proof)


def test_a_tampered_inclusion_proof_is_refused() -> None:
    data = entries(21)
    tree = MerkleTree(leaf_hash(e) for e in data)
    proof = tree.inclusion_proof(13)
    root = tree.root()
    refusals = [
        (leaf_hash(b"other"), 13, 21, proof, root),
        (leaf_hash(data[13]), 12, 21, proof, root),
        (leaf_hash(data[13]), 13, 16, proof, root),  # a head is bound to its size
        (leaf_hash(data[13]), 13, 21, proof[:-1], root),
        (leaf_hash(data[13]), 13, 21, proof + [root], root),
        (leaf_hash(data[13]), 13, 21, [bytes(32)] + proof[1:], root),
        (leaf_hash(data[13]), 13, 21, proof, tree.root(20)),
        (leaf_hash(data[13]), 21, 21, proof, root),
    ]
    for args in refusals:
        with pytest.raises(VerificationError, match="tlog.inclusion"):
            verify_inclusion(*args)


def test_a_rewritten_history_fails_the_consistency_check() -> None:
    honest = entries(40)
    tree = MerkleTree(leaf_hash(e) for e in honest)
    cosigned_size, cosigned_root = 17, tree.root(17)
    rewritten = list(honest)
    rewritten[5] = b"entry-5, edited and re-signed"
    forged = MerkleTree(leaf_hash(e) for e in rewritten)
    # Whatever proof the rewriter offers, the new head does not extend the cosigned one.
    for proof in (forged.consistency_proof(17), tree.consistency_proof(17)):
        with pytest.raises(VerificationError, match="tlog.consistency"):
            verify_consistency(cosigned_size, 40, cosigned_root, forged.root(), proof)
    verify_consistency(cosigned_size, 40, cosigned_root, tree.root(), tree.consistency_proof(17))
    with pytest.raises(VerificationError, match="tlog.consistency"):
        verify_consistency(17, 17, cosigned_root, forged.root(17), [])
    with pytest.raises(VerificationError, match="tlog.consistency"):
        verify_consistency(18, 17, tree.root(18), cosigned_root, [])


def test_every_single_byte_flip_in_a_consistency_proof_is_refused() -> None:
    tree = MerkleTree(leaf_hash(e) for e in entries(27))
    proof = tree.consistency_proof(11)
    for i, j in itertools.product(range(len(proof)), (0, 17, 31)):
        bad = [bytearray(p) for p in proof]
        bad[i][j] ^= 1
        with pytest.raises(VerificationError):
            verify_consistency(11, 27, tree.root(11), tree.root(), [bytes(p) for p in bad])


def test_checkpoint_text_round_trips_and_refuses_junk() -> None:
    cp = Checkpoint("teenet.example/bank/audit", 20852163, bytes(range(32)), ("teenet/v1",))
    assert cp.body() == ("teenet.example/bank/audit\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                         "teenet/v1\n")
    assert Checkpoint.parse(cp.body()) == cp
    for junk in ("a\n1\n", "a\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "a\n1\n!!\n",
                 "a\n1\nAAEC\n", "a\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="):
        with pytest.raises(VerificationError, match="tlog.checkpoint"):
            Checkpoint.parse(junk)


def test_signed_checkpoints_and_cosignatures_verify_and_refuse_forgeries() -> None:
    log_key, witness_key, other = (ed25519.Ed25519PrivateKey.generate() for _ in range(3))
    tree = MerkleTree(leaf_hash(e) for e in entries(9))
    body = Checkpoint("teenet/bank", tree.size, tree.root()).body()
    note = SignedNote.parse(sign_note(body, "teenet/bank", log_key))
    verify_note(note, "teenet/bank", log_key.public_key())
    note = note.with_signature(cosign(body, "teenet/insurer", witness_key, 1_764_000_000))
    assert verify_cosignature(note, "teenet/insurer", witness_key.public_key()) == 1_764_000_000
    assert SignedNote.parse(note.text()) == note
    # The wrong key, the wrong name, or an edited body: refused.
    with pytest.raises(VerificationError, match="tlog.note_signature"):
        verify_note(note, "teenet/bank", other.public_key())
    with pytest.raises(VerificationError, match="tlog.cosignature"):
        verify_cosignature(note, "teenet/telco", witness_key.public_key())
    edited = SignedNote(Checkpoint("teenet/bank", tree.size, tree.root(8)).body(), note.signatures)
    with pytest.raises(VerificationError, match="tlog.note_signature"):
        verify_note(edited, "teenet/bank", log_key.public_key())
    with pytest.raises(VerificationError, match="tlog.cosignature"):
        verify_cosignature(edited, "teenet/insurer", witness_key.public_key())
    # A note signature cannot pass for a cosignature (different key id type).
    with pytest.raises(VerificationError, match="tlog.cosignature"):
        verify_cosignature(SignedNote.parse(sign_note(body, "teenet/insurer", witness_key)), "teenet/insurer",
                           witness_key.public_key())


def test_the_log_benchmark_runs_and_reports(tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "tlog.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_tlog.py"
    subprocess.run([sys.executable, str(script), "--entries", "3000", "--proofs", "20", "--json", str(out)],
                   check=True, capture_output=True, timeout=120)
    result = json.loads(out.read_text())
    assert result["entries"] == 3000 and result["inclusion_proof_hashes"] == 12
