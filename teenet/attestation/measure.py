"""The enclave's code measurement: SHA-384 of a canonical manifest of what it runs.

The manifest lists every file of the installed teenet packages (`teenet`, `teenet.node`,
`teenet.coordinator`, `teenet.models`, `teenet.cli`), the exact version of each of the
`teenet` distribution's dependencies and the Python runtime. An owner pins the resulting
digest (`teenet enclave measure`) exactly as they would pin a hardware launch digest; the
simulated platform puts it in the report's MEASUREMENT field.

Canonical form (version "teenet-enclave-manifest/v1"): the JSON object

    {"dependencies": {"<name>": "<version>", ...},
     "files": {"<import path>/<relative path>": "<sha384 hex>", ...},
     "format": "teenet-enclave-manifest/v1",
     "runtime": "<implementation> <version>"}

serialised with keys sorted (by code point) at every level, no whitespace
(separators "," and ":"), non-ASCII characters written as themselves, encoded as UTF-8.
File keys use "/" whatever the OS, start with the package's import path (e.g.
"teenet.node/runtime.py", "teenet/attestation/snp.py"), skip `__pycache__` folders and
`*.pyc` files, and do not descend into a folder that is itself another measured package
(so an editable and a wheel install measure the same). Dependency names are normalised
as in PEP 503 (lower case, runs of "-", "_", "." become "-"); requirements that apply
only to an extra are left out. The measurement is SHA-384 over those bytes (48 bytes,
the size of an SEV-SNP MEASUREMENT).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from teenet.errors import InputError

FORMAT = "teenet-enclave-manifest/v1"
DISTRIBUTION = "teenet"
ENCLAVE_PACKAGES = ("teenet", "teenet.node", "teenet.coordinator", "teenet.models", "teenet.cli")
_SKIP_DIRS = {"__pycache__"}
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class EnclaveManifest:
    """What the enclave runs: files with their digests, dependency versions, the runtime."""

    files: tuple[tuple[str, str], ...]  # (path, sha384 hex), sorted by path
    dependencies: tuple[tuple[str, str], ...]  # (normalised name, version), sorted by name
    runtime: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "files": dict(self.files),
            "dependencies": dict(self.dependencies),
            "runtime": self.runtime,
        }

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def measurement(self) -> bytes:
        """SHA-384 of the canonical manifest."""
        return hashlib.sha384(self.canonical_bytes()).digest()


def build_manifest(package_dirs: Mapping[str, Path], dependencies: Mapping[str, str], runtime: str) -> EnclaveManifest:
    """The manifest of these package folders (import path -> folder), pinned versions and runtime."""
    roots = {name: Path(folder).resolve() for name, folder in package_dirs.items()}
    nested = set(roots.values())
    files: dict[str, str] = {}
    for name, root in sorted(roots.items()):
        if not root.is_dir():
            raise InputError(f"package folder of {name} not found", source=str(root))
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            # Another measured package living inside this one is listed under its own name.
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and (here / d).resolve() not in nested)
            for filename in sorted(filenames):
                if filename.endswith(".pyc"):
                    continue
                path = here / filename
                relative = path.relative_to(root).as_posix()
                files[f"{name}/{relative}"] = _sha384_file(path)
    deps = {_normalise(n): v for n, v in dependencies.items()}
    return EnclaveManifest(files=tuple(sorted(files.items())), dependencies=tuple(sorted(deps.items())),
                           runtime=runtime)


@functools.cache
def enclave_manifest() -> EnclaveManifest:
    """The manifest of the installed enclave code, computed once per process (at enclave start)."""
    return build_manifest(installed_package_dirs(), installed_dependencies(), runtime_name())


def enclave_measurement() -> bytes:
    """The measurement of the installed enclave code (cached with the manifest)."""
    return _cached_measurement(enclave_manifest())


@functools.cache
def _cached_measurement(manifest: EnclaveManifest) -> bytes:
    return manifest.measurement()


def installed_package_dirs() -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for name in ENCLAVE_PACKAGES:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if len(locations) != 1:
            raise InputError(f"cannot locate the installed package {name}: "
                             f"expected one folder, found {len(locations)}")
        dirs[name] = Path(locations[0])
    return dirs


def installed_dependencies() -> dict[str, str]:
    """name -> installed version for each requirement of the teenet distribution (no extras)."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"the {DISTRIBUTION} distribution is not installed; install it to measure it") from None
    versions: dict[str, str] = {}
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if re.search(r"\bextra\b", marker):
            continue
        match = _REQUIREMENT_NAME.match(spec)
        if not match:
            raise InputError(f"unreadable requirement {requirement!r} in the {DISTRIBUTION} metadata")
        name = match.group(1)
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if marker.strip():
                continue  # a conditional requirement that does not apply here
            raise InputError(f"dependency {name} of {DISTRIBUTION} is not installed") from None
    return versions


def runtime_name() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha384_file(path: Path) -> str:
    digest = hashlib.sha384()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()
