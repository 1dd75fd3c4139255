"""Attacks on long-term key files (issue 11): planted links and temporary files, and key
folders or keys that others can read.

The attacker shares the host, not the key folder: they plant a symbolic link or a file
where teenet writes or reads a key (left there from an earlier, looser install, or through
a folder someone made group-writable), or they rely on a key file or folder that an
operator left readable. Each case shows the refusal, with the one-line error a node or the
coordinator prints at start (the path and the expected mode), and that no key material
reached the attacker's file.

Fast cases run `open_runtime` (what `teenet node serve` runs first) and the coordinator's
`serve` in-process on a real sandbox; one slow case runs `teenet node serve` as a process.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from teenet.errors import InputError
from teenet.identity import MemberKeys

ATTACKER_TEXT = b"the attacker's file\n"


@pytest.fixture(scope="module")
def sandbox_template(tmp_path_factory) -> Path:
    from teenet.cli.sandbox import init_sandbox

    directory = tmp_path_factory.mktemp("keyfiles-sandbox") / "net"
    init_sandbox(directory, rows=200)
    return directory


@pytest.fixture
def sandbox(sandbox_template: Path, tmp_path: Path) -> Path:
    """A fresh copy per test (copytree keeps the modes), so each attack starts clean."""
    target = tmp_path / "net"
    shutil.copytree(sandbox_template, target, symlinks=True)
    return target


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at 2^14 instead of 2^17: the same code path, an eighth of the memory and time
    (tests/core/test_keyfiles.py checks that files are written at the real cost)."""
    monkeypatch.setattr("teenet.keyfiles.SCRYPT_N", 1 << 14)


def start_node(sandbox: Path, member: str = "bank") -> None:
    from teenet.node.runtime import open_runtime

    open_runtime(sandbox / f"{member}.yaml").close()


def attacker_file(tmp_path: Path) -> Path:
    target = tmp_path / "attacker" / "loot"
    target.parent.mkdir()
    target.write_bytes(ATTACKER_TEXT)
    os.chmod(target, 0o644)
    return target


def mode(path: Path) -> str:
    return f"{stat.S_IMODE(os.lstat(path).st_mode):04o}"


# --- planted symbolic links and temporary files -------------------------------------------

def test_a_symlink_planted_at_a_key_path_is_refused_at_start(sandbox: Path, tmp_path: Path) -> None:
    """The attacker swaps the bank's signing key for a link to a key they know: a node that
    followed it would sign approvals with the attacker's key."""
    known = ed25519.Ed25519PrivateKey.generate()
    planted = attacker_file(tmp_path)
    planted.write_bytes(known.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    os.chmod(planted, 0o600)
    key = sandbox / "members" / "bank" / "keys" / "signing.key"
    key.unlink()
    key.symlink_to(planted)
    with pytest.raises(InputError) as err:
        start_node(sandbox)
    assert str(err.value) == (f"{key}: key file is a symbolic link; refused (expected a regular file of mode 0600)")


def test_a_symlink_planted_at_a_key_path_is_refused_on_write(sandbox: Path, tmp_path: Path) -> None:
    planted = attacker_file(tmp_path)
    folder = sandbox / "members" / "bank" / "keys"
    (folder / "signing.key").unlink()
    (folder / "signing.key").symlink_to(planted)
    with pytest.raises(InputError, match="a symbolic link is at this key path; refused"):
        MemberKeys.generate().save(folder)
    assert planted.read_bytes() == ATTACKER_TEXT and (folder / "signing.key").is_symlink()


def test_a_planted_tmp_symlink_is_refused_and_gets_no_key(sandbox: Path, tmp_path: Path) -> None:
    """Before: the key was written through `<name>.tmp` opened with O_TRUNC, which follows a
    link planted there, so the new key landed in the attacker's file."""
    planted = attacker_file(tmp_path)
    folder = sandbox / "members" / "bank" / "keys"
    (folder / "signing.key.tmp").symlink_to(planted)
    with pytest.raises(InputError) as err:
        MemberKeys.generate().save(folder)
    assert str(err.value).startswith(f"{folder / 'signing.key.tmp'}: a file or link already exists at this "
                                     "temporary name; refused")
    assert planted.read_bytes() == ATTACKER_TEXT


def test_a_planted_tmp_file_is_refused_and_does_not_lend_its_mode(sandbox: Path) -> None:
    """Before: O_CREAT keeps an existing file's mode, so a world-readable `.tmp` planted in
    the folder became the key file, readable by everyone."""
    folder = sandbox / "members" / "bank" / "keys"
    planted = folder / "signing.key.tmp"
    planted.write_bytes(ATTACKER_TEXT)
    os.chmod(planted, 0o644)
    before = (folder / "signing.key").read_bytes()
    with pytest.raises(InputError, match="already exists at this temporary name; refused"):
        MemberKeys.generate().save(folder)
    assert planted.read_bytes() == ATTACKER_TEXT
    assert (folder / "signing.key").read_bytes() == before and mode(folder / "signing.key") == "0600"


# --- folders and keys others can read: refused at start ------------------------------------

def test_a_key_folder_readable_by_others_is_refused_at_start(sandbox: Path) -> None:
    folder = sandbox / "members" / "bank" / "keys"
    os.chmod(folder, 0o755)
    with pytest.raises(InputError) as err:
        start_node(sandbox)
    assert str(err.value) == (f"{folder}: key folder is accessible by group or others (mode 0755); "
                              f"expected mode 0700 (chmod 700 '{folder}')")


def test_a_key_readable_by_others_is_refused_at_start(sandbox: Path) -> None:
    key = sandbox / "members" / "bank" / "keys" / "hpke.key"
    os.chmod(key, 0o644)
    with pytest.raises(InputError) as err:
        start_node(sandbox)
    assert str(err.value) == (f"{key}: key file is readable or writable by group or others (mode 0644); "
                              f"expected mode 0600 (chmod 600 '{key}')")


def test_a_tls_key_readable_by_its_group_is_refused_at_start(sandbox: Path) -> None:
    key = sandbox / "pki" / "compute-1.key"
    os.chmod(key, 0o640)
    with pytest.raises(InputError, match=f"^{key}: key file is readable or writable by group or others "
                                         r"\(mode 0640\); expected mode 0600"):
        start_node(sandbox, "compute-1")


def test_the_coordinators_audit_key_readable_by_others_is_refused_at_start(sandbox: Path) -> None:
    from teenet.audit import load_audit_key
    from teenet.coordinator.config import load_coordinator_config
    from teenet.coordinator.server import serve

    config = load_coordinator_config(sandbox / "coordinator.yaml")
    load_audit_key(config.audit_key)  # made as on a first start: folder 0700, key 0600
    assert mode(config.audit_key.parent) == "0700" and mode(config.audit_key) == "0600"
    os.chmod(config.audit_key, 0o644)
    with pytest.raises(InputError, match=f"^{config.audit_key}: key file is readable or writable by group or "
                                         r"others \(mode 0644\); expected mode 0600"):
        serve(config)
    assert not config.database.exists()  # refused before anything else started


def test_the_sandbox_creates_every_key_the_private_way(sandbox: Path) -> None:
    folders = [sandbox / "pki", *(p / "keys" for p in (sandbox / "members").iterdir())]
    assert folders and all(mode(f) == "0700" for f in folders)
    keys = [p for f in folders for p in f.glob("*.key")]
    assert len(keys) >= 16 and all(mode(k) == "0600" for k in keys)
    assert all(mode(p) == "0644" for p in (sandbox / "pki").glob("*.pem"))  # public stays readable


def test_a_node_starts_with_passphrase_protected_keys_and_not_without(sandbox: Path, cheap_scrypt: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`teenet node protect-keys` re-protects a sandbox node's keys; `open_runtime` (the
    node's start) then needs the passphrase, and a wrong one is refused."""
    from typer.testing import CliRunner

    from teenet.cli.node import app
    from teenet.node.runtime import open_runtime

    net = sandbox
    config = net / "bank.yaml"
    config.write_text(config.read_text() + "key_protection: {method: passphrase, passphrase_env: TEENET_TEST_PP}\n")
    monkeypatch.setenv("TEENET_TEST_PP", "a long enough passphrase")
    done = CliRunner().invoke(app, ["protect-keys", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    for key in (net / "members" / "bank" / "keys" / "signing.key", net / "pki" / "bank.key"):
        assert key.read_text().startswith("-----BEGIN TEENET SEALED PRIVATE KEY-----")
    runtime = open_runtime(config)
    runtime.close()
    monkeypatch.setenv("TEENET_TEST_PP", "not the passphrase")
    with pytest.raises(InputError, match="cannot decrypt the key with the passphrase from the environment "
                                         "variable TEENET_TEST_PP"):
        open_runtime(config)


def test_a_node_starts_with_keys_sealed_to_its_enclave_and_another_measurement_cannot(
        sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`key_protection: {method: enclave}` on the sim backend: the keys open in the node that
    sealed them; a node running other code (another measurement) is refused at start."""
    from typer.testing import CliRunner

    from teenet.attestation.measure import EnclaveManifest
    from teenet.cli.node import app
    from teenet.node.runtime import open_runtime

    config = sandbox / "telco.yaml"
    config.write_text(config.read_text() + "key_protection: {method: enclave}\n")
    done = CliRunner().invoke(app, ["protect-keys", "--config", str(config)])
    assert done.exit_code == 0, done.output
    open_runtime(config).close()
    monkeypatch.setattr(EnclaveManifest, "measurement", lambda self: b"\x01" * 48)  # other code
    with pytest.raises(InputError, match="signing.key: cannot unseal the key: this enclave's key does not open it"):
        open_runtime(config)


def test_the_coordinator_serves_with_passphrase_protected_keys(sandbox: Path, cheap_scrypt: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`coordinator protect-keys`, then a start (audit and TLS key decrypted) and `audit verify
    --config` (which needs the audit key's public half); without the passphrase, no start."""
    from typer.testing import CliRunner

    from teenet.cli.audit import _log_of
    from teenet.cli.coordinator import app
    from teenet.coordinator.config import load_coordinator_config
    from teenet.coordinator.server import serve
    from teenet.audit import load_audit_key

    path = sandbox / "coordinator.yaml"
    first = load_audit_key(load_coordinator_config(path).audit_key)
    path.write_text(path.read_text() + "key_protection: {method: passphrase, passphrase_env: TEENET_TEST_PP}\n")
    config = load_coordinator_config(path)
    monkeypatch.setenv("TEENET_TEST_PP", "the coordinator's passphrase")
    done = CliRunner().invoke(app, ["protect-keys", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert config.audit_key.read_text().startswith("-----BEGIN TEENET SEALED PRIVATE KEY-----")
    running = serve(replace(config, listen="127.0.0.1:0"))
    running.stop(grace=0)
    _, public = _log_of(None, path)
    assert public.public_bytes_raw() == first.public_key().public_bytes_raw()
    monkeypatch.delenv("TEENET_TEST_PP")
    with pytest.raises(InputError, match="the environment variable TEENET_TEST_PP is not set"):
        serve(config)


@pytest.mark.slow
def test_node_serve_refuses_a_readable_key_in_one_line(sandbox: Path) -> None:
    key = sandbox / "members" / "telco" / "keys" / "signing.key"
    os.chmod(key, 0o604)
    done = subprocess.run([sys.executable, "-m", "teenet.cli.main", "node", "serve", "--config", "telco.yaml"],
                          cwd=sandbox, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="400"))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {key}: key file is readable or writable by group or others (mode 0604); "
                      f"expected mode 0600 (chmod 600 '{key}')"], done.stderr
    assert "Traceback" not in done.stderr
