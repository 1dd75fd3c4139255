"""Remember which job specs the function checks of `teenet.models` already passed.

`job validate` and `job submit` check a spec's params and releases with the very code the
compute enclave runs (`teenet.models.validate_job`). Importing it loads numpy, pyarrow and
pandas, about 0.7 s of every submission. That check is a pure function of the spec's
function, inputs, params and releases and of the code in `teenet.models`, so a pass is
recorded under a digest of exactly those (the code as the bytes of its source files), and
the same spec submitted again skips the import. Any change to the spec or to the code is
a different digest, so it is checked afresh. Only passes are recorded.

The record is a convenience of this analyst's machine, not a security check: the compute
enclave validates every job itself, whatever the CLI did. Set TEENET_CACHE_DIR to move it,
or TEENET_NO_CACHE=1 to always check.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from teenet.jobspec import JobSpec

MAX_ENTRIES = 1000
_DOMAIN = b"teenet/cli/validated-spec/v1\0"


def _cache_dir() -> Path | None:
    if os.environ.get("TEENET_NO_CACHE"):
        return None
    base = os.environ.get("TEENET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "teenet")
    return Path(base) / "validated-specs"


def _models_code() -> bytes:
    """The digest of every source file of teenet.models, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("teenet.models")
    digest = hashlib.sha256()
    for location in (spec.submodule_search_locations or []) if spec else []:
        for path in sorted(Path(location).rglob("*.py")):
            digest.update(str(path.relative_to(location)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.digest()


def spec_digest(spec: "JobSpec") -> str:
    from teenet.canonical import canonical_json
    from teenet.jobspec import thaw_json

    checked = canonical_json({
        "function": spec.function,
        "inputs": [[i.party, i.table, list(i.keys), list(i.columns)] for i in spec.inputs],
        "params": thaw_json(spec.params),
        "release": [[r.kind, list(r.to)] for r in spec.release],
    })
    return hashlib.sha256(_DOMAIN + _models_code() + checked).hexdigest()


def passed_before(spec: "JobSpec") -> bool:
    d = _cache_dir()
    return d is not None and (d / spec_digest(spec)).is_file()


def record_pass(spec: "JobSpec") -> None:
    d = _cache_dir()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        (d / spec_digest(spec)).touch()
        entries = sorted(d.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or full home folder only costs the next submission its 0.7 s
