"""The enclave measurement: canonical manifest, sensitivity to one byte, the installed code."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from teenet.attestation import measure
from teenet.attestation.measure import (
    ENCLAVE_PACKAGES, FORMAT, build_manifest, enclave_manifest, enclave_measurement, installed_dependencies,
    runtime_name,
)
from teenet.errors import InputError

DEPS = {"cryptography": "50.0.2", "Typer_CLI.extra": "1.0"}
RUNTIME = "CPython 3.11.7"


@pytest.fixture()
def packages(tmp_path) -> dict[str, Path]:
    """A small copy of a package layout: a core package with a sub-package, and a role
    package that, as in a wheel install, lives inside the core package's folder."""
    core = tmp_path / "teenet"
    (core / "attestation").mkdir(parents=True)
    (core / "__init__.py").write_text('"""core"""\n')
    (core / "attestation" / "snp.py").write_text("REPORT_SIZE = 0x4A0\n")
    (core / "attestation" / "pinned").mkdir()
    (core / "attestation" / "pinned" / "amd-milan.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (core / "__pycache__").mkdir()
    (core / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (core / "stale.pyc").write_bytes(b"\x00")
    node = core / "node"
    node.mkdir()
    (node / "runtime.py").write_text("ROLE = 'data'\n")
    return {"teenet": core, "teenet.node": node}


def test_manifest_lists_files_sorted_with_sha384_and_skips_bytecode(packages):
    manifest = build_manifest(packages, DEPS, RUNTIME)
    paths = [path for path, _ in manifest.files]
    assert paths == sorted(paths)
    assert paths == ["teenet.node/runtime.py", "teenet/__init__.py", "teenet/attestation/pinned/amd-milan.pem",
                     "teenet/attestation/snp.py"]
    digest = dict(manifest.files)["teenet/attestation/snp.py"]
    assert digest == hashlib.sha384(b"REPORT_SIZE = 0x4A0\n").hexdigest()
    assert manifest.dependencies == (("cryptography", "50.0.2"), ("typer-cli-extra", "1.0"))


def test_measurement_is_sha384_of_the_documented_canonical_json(packages):
    manifest = build_manifest(packages, DEPS, RUNTIME)
    canonical = manifest.canonical_bytes()
    assert canonical == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(canonical)["format"] == FORMAT
    assert json.loads(canonical)["runtime"] == RUNTIME
    assert b" " not in canonical.replace(b"CPython 3", b"")  # no whitespace but inside values
    assert manifest.measurement() == hashlib.sha384(canonical).digest()
    assert len(manifest.measurement()) == 48


def test_same_tree_gives_the_same_measurement(packages, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(packages["teenet"], copy / "teenet")
    moved = {"teenet": copy / "teenet", "teenet.node": copy / "teenet" / "node"}
    assert build_manifest(moved, DEPS, RUNTIME).measurement() == build_manifest(packages, DEPS, RUNTIME).measurement()


def test_one_changed_byte_in_a_module_changes_the_measurement(packages):
    before = build_manifest(packages, DEPS, RUNTIME).measurement()
    module = packages["teenet"] / "attestation" / "snp.py"
    module.write_bytes(module.read_bytes().replace(b"0x4A0", b"0x4A1"))
    assert build_manifest(packages, DEPS, RUNTIME).measurement() != before


@pytest.mark.parametrize("change", ["new file", "dependency version", "runtime"])
def test_anything_else_that_runs_changes_the_measurement(packages, change):
    deps, runtime = dict(DEPS), RUNTIME
    before = build_manifest(packages, deps, runtime).measurement()
    if change == "new file":
        (packages["teenet.node"] / "backdoor.py").write_text("")
    elif change == "dependency version":
        deps["cryptography"] = "50.0.3"
    else:
        runtime = "CPython 3.11.8"
    assert build_manifest(packages, deps, runtime).measurement() != before


def test_missing_package_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="package folder of teenet.models not found"):
        build_manifest({"teenet.models": tmp_path / "absent"}, {}, RUNTIME)


def test_installed_manifest_covers_every_enclave_package():
    manifest = enclave_manifest()
    paths = dict(manifest.files)
    assert "teenet/attestation/measure.py" in paths
    assert "teenet.cli/attest.py" in paths
    for package in ENCLAVE_PACKAGES:
        assert f"{package}/__init__.py" in paths
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in paths)
    source = Path(measure.__file__).read_bytes()
    assert paths["teenet/attestation/measure.py"] == hashlib.sha384(source).hexdigest()
    assert manifest.runtime == runtime_name()


def test_installed_dependencies_are_pinned_and_extras_left_out():
    deps = dict(enclave_manifest().dependencies)
    import cryptography

    assert deps["cryptography"] == cryptography.__version__
    assert "pytest" not in deps and "psycopg" not in deps  # dev / postgres extras
    assert set(installed_dependencies()) >= {"typer", "rich", "cryptography"}


def test_measurement_is_computed_once_per_process():
    assert enclave_manifest() is enclave_manifest()
    assert enclave_measurement() == enclave_manifest().measurement()
