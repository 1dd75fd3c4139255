"""What several commands share: finding the config file, resolving job ids, talking to the coordinator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import typer

from teenet.errors import InputError

if TYPE_CHECKING:
    from teenet.keyfiles import EnclaveSealingKey, KeyProtectionSettings  # noqa: F401

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


def reprotect_keys(paths: list[Path], from_method: str, from_env: str | None, from_file: Path | None,
                   target: KeyProtectionSettings, derive: Callable[[], EnclaveSealingKey] | None, as_json: bool) -> None:
    """`node|coordinator protect-keys`: re-encode `paths` from the `--from` protection to `target`."""
    from teenet.cli.output import emit
    from teenet.keyfiles import KeyProtectionSettings, reprotect_private_keys

    old = KeyProtectionSettings(method=from_method, passphrase_env=from_env, passphrase_file=from_file,
                                source="--from").resolve(derive)
    reprotect_private_keys(paths, old, target.resolve(derive))
    summary = {"from": from_method, "to": target.method, "keys": [str(p) for p in paths]}
    emit(summary, as_json, lambda c: c.print(f"{len(paths)} keys re-protected from '{from_method}' to "
                                             f"'{target.method}': " + ", ".join(str(p) for p in paths)))
