"""Long-term private keys on disk: the one place that writes, reads and protects them.

What it decides:
- How a key folder must look before teenet puts a key in it or reads one from it: a real
  folder (not a symbolic link) owned by this user, with no group or other permissions
  (mode 0700). A missing folder is created with mode 0700; an existing one is checked,
  never silently chmod-ed, so a mistake is reported where it was made.
- How a key reaches the disk: a fixed temporary name (`<name>.tmp`) opened inside the
  already-checked folder with O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY and mode 0600, written,
  fsync-ed and renamed over the key name, then the folder is fsync-ed. O_EXCL means a
  leftover or planted temporary file (or a symbolic link in its place) is refused, not
  reused with its target or its mode; a symbolic link at the key name itself is refused.
- How a key is read: O_NOFOLLOW inside the checked folder, then an fstat of the open file
  (a regular file, owned by this user, mode & 0o077 == 0), so the check and the read are
  of the same file.
- How a key is encoded at rest (`KeyProtection`): plain PKCS#8 PEM (`none`), or PKCS#8
  DER sealed with AES-256-GCM in a "TEENET SEALED PRIVATE KEY" PEM block, under a key
  derived from a passphrase with scrypt (`passphrase`) or under a key only this enclave
  can derive (`enclave`).

What it does not decide: where keys live (the configs say), which TEE derives the
enclave's key (teenet.attestation.sim, .snp_guest and .gramine do; the node's enclave
picks one), and nothing about public material (certificates, public keys, the consortium
file), which stays readable by anyone.

The sealed form: PEM label "TEENET SEALED PRIVATE KEY" around
    u16 big-endian header length || header || 12-byte nonce || AES-256-GCM ciphertext+tag
where the header is canonical JSON and the AEAD's associated data:
    {"aead": "AES-256-GCM", "format": "teenet-sealed-key/v1", "protection": "passphrase",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<32 hex>"}}
    {"aead": "AES-256-GCM", "format": "teenet-sealed-key/v1", "protection": "enclave", "tee": "snp"}
Why not PKCS#8's own encryption (cryptography's BestAvailableEncryption): it is PBES2 with
PBKDF2 at 2048 iterations and unauthenticated AES-CBC, and cryptography offers no knob for
the iteration count; a stolen key file would fall to a cheap offline guess of a weak
passphrase. scrypt at N=2^17 (OWASP's floor; about 0.4 s and 128 MiB per file) makes each
guess costly, and GCM refuses any changed bit, including a changed header. An "ENCRYPTED
PRIVATE KEY" (PKCS#8, e.g. from OpenSSL) is still read under `passphrase`, so an operator
can bring one; teenet writes only the sealed form. The enclave's key is already a full
256-bit key, so it needs no password hashing.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import secrets
import stat
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from teenet.errors import InputError

PrivateKey = Union[ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey, ec.EllipticCurvePrivateKey,
                   rsa.RSAPrivateKey]

KEY_FOLDER_MODE = 0o700
KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 1 << 20
MAX_PASSPHRASE_BYTES = 4096
MIN_PASSPHRASE_BYTES = 8
TEMP_SUFFIX = ".tmp"
KEY_PROTECTION_METHODS = ("none", "passphrase", "enclave")

SEALED_LABEL = "TEENET SEALED PRIVATE KEY"
SEALED_FORMAT = "teenet-sealed-key/v1"
_ENCRYPTED_LABEL = "ENCRYPTED PRIVATE KEY"
_PLAIN_LABEL = "PRIVATE KEY"
_NONCE_BYTES = 12
_HKDF_INFO = b"teenet/key-at-rest/v1\x00"


# --- folders and files ----------------------------------------------------------------

def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _check_folder(st: os.stat_result, path: Path) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise InputError("key folder is not a folder; expected a folder of mode 0700", source=str(path))
    if st.st_uid != os.geteuid():
        raise InputError(f"key folder belongs to uid {st.st_uid}, not this user (uid {os.geteuid()}); "
                         "expected a folder of this user with mode 0700", source=str(path))
    if st.st_mode & 0o077:
        raise InputError(f"key folder is accessible by group or others (mode {_mode(st)}); "
                         f"expected mode 0700 (chmod 700 '{path}')", source=str(path))


def _open_folder(path: Path, *, create: bool) -> int:
    """An fd of the checked key folder; later opens are relative to it, so the folder that
    was checked is the folder used even if the path is swapped meanwhile."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)  # the parents may be shared and public
        try:
            os.mkdir(path, KEY_FOLDER_MODE)  # the umask can only take bits away
        except FileExistsError:
            pass  # checked below like any existing folder
        except OSError as exc:
            raise InputError(f"cannot create key folder: {exc.strerror}", source=str(path)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError("key folder does not exist", source=str(path)) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
            raise InputError("key folder is a symbolic link; refused (expected a real folder of mode 0700)",
                             source=str(path)) from None
        if exc.errno == errno.ENOTDIR:
            raise InputError("key folder is not a folder; expected a folder of mode 0700",
                             source=str(path)) from None
        raise InputError(f"cannot open key folder: {exc.strerror}", source=str(path)) from None
    try:
        _check_folder(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_key_folder(path: Path) -> None:
    """Create `path` with mode 0700, or check that the existing folder is private."""
    os.close(_open_folder(Path(path), create=True))


def check_key_folder(path: Path) -> None:
    """Refuse a key folder that is missing, a symbolic link, another user's or not 0700."""
    os.close(_open_folder(Path(path), create=False))


def write_secret_file(path: Path, data: bytes) -> None:
    """Write `data` at `path` atomically, mode 0600, in a private folder (made if absent)."""
    path = Path(path)
    folder = _open_folder(path.parent, create=True)
    name, temp = path.name, path.name + TEMP_SUFFIX
    try:
        try:
            existing = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            raise InputError("a symbolic link is at this key path; refused (expected a regular file of "
                             "mode 0600, or nothing)", source=str(path))
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise InputError("something other than a regular file is at this key path; refused",
                             source=str(path))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         KEY_FILE_MODE, dir_fd=folder)
        except FileExistsError:
            raise InputError("a file or link already exists at this temporary name; refused (left by a "
                             "crashed write, or planted: remove it once you know which)",
                             source=str(path.parent / temp)) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=folder)
            except OSError:
                pass
            raise
        os.fsync(folder)  # the rename itself is durable
    finally:
        os.close(folder)


def read_secret_file(path: Path) -> bytes:
    """The bytes of a secret file, after checking it and its folder are this user's alone."""
    path = Path(path)
    folder = _open_folder(path.parent, create=False)
    try:
        try:
            # O_NONBLOCK: a FIFO planted here must not hang the start; it is refused below.
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
        except FileNotFoundError:
            raise InputError("key file does not exist", source=str(path)) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError("key file is a symbolic link; refused (expected a regular file of mode 0600)",
                                 source=str(path)) from None
            raise InputError(f"cannot read key file: {exc.strerror}", source=str(path)) from None
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError("key file is not a regular file; refused", source=str(path))
        if st.st_uid != os.geteuid():
            raise InputError(f"key file belongs to uid {st.st_uid}, not this user (uid {os.geteuid()}); "
                             "expected a file of this user with mode 0600", source=str(path))
        if st.st_mode & 0o077:
            raise InputError(f"key file is readable or writable by group or others (mode {_mode(st)}); "
                             f"expected mode 0600 (chmod 600 '{path}')", source=str(path))
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise InputError(f"key file is larger than {MAX_KEY_FILE_BYTES} bytes; refused", source=str(path))
    return data


# --- protection at rest ---------------------------------------------------------------

@dataclass(frozen=True)
class EnclaveSealingKey:
    """A 256-bit key that only one enclave (one measurement on one platform) can derive.

    Made only by a TEE's derivation (`from_tee_secret`, called by the sim platform, the SNP
    guest device or Gramine); `repr` never shows it.
    """

    tee: str
    _key: bytes = field(repr=False)

    @classmethod
    def from_tee_secret(cls, tee: str, secret: bytes) -> "EnclaveSealingKey":
        """Domain-separate the TEE's raw derived secret (16 bytes from Gramine, 32 from SNP)."""
        if len(secret) < 16:
            raise InputError(f"a TEE sealing secret has at least 16 bytes, got {len(secret)}")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_HKDF_INFO + tee.encode()).derive(bytes(secret))
        return cls(tee, key)

    def _aead(self) -> AESGCM:
        return AESGCM(self._key)


class KeyProtection(ABC):
    """How private keys are encoded at rest; `method` is the config's name for it."""

    method: str

    @abstractmethod
    def encode(self, key: PrivateKey) -> bytes:
        """The PEM bytes of `key` as this protection stores it."""

    @abstractmethod
    def decode(self, pem: bytes, *, source: str) -> PrivateKey:
        """The key from PEM bytes that this protection wrote; a clear error otherwise."""


def _pem_label(pem: bytes, *, source: str) -> str:
    first = pem.lstrip().split(b"\n", 1)[0].strip()
    if first.startswith(b"-----BEGIN ") and first.endswith(b"-----"):
        label = first[len(b"-----BEGIN "):-len(b"-----")].decode("ascii", "replace")
        if label in (_PLAIN_LABEL, _ENCRYPTED_LABEL, SEALED_LABEL):
            return label
    raise InputError(f"not a PEM private key (expected PRIVATE KEY or {SEALED_LABEL})", source=source)


@dataclass(frozen=True)
class _Sealed:
    """A parsed sealed block: its header (the AEAD's associated data) and what it seals."""

    header: bytes
    fields: dict
    nonce: bytes
    ciphertext: bytes

    @property
    def protection(self) -> str:
        return str(self.fields.get("protection"))[:20]


def _seal(fields: dict, key: AESGCM, private: PrivateKey) -> bytes:
    header = json.dumps({"aead": "AES-256-GCM", "format": SEALED_FORMAT, **fields},
                        sort_keys=True, separators=(",", ":")).encode()
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = key.encrypt(nonce, _pkcs8(private, serialization.Encoding.DER, serialization.NoEncryption()), header)
    body = base64.encodebytes(struct.pack(">H", len(header)) + header + nonce + sealed)
    return f"-----BEGIN {SEALED_LABEL}-----\n".encode() + body + f"-----END {SEALED_LABEL}-----\n".encode()


def _parse_sealed(pem: bytes, *, source: str) -> _Sealed:
    lines = pem.strip().splitlines()
    if len(lines) < 3 or lines[-1].strip() != f"-----END {SEALED_LABEL}-----".encode():
        raise InputError(f"damaged {SEALED_LABEL} block (no END line)", source=source)
    try:
        raw = base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except ValueError:
        raise InputError(f"damaged {SEALED_LABEL} block (not base64)", source=source) from None
    size = struct.unpack_from(">H", raw)[0] if len(raw) >= 2 else 0
    header, rest = raw[2:2 + size], raw[2 + size:]
    try:
        fields = json.loads(header)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or fields.get("format") != SEALED_FORMAT or fields.get("aead") != "AES-256-GCM":
        raise InputError(f"damaged {SEALED_LABEL} block (expected a {SEALED_FORMAT} header)", source=source)
    if len(rest) < _NONCE_BYTES + 16:
        raise InputError(f"damaged {SEALED_LABEL} block (too short)", source=source)
    return _Sealed(header, fields, rest[:_NONCE_BYTES], rest[_NONCE_BYTES:])


def _unseal(sealed: _Sealed, key: AESGCM, failure: str, *, source: str) -> PrivateKey:
    try:
        der = key.decrypt(sealed.nonce, sealed.ciphertext, sealed.header)
    except InvalidTag:
        raise InputError(failure, source=source) from None
    try:
        return _private_key(serialization.load_der_private_key(der, password=None), source=source)
    except (ValueError, TypeError):
        raise InputError("the sealed key is not a PKCS#8 private key", source=source) from None


def _found(pem: bytes, *, source: str) -> str:
    """The method that wrote `pem` ("none", "passphrase", "enclave")."""
    label = _pem_label(pem, source=source)
    if label == _PLAIN_LABEL:
        return "none"
    if label == _ENCRYPTED_LABEL:
        return "passphrase"
    return _parse_sealed(pem, source=source).protection


def _mismatch(found: str, method: str, *, source: str) -> InputError:
    what = {"none": "not encrypted", "passphrase": "encrypted with a passphrase",
            "enclave": "sealed to an enclave"}.get(found, f"protected by '{found}'")
    return InputError(f"the key is {what}, but key_protection.method is '{method}' (set method '{found}', "
                      "or re-protect the keys with `teenet node protect-keys` or `teenet coordinator protect-keys`)", source=source)


def _private_key(loaded: object, *, source: str) -> PrivateKey:
    if not isinstance(loaded, (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey, ec.EllipticCurvePrivateKey,
                               rsa.RSAPrivateKey)):
        raise InputError(f"unsupported private key type {type(loaded).__name__}", source=source)
    return loaded


def _pkcs8(key: PrivateKey, encoding: serialization.Encoding,
           encryption: serialization.KeySerializationEncryption) -> bytes:
    return key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, encryption)


class NoProtection(KeyProtection):
    """Plain PKCS#8 PEM: the file's mode and folder are its only protection."""

    method = "none"

    def __repr__(self) -> str:
        return "NoProtection()"

    def encode(self, key: PrivateKey) -> bytes:
        return _pkcs8(key, serialization.Encoding.PEM, serialization.NoEncryption())

    def decode(self, pem: bytes, *, source: str) -> PrivateKey:
        found = _found(pem, source=source)
        if found != self.method:
            raise _mismatch(found, self.method, source=source)
        try:
            return _private_key(serialization.load_pem_private_key(pem, password=None), source=source)
        except (ValueError, TypeError):
            raise InputError("not a PEM private key (damaged?)", source=source) from None


# scrypt cost: N=2^17, r=8, p=1 (OWASP's recommended floor). A file asking for more than
# the bounds below is refused rather than allowed to make the start use gigabytes.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
_SCRYPT_MAX_N, _SCRYPT_MAX_R, _SCRYPT_MAX_P = 1 << 20, 16, 4


@dataclass(frozen=True)
class PassphraseProtection(KeyProtection):
    """Keys sealed under scrypt(passphrase, a fresh salt per file); `repr` hides the passphrase."""

    passphrase: bytes = field(repr=False)
    # Where the passphrase came from, for errors ("the environment variable X"); never the value.
    origin: str = "a passphrase"
    method = "passphrase"

    def _key(self, salt: bytes, n: int, r: int, p: int) -> AESGCM:
        return AESGCM(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self.passphrase))

    def encode(self, key: PrivateKey) -> bytes:
        salt = secrets.token_bytes(16)
        kdf = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()}
        return _seal({"protection": "passphrase", "kdf": kdf}, self._key(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P), key)

    def decode(self, pem: bytes, *, source: str) -> PrivateKey:
        found = _found(pem, source=source)
        if found != self.method:
            raise _mismatch(found, self.method, source=source)
        failure = (f"cannot decrypt the key with the passphrase from {self.origin} (wrong passphrase, "
                   "or a damaged file)")
        if _pem_label(pem, source=source) == _ENCRYPTED_LABEL:  # PKCS#8 brought by an operator
            try:
                return _private_key(serialization.load_pem_private_key(pem, password=self.passphrase),
                                    source=source)
            except (ValueError, TypeError):
                raise InputError(failure, source=source) from None
        sealed = _parse_sealed(pem, source=source)
        kdf = sealed.fields.get("kdf")
        try:
            salt = bytes.fromhex(kdf["salt"])
            n, r, p = (int(kdf[k]) for k in ("n", "r", "p"))
            valid = (kdf["name"] == "scrypt" and len(salt) >= 16 and 2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0
                     and 1 <= r <= _SCRYPT_MAX_R and 1 <= p <= _SCRYPT_MAX_P)
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise InputError(f"damaged {SEALED_LABEL} block (expected scrypt parameters with n <= 2^20, "
                             "r <= 16, p <= 4 and a 16-byte salt)", source=source)
        return _unseal(sealed, self._key(salt, n, r, p), failure, source=source)


@dataclass(frozen=True)
class EnclaveProtection(KeyProtection):
    """Keys sealed with AES-256-GCM under this enclave's derived key."""

    sealing_key: EnclaveSealingKey
    method = "enclave"

    def encode(self, key: PrivateKey) -> bytes:
        return _seal({"protection": "enclave", "tee": self.sealing_key.tee}, self.sealing_key._aead(), key)

    def decode(self, pem: bytes, *, source: str) -> PrivateKey:
        found = _found(pem, source=source)
        if found != self.method:
            raise _mismatch(found, self.method, source=source)
        sealed = _parse_sealed(pem, source=source)
        tee = str(sealed.fields.get("tee"))[:20]
        if tee != self.sealing_key.tee:
            raise InputError(f"the key was sealed by a '{tee}' enclave; this enclave is '{self.sealing_key.tee}'",
                             source=source)
        return _unseal(sealed, self.sealing_key._aead(),
                       "cannot unseal the key: this enclave's key does not open it (sealed by another "
                       "measurement or platform, or the file was changed)", source=source)


NO_PROTECTION: KeyProtection = NoProtection()


def write_private_key(path: Path, key: PrivateKey, protection: KeyProtection = NO_PROTECTION) -> None:
    """Store `key` at `path` under `protection`, with the file rules above."""
    write_secret_file(path, protection.encode(key))


def read_private_key(path: Path, protection: KeyProtection = NO_PROTECTION) -> PrivateKey:
    """Load the key at `path` (checked as above) that `protection` wrote."""
    return protection.decode(read_secret_file(path), source=str(path))


def reprotect_private_keys(paths: list[Path], old: KeyProtection, new: KeyProtection) -> None:
    """Re-encode the keys at `paths` from `old` to `new`: all are read (and decrypted)
    before any is written, so a wrong passphrase or a refused file changes nothing."""
    keys = [read_private_key(path, old) for path in paths]
    for path, key in zip(paths, keys):
        write_private_key(path, key, new)


# --- configuration --------------------------------------------------------------------

@dataclass(frozen=True)
class KeyProtectionSettings:
    """A config's `key_protection` section; `resolve` turns it into a KeyProtection at start.

    The passphrase is read only then (from `passphrase_file` or the variable named by
    `passphrase_env`), so a config object never holds it.
    """

    method: str = "none"
    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    source: str = ""

    def resolve(self, enclave_key: Callable[[], EnclaveSealingKey] | None = None) -> KeyProtection:
        """The protection to use; `enclave_key` derives this enclave's key (method enclave)."""
        if self.method == "none":
            return NO_PROTECTION
        if self.method == "passphrase":
            return self._passphrase()
        if self.method == "enclave":
            if enclave_key is None:
                raise InputError("key_protection.method 'enclave': these keys can only be opened inside the "
                                 "node's enclave (by `teenet node serve`)", source=self.source or None,
                                 field="key_protection.method")
            return EnclaveProtection(enclave_key())
        raise InputError(f"'{self.method}' is not one of: {', '.join(KEY_PROTECTION_METHODS)}",
                         source=self.source or None, field="key_protection.method")

    def _passphrase(self) -> PassphraseProtection:
        where = {"source": self.source or None}
        if self.passphrase_env is not None:
            value = os.environ.get(self.passphrase_env)
            if value is None:
                raise InputError(f"the environment variable {self.passphrase_env} is not set",
                                 field="key_protection.passphrase_env", **where)
            secret, origin = value.encode("utf-8"), f"the environment variable {self.passphrase_env}"
            field_name = "key_protection.passphrase_env"
        elif self.passphrase_file is not None:
            secret, origin = _read_passphrase_file(self.passphrase_file), f"the file {self.passphrase_file}"
            field_name = "key_protection.passphrase_file"
        else:
            raise InputError("method 'passphrase' needs passphrase_file or passphrase_env",
                             field="key_protection", **where)
        if not MIN_PASSPHRASE_BYTES <= len(secret) <= MAX_PASSPHRASE_BYTES:
            raise InputError(f"the passphrase from {origin} has {len(secret)} bytes; expected "
                             f"{MIN_PASSPHRASE_BYTES} to {MAX_PASSPHRASE_BYTES}", field=field_name, **where)
        return PassphraseProtection(secret, origin)


def _read_passphrase_file(path: Path) -> bytes:
    """A passphrase file may be a symbolic link (Kubernetes mounts secrets so); the file it
    names must still be this user's (or root's) and unreadable by others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"cannot read passphrase file: {exc.strerror}", source=str(path)) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError("passphrase file is not a regular file", source=str(path))
        if st.st_uid not in (os.geteuid(), 0):
            raise InputError(f"passphrase file belongs to uid {st.st_uid}, not this user; expected mode 0600 "
                             "or 0400 and this user as owner", source=str(path))
        if st.st_mode & 0o077:
            raise InputError(f"passphrase file is readable by group or others (mode {_mode(st)}); expected "
                             f"mode 0600 or 0400 (chmod 600 '{path}')", source=str(path))
        data = handle.read(MAX_PASSPHRASE_BYTES + 2)
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
