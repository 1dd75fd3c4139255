"""teenet.keyfiles: private folders and files, and keys protected at rest (none, passphrase, enclave)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from teenet.attestation.sim import UnsafeSimulatedAttester
from teenet.errors import InputError
from teenet.identity import MemberKeys
from teenet.keyfiles import (
    NO_PROTECTION, EnclaveProtection, EnclaveSealingKey, KeyProtectionSettings, PassphraseProtection,
    read_private_key, read_secret_file, write_private_key, write_secret_file,
)

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at 2^14: the same code, an eighth of the time; the real cost is checked in
    test_passphrase_protection_round_trip_and_file_format."""
    monkeypatch.setattr("teenet.keyfiles.SCRYPT_N", 1 << 14)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def same_private(a: ed25519.Ed25519PrivateKey, b: object) -> bool:
    assert isinstance(b, ed25519.Ed25519PrivateKey)
    return a.private_bytes_raw() == b.private_bytes_raw()


# --- folders and files -------------------------------------------------------------------

def test_a_key_is_written_0600_in_a_new_0700_folder_without_leftovers(tmp_path: Path) -> None:
    folder = tmp_path / "public" / "keys"
    MemberKeys.generate().save(folder)
    assert mode_of(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["hpke.key", "signing.key"]
    assert all(mode_of(p) == 0o600 for p in folder.iterdir())
    assert mode_of(tmp_path / "public") & 0o077  # parents stay as they were: they may be public


def test_a_key_is_replaced_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.key"
    first, second = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    write_private_key(path, first)
    write_private_key(path, second)
    assert same_private(second, read_private_key(path))
    assert not (path.parent / "k.key.tmp").exists()


def test_an_existing_public_folder_is_refused_not_chmodded(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with pytest.raises(InputError) as err:
        write_secret_file(folder / "k.key", b"secret")
    assert str(err.value) == (f"{folder}: key folder is accessible by group or others (mode 0755); "
                              f"expected mode 0700 (chmod 700 '{folder}')")
    assert mode_of(folder) == 0o755 and not list(folder.iterdir())


def test_a_symlinked_key_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "keys").symlink_to(real)
    with pytest.raises(InputError, match="key folder is a symbolic link; refused"):
        write_secret_file(tmp_path / "keys" / "k.key", b"secret")
    with pytest.raises(InputError, match="key folder is a symbolic link; refused"):
        read_secret_file(tmp_path / "keys" / "k.key")
    assert not list(real.iterdir())


def test_a_fifo_at_a_key_path_is_refused_without_hanging(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    os.mkfifo(folder / "k.key", 0o600)
    with pytest.raises(InputError, match="not a regular file"):
        read_secret_file(folder / "k.key")


def test_missing_key_and_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="key folder does not exist"):
        read_secret_file(tmp_path / "nope" / "k.key")
    (tmp_path / "keys").mkdir(mode=0o700)
    with pytest.raises(InputError, match=r"k\.key: key file does not exist"):
        read_secret_file(tmp_path / "keys" / "k.key")


# --- passphrase ----------------------------------------------------------------------------

def test_passphrase_protection_round_trip_and_file_format(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, key, PassphraseProtection(PASSPHRASE))
    text = path.read_text()
    assert text.startswith("-----BEGIN TEENET SEALED PRIVATE KEY-----\n")
    header = base64.b64decode("".join(text.splitlines()[1:-1]))
    assert b'"kdf":{"n":131072,"name":"scrypt","p":1,"r":8,"salt":"' in header  # OWASP's floor, not less
    raw = key.private_bytes_raw()
    assert raw.hex() not in text and PASSPHRASE.decode() not in text
    assert same_private(key, read_private_key(path, PassphraseProtection(PASSPHRASE)))


def test_a_wrong_passphrase_is_refused_without_showing_it(tmp_path: Path, cheap_scrypt: None) -> None:
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(), PassphraseProtection(PASSPHRASE))
    with pytest.raises(InputError) as err:
        read_private_key(path, PassphraseProtection(b"not the passphrase", origin="the environment variable PP"))
    assert "cannot decrypt the key with the passphrase from the environment variable PP" in str(err.value)
    assert "not the passphrase" not in str(err.value)


def test_a_changed_header_is_refused(tmp_path: Path, cheap_scrypt: None) -> None:
    """The scrypt parameters are in the authenticated header: lowering them is detected."""
    path = tmp_path / "keys" / "k.key"
    protection = PassphraseProtection(PASSPHRASE)
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(), protection)
    lines = path.read_bytes().splitlines()
    raw = bytearray(base64.b64decode(b"".join(lines[1:-1])))
    at = raw.index(b'"n":16384')
    raw[at:at + len(b'"n":16384')] = b'"n":32768'  # same length, still a valid cost
    path.write_bytes(lines[0] + b"\n" + base64.encodebytes(bytes(raw)) + lines[-1] + b"\n")
    with pytest.raises(InputError, match="cannot decrypt the key with the passphrase"):
        read_private_key(path, protection)


def test_an_openssl_pkcs8_encrypted_key_is_read_under_passphrase(tmp_path: Path) -> None:
    """An operator may bring a TLS key that OpenSSL encrypted (ENCRYPTED PRIVATE KEY)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "tls" / "node.key"
    write_secret_file(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(PASSPHRASE)))
    loaded = read_private_key(path, PassphraseProtection(PASSPHRASE))
    assert isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.private_numbers() == key.private_numbers()


def test_protection_mismatches_name_what_the_file_needs(tmp_path: Path, cheap_scrypt: None) -> None:
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(), PassphraseProtection(PASSPHRASE))
    with pytest.raises(InputError, match="the key is encrypted with a passphrase, but key_protection.method is "
                                         "'none' \\(set method 'passphrase'"):
        read_private_key(path, NO_PROTECTION)
    write_private_key(path, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(InputError, match="the key is not encrypted, but key_protection.method is 'passphrase'"):
        read_private_key(path, PassphraseProtection(PASSPHRASE))


def test_passphrase_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEENET_TEST_PP", PASSPHRASE.decode())
    from_env = KeyProtectionSettings("passphrase", passphrase_env="TEENET_TEST_PP").resolve()
    assert isinstance(from_env, PassphraseProtection) and from_env.passphrase == PASSPHRASE
    assert PASSPHRASE.decode() not in repr(from_env)
    secret = tmp_path / "pp"
    secret.write_bytes(PASSPHRASE + b"\n")
    os.chmod(secret, 0o600)
    from_file = KeyProtectionSettings("passphrase", passphrase_file=secret).resolve()
    assert isinstance(from_file, PassphraseProtection) and from_file.passphrase == PASSPHRASE


def test_bad_passphrase_sources_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEENET_TEST_PP", raising=False)
    with pytest.raises(InputError, match="field 'key_protection.passphrase_env': the environment variable "
                                         "TEENET_TEST_PP is not set"):
        KeyProtectionSettings("passphrase", passphrase_env="TEENET_TEST_PP", source="node.yaml").resolve()
    monkeypatch.setenv("TEENET_TEST_PP", "short")
    with pytest.raises(InputError, match="has 5 bytes; expected 8 to 4096"):
        KeyProtectionSettings("passphrase", passphrase_env="TEENET_TEST_PP").resolve()
    secret = tmp_path / "pp"
    secret.write_bytes(PASSPHRASE)
    os.chmod(secret, 0o644)
    with pytest.raises(InputError, match=r"passphrase file is readable by group or others \(mode 0644\); "
                                         r"expected mode 0600 or 0400"):
        KeyProtectionSettings("passphrase", passphrase_file=secret).resolve()


# --- enclave ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_attesters(sim_platform):
    return {"a": UnsafeSimulatedAttester(sim_platform, b"\xaa" * 48),
            "b": UnsafeSimulatedAttester(sim_platform, b"\xbb" * 48),
            "a-debug": UnsafeSimulatedAttester(sim_platform, b"\xaa" * 48, debug=True)}


def test_sim_enclave_sealing_round_trip_and_same_key_after_restart(tmp_path: Path, sim_attesters) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, key, EnclaveProtection(sim_attesters["a"].derive_sealing_key()))
    assert '"protection":"enclave","tee":"sim-snp"' in base64.b64decode(
        b"".join(path.read_bytes().splitlines()[1:-1]))[2:].decode(errors="replace")
    # A new derivation (a restarted node) opens it.
    assert same_private(key, read_private_key(path, EnclaveProtection(sim_attesters["a"].derive_sealing_key())))


@pytest.mark.parametrize("other", ["b", "a-debug"])
def test_another_measurement_or_a_debug_launch_cannot_unseal(tmp_path: Path, sim_attesters, other: str) -> None:
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(),
                      EnclaveProtection(sim_attesters["a"].derive_sealing_key()))
    with pytest.raises(InputError, match="cannot unseal the key: this enclave's key does not open it"):
        read_private_key(path, EnclaveProtection(sim_attesters[other].derive_sealing_key()))


def test_another_platform_cannot_unseal(tmp_path: Path, sim_attesters) -> None:
    """The same measurement on another chip (another chip secret) derives another key."""
    from teenet.attestation.sim import SimulatedPlatform

    other = SimulatedPlatform(ark=sim_attesters["a"]._platform.ark, ark_key=sim_attesters["a"]._platform._ark_key,
                              ask=sim_attesters["a"]._platform.ask, ask_key=sim_attesters["a"]._platform._ask_key,
                              chip_secret=os.urandom(48), chip_id=os.urandom(64))
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(),
                      EnclaveProtection(sim_attesters["a"].derive_sealing_key()))
    with pytest.raises(InputError, match="cannot unseal"):
        read_private_key(path, EnclaveProtection(other.derive_sealing_key(b"\xaa" * 48, 0x30000)))


def test_a_key_sealed_by_another_kind_of_tee_is_named(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(),
                      EnclaveProtection(EnclaveSealingKey.from_tee_secret("sgx", bytes(16))))
    with pytest.raises(InputError, match="the key was sealed by a 'sgx' enclave; this enclave is 'snp'"):
        read_private_key(path, EnclaveProtection(EnclaveSealingKey.from_tee_secret("snp", bytes(32))))


def test_a_flipped_bit_in_a_sealed_key_is_refused(tmp_path: Path) -> None:
    protection = EnclaveProtection(EnclaveSealingKey.from_tee_secret("snp", bytes(32)))
    path = tmp_path / "keys" / "k.key"
    write_private_key(path, ed25519.Ed25519PrivateKey.generate(), protection)
    lines = path.read_bytes().splitlines()
    raw = bytearray(base64.b64decode(b"".join(lines[1:-1])))
    raw[-5] ^= 1
    write_secret_file(path, lines[0] + b"\n" + base64.encodebytes(bytes(raw)) + lines[-1] + b"\n")
    with pytest.raises(InputError, match="cannot unseal"):
        read_private_key(path, protection)


def test_sealing_keys_never_show_in_repr() -> None:
    key = EnclaveSealingKey.from_tee_secret("snp", b"\x42" * 32)
    assert "42" * 4 not in repr(key) and key._key.hex() not in repr(EnclaveProtection(key))


def test_enclave_method_outside_the_enclave_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="these keys can only be opened inside the node's enclave"):
        KeyProtectionSettings("enclave", source="bank.yaml").resolve(None)
