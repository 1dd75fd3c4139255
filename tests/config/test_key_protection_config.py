"""`key_protection` in node and coordinator configs: parsed strictly, errors name the field.
(A node starting with protected keys: tests/attacks/test_attack_keyfiles.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from config_sandbox import CONFIGS, Sandbox
from teenet.config import load_node_config
from teenet.errors import InputError
from teenet.keyfiles import KeyProtectionSettings


def with_protection(sandbox: Sandbox, text: str) -> Path:
    path = sandbox.root / "bank" / "node.yaml"
    path.write_text(path.read_text() + text)
    return path


def test_absent_means_none(sandbox: Sandbox) -> None:
    assert load_node_config(sandbox.root / "bank" / "node.yaml").key_protection.method == "none"


def test_passphrase_from_a_file_resolves_against_the_config_folder(sandbox: Sandbox) -> None:
    path = with_protection(sandbox, "key_protection: {method: passphrase, passphrase_file: secrets/pp}\n")
    settings = load_node_config(path).key_protection
    assert settings == KeyProtectionSettings("passphrase", passphrase_file=sandbox.root / "bank" / "secrets" / "pp",
                                             source=str(path))


@pytest.mark.parametrize("text, field, words", [
    ("key_protection: {method: vault}\n", "key_protection.method", "'vault' is not one of: none, passphrase, enclave"),
    ("key_protection: {method: passphrase}\n", "key_protection",
     "needs exactly one of passphrase_file (a file of mode 0600) or passphrase_env"),
    ("key_protection: {method: passphrase, passphrase_env: A, passphrase_file: f}\n", "key_protection",
     "needs exactly one of"),
    ("key_protection: {method: passphrase, passphrase_env: lower}\n", "key_protection.passphrase_env",
     "'lower' is not an environment variable name"),
    ("key_protection: {method: none, passphrase_env: PP}\n", "key_protection.passphrase_env",
     "unknown field 'passphrase_env'"),
    ("key_protection: {method: enclave, passphrase: hunter2hunter2}\n", "key_protection.passphrase",
     "unknown field 'passphrase'"),
    ("key_protection: passphrase\n", "key_protection", "expected a mapping {method, passphrase_file or passphrase_env}"),
])
def test_bad_sections_name_the_field(sandbox: Sandbox, text: str, field: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        load_node_config(with_protection(sandbox, text))
    assert err.value.field == field and words in str(err.value), str(err.value)
    assert "hunter2" not in str(err.value)


def test_the_coordinator_takes_none_or_passphrase_but_not_enclave(sandbox: Sandbox) -> None:
    from teenet.coordinator.config import load_coordinator_config

    text = (CONFIGS / "coordinator.example.yaml").read_text()
    path = sandbox.write("coordinator/coordinator.yaml",
                         text + "key_protection: {method: passphrase, passphrase_env: TEENET_COORD_PP}\n")
    assert load_coordinator_config(path).key_protection.passphrase_env == "TEENET_COORD_PP"
    path.write_text(text + "key_protection: {method: enclave}\n")
    with pytest.raises(InputError) as err:
        load_coordinator_config(path)
    assert err.value.field == "key_protection.method" and "is not one of: none, passphrase" in str(err.value)

