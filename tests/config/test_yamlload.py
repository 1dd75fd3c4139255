"""The safe YAML loader: hostile documents are refused with one line naming where."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from teenet.errors import InputError
from teenet.yamlload import MAX_DEPTH, MAX_DOCUMENT_BYTES, dump_yaml, field_name, load_yaml


def refused(text: str | bytes | Path, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        load_yaml(text, source="t.yaml", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value), "an error is one line"
    return info.value


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_plain_document_keeps_line_numbers() -> None:
    doc = load_yaml("name: x\ninputs:\n  - {party: bank, table: t}\n  - party: telco\n    table: u\n", source="j.yaml")
    assert doc.data == {"name": "x", "inputs": [{"party": "bank", "table": "t"}, {"party": "telco", "table": "u"}]}
    assert doc.line_of(("inputs", 1, "table")) == 5
    assert doc.line_of(("inputs", 0, "table")) == 3
    # an absent field falls back to its nearest ancestor's line
    assert doc.line_of(("inputs", 1, "key")) == 4
    assert field_name(("inputs", 1, "table")) == "inputs[1].table"


def test_path_is_read_from_disk_and_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    assert load_yaml(path).data == {"a": 1}
    assert load_yaml(path).source == str(path)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    error = refused(tmp_path / "absent.yaml")
    assert "cannot read file" in str(error)


def test_billion_laughs_refused_fast_without_memory_growth() -> None:
    text = billion_laughs()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = refused(text)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "anchor '&a'" in str(error) and error.line == 1
    assert elapsed < 0.5
    assert peak < 2 * 1024 * 1024


def test_alias_without_anchor_is_refused() -> None:
    # The parser rejects an undefined alias only at compose time; the scan refuses it first.
    error = refused("a: 1\nb: *nowhere\n")
    assert "alias '*nowhere'" in str(error) and error.line == 2


def test_duplicate_keys_name_both_lines() -> None:
    error = refused("name: a\nfunction: psi\nname: b\n")
    assert error.line == 3 and error.field == "name"
    assert "first at line 1, again at line 3" in str(error)


def test_nested_duplicate_key_names_field() -> None:
    error = refused("params:\n  seed: 1\n  seed: 2\n")
    assert error.field == "params.seed" and error.line == 3


def test_huge_document_refused_text_and_file(tmp_path: Path) -> None:
    big = "a: '" + "x" * MAX_DOCUMENT_BYTES + "'\n"
    assert "1 MiB" in str(refused(big))
    path = tmp_path / "big.yaml"
    path.write_text(big)
    assert "1 MiB" in str(refused(path))


def test_deep_nesting_refused_with_line() -> None:
    deep = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 2) + "x\n"
    error = refused(deep)
    assert f"deeper than {MAX_DEPTH}" in str(error) and error.line == MAX_DEPTH + 1
    flow = "a: " + "[" * 100 + "]" * 100
    assert f"deeper than {MAX_DEPTH}" in str(refused(flow))


def test_nesting_at_limit_loads() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(text).data is not None


def test_more_than_one_document_refused() -> None:
    error = refused("a: 1\n---\nb: 2\n")
    assert "one document per file" in str(error) and error.line == 2


@pytest.mark.parametrize("text, shown", [("1: x\n", "'1'"), ("on: x\n", "'on'"), ("null: x\n", "'null'"),
                                         ("? [a, b]\n: x\n", "a collection")])
def test_non_string_keys_refused(text: str, shown: str) -> None:
    error = refused(text)
    assert f"key {shown} is not a string" in str(error) and error.line == 1


def test_merge_key_refused() -> None:
    assert "merge keys" in str(refused("base: 1\n<<: {a: 1}\n"))


def test_syntax_error_gives_line_and_column() -> None:
    error = refused("name: x\ninputs: [a, b\nrelease: 1\n")
    assert str(error).startswith("t.yaml:3: invalid YAML:") and "column" in str(error)


def test_tab_indentation_is_a_syntax_error() -> None:
    error = refused("a:\n\tb: 1\n")
    assert error.line == 2 and "invalid YAML" in str(error)


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system ['true']\n", "a: !!binary aGk=\n",
                                  "a: !!set {x, y}\n", "a: !custom 1\n"])
def test_custom_tags_refused(text: str) -> None:
    error = refused(text)
    assert "refused" in str(error) and error.field == "a" and error.line == 1


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_non_finite_numbers_refused(value: str) -> None:
    error = refused(f"seed: 1\nx: {value}\n")
    assert "finite" in str(error) and error.line == 2 and error.field == "x"


def test_dates_stay_text() -> None:
    assert load_yaml("since: 2024-01-31\n").data == {"since": "2024-01-31"}


def test_not_utf8_refused() -> None:
    assert "not UTF-8" in str(refused(b"a: \xff\xfe\n"))


def test_control_character_refused_with_line() -> None:
    error = refused("a: 1\nb: \x07\n")
    assert error.line == 2 and "invalid YAML" in str(error)


def test_empty_document_is_none() -> None:
    assert load_yaml("# only a comment\n").data is None


def test_dump_yaml_writes_no_aliases_for_shared_objects() -> None:
    shared = {"allow_simulated": True, "measurements": ["ab" * 48]}
    people = ["analyst", "bank"]
    data = {"a": shared, "b": {"policy": shared, "to": people}, "c": people}
    text = dump_yaml(data, header="# made by a test\n")
    assert "&" not in text and "*" not in text and text.startswith("# made by a test\n")
    assert load_yaml(text).data == data
