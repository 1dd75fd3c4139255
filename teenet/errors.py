"""The error types every part of teenet raises: one line, user-facing, never a secret.

Each message names what was wrong (the check, the file, the field or the line) and what
was expected. The CLI and the services print `str(error)` and nothing else, so a message
must be safe to show to the party that caused it.
"""

from __future__ import annotations


class TeenetError(Exception):
    """Base of every error teenet raises on purpose."""


class InputError(TeenetError):
    """Bad input from a user or a peer: a file, a field, a line, a message."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.source = source
        self.line = line
        self.field = field
        where = []
        if source:
            where.append(source if line is None else f"{source}:{line}")
        elif line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class VerificationError(TeenetError):
    """A check on evidence, a signature, a chain or a policy failed.

    `check` names the check (e.g. "snp.signature", "policy.measurement"); `expected` and
    `found` say what was wanted and what was there (never a key or a plaintext).
    """

    def __init__(self, check: str, message: str, *, expected: str | None = None,
                 found: str | None = None) -> None:
        self.check = check
        self.message = message
        self.expected = expected
        self.found = found
        text = f"{check}: {message}"
        if expected is not None or found is not None:
            text += f" (expected {expected if expected is not None else '-'}, found {found if found is not None else '-'})"
        super().__init__(text)


class SealingError(TeenetError):
    """A sealed stream or sealed key was malformed, altered, reordered or cut short."""


class NegotiationError(TeenetError):
    """The key exchange between two enclaves was refused by one side."""


class ReleaseRefused(TeenetError):
    """A function asked to release something the owners' rules forbid."""
