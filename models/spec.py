"""The messages that cross the function boundary: inputs, release requests, rules, releases.

These are what the compute node hands to a function and what it gets back; none of them
carries keys or transport state. `ReleaseRules` is built by the compute node from every
owner's signed approval and is the only source of who may receive what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from teenet.errors import InputError

from teenet.models.rules import DEFAULT_MAX_TREE_NODES, AnalysisRule

MEDIA_JSON = "application/json"
MEDIA_ARROW = "application/vnd.apache.arrow.stream"
MEDIA_ONNX = "application/onnx"


@dataclass(frozen=True)
class InputSpec:
    """One owner's table as named in a job: the key columns and the shipped columns."""

    party: str
    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        # Plain str names: numpy or other str subclasses confuse column selection downstream.
        object.__setattr__(self, "keys", tuple(str(k) for k in self.keys))
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))

    @property
    def name(self) -> str:
        return f"{self.party}.{self.table}"


@dataclass(frozen=True)
class PartyInput:
    """One owner's table as shipped into the enclave (key columns + columns)."""

    party: str
    table: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    data: pa.Table = field(repr=False)

    def __post_init__(self) -> None:
        # Plain str names: numpy or other str subclasses confuse column selection downstream.
        object.__setattr__(self, "keys", tuple(str(k) for k in self.keys))
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.party, self.table, self.keys, self.columns)

    @property
    def name(self) -> str:
        return f"{self.party}.{self.table}"


@dataclass(frozen=True)
class ReleaseRequest:
    """One thing the job asks to release (`kind`) and to whom."""

    kind: str
    recipients: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", tuple(self.recipients))


@dataclass(frozen=True)
class ReleaseRules:
    """What every owner agreed to, combined strictly by the compute node.

    min_group_size is the max of the owners' k; approved_recipients[kind] is the
    intersection over owners of who may receive that kind; id_owners are the parties
    whose ids are in the inputs; analysis holds every input owner's analysis rule for
    the tables this job reads (each bound to its party), from their signed approvals.

    The derived values combine them strictly: `k` is the largest of min_group_size and
    every rule's min_k; DP is required if any rule requires it; every cap (epsilon per
    job, rows per key, tree depth, trees, tree nodes) is the smallest any rule sets; a ROC
    curve only if every rule allows it. With no analysis rule (an approval made before
    rules existed) `effective_analysis` is the default rule (see teenet.models.rules).
    """

    min_group_size: int
    approved_recipients: Mapping[str, frozenset[str]]
    id_owners: frozenset[str]
    analysis: tuple[AnalysisRule, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.min_group_size, bool) or not isinstance(self.min_group_size, int) \
                or self.min_group_size < 1:
            raise InputError("must be an integer of at least 1", field="rules.min_group_size")
        object.__setattr__(self, "approved_recipients",
                           {str(k): frozenset(v) for k, v in dict(self.approved_recipients).items()})
        object.__setattr__(self, "id_owners", frozenset(self.id_owners))
        object.__setattr__(self, "analysis", tuple(self.analysis))
        for i, rule in enumerate(self.analysis):
            if not isinstance(rule, AnalysisRule) or not rule.party:
                raise InputError("expected an AnalysisRule bound to its owner's party (AnalysisRule.for_party)",
                                 field=f"rules.analysis[{i}]")

    @property
    def effective_analysis(self) -> tuple[AnalysisRule, ...]:
        """The rules the enclave checks: the owners', or the default rule when there are none."""
        # An old approval's k is its min_group_size; the default rule never changes it.
        return self.analysis or (AnalysisRule(table="*", min_k=self.min_group_size),)

    @property
    def k(self) -> int:
        return max([self.min_group_size] + [r.min_k for r in self.effective_analysis])

    @property
    def dp_required(self) -> bool:
        return any(r.dp_required for r in self.analysis)

    @property
    def max_epsilon_per_job(self) -> float | None:
        return _smallest(r.max_epsilon_per_job for r in self.analysis)

    @property
    def max_rows_per_key(self) -> int | None:
        return _smallest(r.max_rows_per_key for r in self.analysis)

    @property
    def max_tree_depth(self) -> int | None:
        return _smallest(r.max_tree_depth for r in self.analysis)

    @property
    def max_trees(self) -> int | None:
        return _smallest(r.max_trees for r in self.analysis)

    @property
    def max_tree_nodes(self) -> int:
        return _smallest([DEFAULT_MAX_TREE_NODES] if not self.analysis else
                         [r.max_tree_nodes for r in self.analysis])

    @property
    def roc_allowed(self) -> bool:
        return all(r.roc for r in self.analysis)

    def value_bounds(self, column: str, inputs: Sequence["InputSpec | PartyInput"]) -> tuple[float, float] | None:
        """The owners' declared bounds for `column`: the narrowest of the rules of the tables shipping it."""
        found: list[tuple[float, float]] = []
        for inp in inputs:
            if column not in inp.columns:
                continue
            for rule in self.analysis:
                if rule.party == inp.party and rule.table == inp.table and column in rule.bounds:
                    found.append(rule.bounds[column])
        if not found:
            return None
        return max(b[0] for b in found), min(b[1] for b in found)


def _smallest(values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class Release:
    """What leaves the enclave: a payload for named recipients and a small display summary."""

    kind: str
    recipients: tuple[str, ...]
    media_type: str
    payload: bytes = field(repr=False)
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class Output:
    """One computed result before it is addressed to recipients."""

    media_type: str
    payload: bytes
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class Function:
    """A registered in-enclave function: what it may release and how it reads its params.

    `parse_params(params, inputs, kinds)` validates without data and returns the frozen
    params dataclass; `compute(inputs, params, kinds, rules)` returns an `Output` per
    requested kind. `scores_owner(params)` names the party that owns scored ids, if any.
    """

    name: str
    release_kinds: frozenset[str]
    params_type: type
    parse_params: Callable[[Mapping[str, Any], Sequence[InputSpec], frozenset[str]], Any]
    compute: Callable[[Sequence[PartyInput], Any, frozenset[str], ReleaseRules], Mapping[str, Output]]
    scores_owner: Callable[[Any], str | None] = lambda params: None
