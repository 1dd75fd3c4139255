"""Long-term keys of a consortium member (a party's node, an analyst).

Each member has an Ed25519 signing key (job specs, decisions, cancellations) and an X25519
HPKE key (results are sealed to it). Private keys live in PKCS#8 PEM files in a private
folder, written, read and optionally encrypted at rest by teenet.keyfiles; public keys are
shared in the consortium file as base64 of the raw bytes.
These are NOT the enclave's per-job keys (see negotiation.py), which never touch a disk.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from teenet.errors import InputError
from teenet.keyfiles import NO_PROTECTION, KeyProtection, read_private_key, write_private_key

SIGNING_KEY_FILE = "signing.key"
HPKE_KEY_FILE = "hpke.key"


@dataclass(frozen=True)
class MemberPublicKeys:
    """What the consortium file says of a member: its public keys."""

    signing: ed25519.Ed25519PublicKey
    hpke: x25519.X25519PublicKey

    def to_config(self) -> dict[str, str]:
        return {"signing_key": b64_raw(self.signing), "hpke_key": b64_raw(self.hpke)}

    @classmethod
    def from_config(cls, data: object, *, source: str) -> "MemberPublicKeys":
        if not isinstance(data, dict):
            raise InputError("expected a mapping with signing_key and hpke_key", source=source)
        return cls(signing=ed25519_public_from_b64(data.get("signing_key"), source=source, field="signing_key"),
                   hpke=x25519_public_from_b64(data.get("hpke_key"), source=source, field="hpke_key"))


@dataclass(frozen=True)
class MemberKeys:
    """A member's private keys. `repr` never shows them."""

    signing: ed25519.Ed25519PrivateKey
    hpke: x25519.X25519PrivateKey

    def __repr__(self) -> str:
        return "MemberKeys(<private>)"

    @classmethod
    def generate(cls) -> "MemberKeys":
        return cls(ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    def public(self) -> MemberPublicKeys:
        return MemberPublicKeys(self.signing.public_key(), self.hpke.public_key())

    def save(self, directory: Path, protection: KeyProtection = NO_PROTECTION) -> None:
        """Write both keys into `directory` (made with mode 0700 if absent) under `protection`."""
        write_private_key(directory / SIGNING_KEY_FILE, self.signing, protection)
        write_private_key(directory / HPKE_KEY_FILE, self.hpke, protection)

    @classmethod
    def load(cls, directory: Path, protection: KeyProtection = NO_PROTECTION) -> "MemberKeys":
        """Read both keys; refuses a folder or file that others can read, or a symbolic link."""
        signing = read_private_key(directory / SIGNING_KEY_FILE, protection)
        hpke = read_private_key(directory / HPKE_KEY_FILE, protection)
        if not isinstance(signing, ed25519.Ed25519PrivateKey):
            raise InputError("expected an Ed25519 private key", source=str(directory / SIGNING_KEY_FILE))
        if not isinstance(hpke, x25519.X25519PrivateKey):
            raise InputError("expected an X25519 private key", source=str(directory / HPKE_KEY_FILE))
        return cls(signing, hpke)


def b64_raw(key: ed25519.Ed25519PublicKey | x25519.X25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes_raw()).decode()


def _raw_from_b64(value: object, *, source: str, field: str) -> bytes:
    if not isinstance(value, str):
        raise InputError("expected base64 of a raw 32-byte public key", source=source, field=field)
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise InputError("not valid base64", source=source, field=field) from None
    if len(raw) != 32:
        raise InputError(f"public key must be 32 bytes, got {len(raw)}", source=source, field=field)
    return raw


def ed25519_public_from_b64(value: object, *, source: str, field: str) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(_raw_from_b64(value, source=source, field=field))


def x25519_public_from_b64(value: object, *, source: str, field: str) -> x25519.X25519PublicKey:
    return x25519.X25519PublicKey.from_public_bytes(_raw_from_b64(value, source=source, field=field))


def ed25519_public_from_raw(raw: bytes, *, what: str) -> ed25519.Ed25519PublicKey:
    if len(raw) != 32:
        raise InputError(f"{what}: Ed25519 public key must be 32 bytes, got {len(raw)}")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def verify_ed25519(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `key`'s Ed25519 signature over `message`."""
    try:
        key.verify(signature, message)
        return True
    except InvalidSignature:
        return False
