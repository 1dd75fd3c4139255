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


COUNTS: dict[str, Outcome] = {}


def outcome(name: str) -> Outcome:
    """A fresh counter for one test (a re-run replaces the old figures)."""
    COUNTS[name] = Outcome()
    return COUNTS[name]


def run_target(counter: Outcome, fn: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result) if `fn` accepted its input, (False, error) if it refused it cleanly.
    Any other exception propagates: it is a crash."""
    counter.total += 1
    try:
        result = fn()
    except TeenetError as exc:
        counter.refused[type(exc).__name__] += 1
        assert str(exc).strip(), "a refusal must say why"
        return False, exc
    counter.accepted += 1
    return True, result


def fuzz(name: str, examples: int, one_example: Callable[[st.DataObject, Outcome], None]) -> Outcome:
    """Run `one_example` on `examples` derandomised hypothesis examples; return the counts."""
    from hypothesis import HealthCheck, given, settings

    counter = outcome(name)

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def run(data):
        one_example(data, counter)

    run()
    assert counter.total >= examples * 0.9, counter
    return counter


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
