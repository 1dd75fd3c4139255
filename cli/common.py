"""What several commands share: finding the config file, resolving job ids, talking to the coordinator."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from teenet.errors import InputError

CONFIG_HELP = "Config file (or set TEENET_CONFIG)."


def config_path(value: Path | None) -> Path:
    if value is None:
        env = os.environ.get("TEENET_CONFIG")
        if not env:
            raise InputError("no config given: pass --config FILE or set TEENET_CONFIG")
        value = Path(env)
    if not value.is_file():
        raise InputError("config file not found", source=str(value))
    return value


def config_option() -> Path | None:
    return typer.Option(None, "--config", "-c", help=CONFIG_HELP)


def resolve_job_id(prefix: str, known: list[str]) -> str:
    """A full job id from a unique prefix (at least 6 hex characters)."""
    p = prefix.strip().lower()
    if len(p) < 6 or any(c not in "0123456789abcdef" for c in p):
        raise InputError(f"'{prefix}' is not a job id (expected at least 6 hex characters)")
    matches = [j for j in known if j.startswith(p)]
    if not matches:
        raise InputError(f"no job with id {prefix}")
    if len(matches) > 1:
        raise InputError(f"job id prefix {prefix} is ambiguous ({len(matches)} jobs)")
    return matches[0]
