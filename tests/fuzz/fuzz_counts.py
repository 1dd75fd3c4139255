"""Fuzz harness shared by tests/fuzz: run a target, allow only TeenetError, count outcomes.

Any exception that is not a `teenet.errors.TeenetError` subclass is a crash: it propagates,
hypothesis shrinks it and the test fails with the smallest input that causes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import strategies as st

from teenet.errors import TeenetError


@dataclass
class Outcome:
    total: int = 0
    accepted: int = 0
    refused: Counter = field(default_factory=Counter)
    known_defects: Counter = field(default_factory=Counter)


COUNTS: dict[str, Outcome] = {}


def outcome(name: str) -> Outcome:
    """A fresh counter for one test (a re-run replaces the old figures)."""
    COUNTS[name] = Outcome()
    return COUNTS[name]


def run_target(counter: Outcome, fn: Callable[[], Any],
               known_defect: Callable[[BaseException], str | None] | None = None) -> tuple[bool, Any]:
    """(True, result) if `fn` accepted its input, (False, error) if it refused it cleanly.

    `known_defect(exc)` may name a crash already reported (with its own failing regression
    test); it is counted and shown in the summary instead of stopping the fuzzer, so the
    fuzzer keeps looking for other crashes. Any other exception propagates.
    """
    counter.total += 1
    try:
        result = fn()
    except TeenetError as exc:
        counter.refused[type(exc).__name__] += 1
        assert str(exc).strip(), "a refusal must say why"
        return False, exc
    except Exception as exc:
        label = known_defect(exc) if known_defect is not None else None
        if label is None:
            raise
        counter.known_defects[label] += 1
        return False, exc
    counter.accepted += 1
    return True, result


OPS = ("flip", "set", "delete", "insert", "truncate", "duplicate", "append", "zero")


def mutate(data: st.DataObject, raw: bytes, *, max_ops: int = 4) -> bytes:
    """Apply 1..max_ops random byte-level mutations to `raw`."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, max_ops), label="ops")):
        op = data.draw(st.sampled_from(OPS), label="op")
        n = len(out)
        at = data.draw(st.integers(0, max(0, n - 1)), label="at")
        if op == "flip" and n:
            out[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and n:
            out[at] = data.draw(st.integers(0, 255))
        elif op == "delete" and n:
            del out[at:at + data.draw(st.integers(1, 64))]
        elif op == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        elif op == "truncate":
            del out[at:]
        elif op == "duplicate" and n:
            out[at:at] = out[at:at + data.draw(st.integers(1, 64))]
        elif op == "append":
            out += data.draw(st.binary(min_size=1, max_size=64))
        elif op == "zero" and n:
            end = min(n, at + data.draw(st.integers(1, 32)))
            out[at:end] = bytes(end - at)
    return bytes(out)
