"""The release rules, in one place: what a function may let out of the enclave, and to whom.

- Only kinds a function declares can be released; raw rows ("rows", "raw", "table", ...)
  are never declared by any function, so they are always refused.
- Every recipient of a kind must be in `approved_recipients[kind]` (the intersection of
  what every owner allowed); a request with no recipient is refused.
- "ids" go only to parties whose ids are in the inputs and that every owner allowed.
- "scores" go only to the party that owns the scored ids, and to nobody else.
- Every released statistic covers at least k people (`ReleaseRules.k`, the strictest of
  the owners' k): a result over fewer is refused, a group or a statistic below k is
  suppressed. No message or output states a count below k.

Every refusal raises `ReleaseRefused` with the rule, the field and expected versus found.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from teenet.errors import ReleaseRefused

from teenet.models.spec import ReleaseRequest, ReleaseRules

# Named so the refusal for raw data is explicit rather than "undeclared".
RAW_ROW_KINDS = frozenset({"rows", "raw", "table", "records", "data"})
ID_KINDS = frozenset({"ids"})
SCORE_KINDS = frozenset({"scores"})


def check_requests(function: str, declared: frozenset[str], requests: Sequence[ReleaseRequest],
                   input_parties: frozenset[str], *, rules: ReleaseRules | None = None,
                   scores_owner: str | None = None) -> frozenset[str]:
    """Refuse any request the function or the owners do not allow; return the kinds asked.

    Without `rules` (job validation before approvals exist) only the static checks run.
    """
    if not requests:
        raise ReleaseRefused("release.requests: the job asks to release nothing "
                             "(expected at least one release request)")
    kinds: set[str] = set()
    for i, request in enumerate(requests):
        where = f"release[{i}]"  # the job YAML's name for the list
        if not isinstance(request, ReleaseRequest):
            raise ReleaseRefused(f"release.requests: {where} is not a release request")
        kind = request.kind
        if kind in RAW_ROW_KINDS:
            raise ReleaseRefused(f"release.raw_rows: {where}.kind '{kind}' would release raw rows, "
                                 "which no function ever releases")
        if kind not in declared:
            raise ReleaseRefused(f"release.kind: {where}.kind '{kind}' is not declared by "
                                 f"'{function}' (expected one of {', '.join(sorted(declared))})")
        if kind in kinds:
            raise ReleaseRefused(f"release.kind: {where}.kind '{kind}' is requested twice")
        kinds.add(kind)
        if not request.recipients:
            raise ReleaseRefused(f"release.recipients: {where} names no recipient")
        if len(set(request.recipients)) != len(request.recipients):
            raise ReleaseRefused(f"release.recipients: {where} names a recipient twice")
        if kind in ID_KINDS:
            _check_within(where, kind, request.recipients, input_parties, "parties whose ids are in the inputs")
        if kind in SCORE_KINDS:
            if scores_owner is None:
                raise ReleaseRefused(f"release.scores: {where}: no party is named as owner of the ids")
            _check_within(where, kind, request.recipients, frozenset({scores_owner}),
                          f"only the owner of the scored ids ('{scores_owner}')")
        if rules is not None:
            _check_approved(where, request, rules)
    return frozenset(kinds)


def _check_approved(where: str, request: ReleaseRequest, rules: ReleaseRules) -> None:
    kind = request.kind
    approved = rules.approved_recipients.get(kind, frozenset())
    _check_within(where, kind, request.recipients, approved, f"recipients every owner approved for '{kind}'")
    if kind in ID_KINDS | SCORE_KINDS:
        _check_within(where, kind, request.recipients, rules.id_owners, "parties that own ids in the inputs")


def _check_within(where: str, kind: str, recipients: Sequence[str], allowed: frozenset[str],
                  what: str) -> None:
    refused = [r for r in recipients if r not in allowed]
    if refused:
        listed = ", ".join(sorted(allowed)) or "nobody"
        raise ReleaseRefused(f"release.recipients: {where}: '{kind}' may not go to "
                             f"{', '.join(repr(r) for r in refused)} (expected {what}: {listed})")


def require_group_size(rows: int, rules: ReleaseRules, what: str, unit: str = "rows") -> None:
    """Refuse a release computed over fewer than k rows (or keys). The message names k,
    never the small count itself: a refusal leaves the enclave too."""
    if rows < rules.k:
        raise ReleaseRefused(f"release.min_group_size: {what} has fewer {unit} than the owners' "
                             f"minimum group size (expected >= {rules.k})")


def releasable_groups(group_rows: np.ndarray, rules: ReleaseRules) -> np.ndarray:
    """A mask of the groups large enough to release; the rest are suppressed."""
    return np.asarray(group_rows) >= rules.k
