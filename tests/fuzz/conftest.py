"""Fuzzing helpers: count every example each fuzz target ran and say so at the end of the run."""

from __future__ import annotations

from fuzz_counts import COUNTS


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    terminalreporter.section("fuzzing: examples run per target")
    for name, outcome in sorted(COUNTS.items()):
        refused = ", ".join(f"{k} {v}" for k, v in sorted(outcome.refused.items()))
        terminalreporter.write_line(f"{name}: {outcome.total} examples, {outcome.accepted} accepted, "
                                    f"{sum(outcome.refused.values())} refused cleanly ({refused})")
