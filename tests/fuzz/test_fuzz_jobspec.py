"""Fuzzing the job-spec parser: random YAML text, byte and line mutations of the shipped
examples, and valid examples with one field replaced by a random JSON value. The parser
may accept or refuse; it may only ever raise a TeenetError (an InputError naming the spot)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import strategies as st

from fuzz_counts import fuzz, mutate, run_target
from teenet.jobspec import parse_job_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "configs" / "jobs").glob("*.yaml"))
TEXTS = [p.read_text() for p in EXAMPLES]
FAST, SLOW = 400, 4000

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
yaml_noise = st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#%@`? \n\tabcxyz019.~")), max_size=200)


def _parse(text):
    return lambda: parse_job_spec(text, source="fuzz.yaml")


def _line_mutation(data, text: str) -> str:
    lines = text.splitlines(keepends=True)
    op = data.draw(st.sampled_from(("drop", "dup", "swap", "indent", "dedent")))
    i = data.draw(st.integers(0, len(lines) - 1))
    if op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = data.draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "indent":
        lines[i] = "  " + lines[i]
    else:
        lines[i] = lines[i].lstrip()
    return "".join(lines)


def _replace_field(data, text: str) -> str:
    """Parse a valid example, put a random JSON value somewhere in it, dump it back as YAML."""
    doc = yaml.safe_load(text)
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    value = data.draw(json_values)
    if not path:
        doc = value
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return yaml.safe_dump(doc, allow_unicode=True)


def _one_example(data, counter):
    kind = data.draw(st.sampled_from(("noise", "text", "bytes", "lines", "field")))
    base = data.draw(st.sampled_from(TEXTS))
    if kind == "noise":
        subject = data.draw(st.one_of(yaml_noise, st.text(max_size=300)))
    elif kind == "text":
        subject = mutate(data, base.encode()).decode("utf-8", errors="replace")
    elif kind == "bytes":
        subject = mutate(data, base.encode())  # may be invalid UTF-8
    elif kind == "lines":
        subject = _line_mutation(data, base)
    else:
        subject = _replace_field(data, base)
    accepted, spec = run_target(counter, _parse(subject))
    if accepted:  # whatever it accepts is a whole spec
        assert spec.name and spec.function and spec.inputs


def _fuzz(name: str, examples: int) -> None:
    counter = fuzz(name, examples, _one_example)
    assert counter.refused, "no mutation was refused: the fuzzer did not reach the parser's checks"


def test_the_examples_parse():
    assert len(EXAMPLES) >= 3
    for p in EXAMPLES:
        assert parse_job_spec(p).name


def test_fuzz_job_spec_parser():
    _fuzz("job-spec parser", FAST)


@pytest.mark.slow
def test_fuzz_job_spec_parser_long():
    _fuzz("job-spec parser (long)", SLOW)
