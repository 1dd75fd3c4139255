"""Helpers for the config tests: a sandbox laid out from configs/*.example.yaml with fresh keys.

A uniquely named module (not conftest) so test files can import it whatever else is collected."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from teenet.config import Consortium, load_consortium
from teenet.identity import MemberKeys, b64_raw

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MEMBERS = ("bank", "telco", "insurer", "compute-1", "analyst")
MEASUREMENT = "ab" * 48
_PLACEHOLDER = re.compile(r"EXAMPLE\.([a-z0-9_-]+)\.(signing_key|hpke_key)")


def fill_placeholders(text: str, keys: dict[str, MemberKeys]) -> str:
    """What `teenet sandbox init` does to an example: real public keys and a measurement."""
    def key(match: re.Match[str]) -> str:
        public = keys[match[1]].public()
        return b64_raw(public.signing if match[2] == "signing_key" else public.hpke)
    return _PLACEHOLDER.sub(key, text).replace("EXAMPLE.measurement", MEASUREMENT)


@dataclass
class Sandbox:
    root: Path
    keys: dict[str, MemberKeys]
    consortium: Consortium

    @property
    def consortium_path(self) -> Path:
        return self.root / "consortium.yaml"

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def make_sandbox(root: Path, keys: dict[str, MemberKeys]) -> Sandbox:
    """The examples filled in under `root`: consortium.yaml, bank/, compute-1/, analyst/, jobs/."""
    text = fill_placeholders((CONFIGS / "consortium.example.yaml").read_text(), keys)
    (root / "consortium.yaml").write_text(text)
    for relative, example in (("bank/node.yaml", "node-bank.example.yaml"),
                              ("compute-1/node.yaml", "node-compute.example.yaml"),
                              ("analyst/analyst.yaml", "analyst.example.yaml")):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(fill_placeholders((CONFIGS / example).read_text(), keys))
    shutil.copytree(CONFIGS / "jobs", root / "jobs")
    return Sandbox(root, keys, load_consortium(root / "consortium.yaml"))
