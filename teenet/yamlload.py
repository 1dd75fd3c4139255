"""The one YAML loader for every file teenet reads, and typed readers that keep line numbers.

YAML is read as plain JSON-like data (mappings with string keys, lists, strings, numbers,
booleans, null) and nothing more. Hostile documents are refused before anything is built:
anchors and aliases (the billion-laughs bomb), more than one document, documents over
1 MiB, nesting deeper than 32, non-string or duplicate keys, custom tags, NaN/infinity.

`load_yaml` returns a `LocatedDocument`: the data plus the line of every field, so a schema
can say "jobs/x.yaml:7, field 'inputs[1].table': ..." through the `Located` readers.
`dump_yaml` writes YAML that `load_yaml` accepts (no anchors, even for shared objects).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from yaml.constructor import SafeConstructor

from teenet.errors import InputError

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 32

FieldPath = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str")}


def field_name(path: Sequence[str | int]) -> str:
    """("inputs", 1, "table") -> "inputs[1].table"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = clip_text(part)
            out += f".{shown}" if out else shown
    return out


@dataclass(frozen=True)
class LocatedDocument:
    """Parsed data and the 1-based line of each field path (mapping keys, list items)."""

    source: str
    data: Any
    lines: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (None for JSON input)."""
        key = tuple(path)
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]

    def error(self, path: Sequence[str | int], message: str) -> InputError:
        return InputError(message, source=self.source, line=self.line_of(path),
                          field=field_name(path) or None)

    def root(self) -> "Located":
        return Located(self, (), self.data)


def load_yaml(path_or_text: str | bytes | os.PathLike[str], *, source: str | None = None) -> LocatedDocument:
    """Load one YAML document safely. A `Path` is read from disk; a `str`/`bytes` is the text."""
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
        where = source or str(path)
        raw = _read_bounded(path, where)
    else:
        where = source or "<text>"
        raw = path_or_text.encode("utf-8") if isinstance(path_or_text, str) else bytes(path_or_text)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError(f"document is {len(raw)} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) is accepted",
                         source=where)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (bad byte at offset {exc.start})", source=where) from None
    try:
        _scan_events(text, where)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, where) from None
    except yaml.YAMLError as exc:
        raise _reader_error(exc, text, where) from None
    lines: dict[FieldPath, int] = {}
    if root is None:
        return LocatedDocument(where, None, lines)
    lines[()] = root.start_mark.line + 1
    data = _build(root, (), lines, where, SafeConstructor())
    return LocatedDocument(where, data, lines)


class _NoAliasDumper(yaml.SafeDumper):
    """PyYAML writes a repeated object as &anchor/*alias, which `load_yaml` refuses."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any, *, header: str = "") -> str:
    """YAML text for JSON-like `data` that `load_yaml` reads back: no anchors or aliases.

    Use it for every YAML file teenet writes (a plain yaml.safe_dump of a structure that
    shares a list or mapping emits aliases, and the file would then be refused).
    """
    text = yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, width=100, allow_unicode=True)
    return header + text


def _read_bounded(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror}", source=where) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError(f"file is larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB); refused", source=where)
    return raw


def _scan_events(text: str, where: str) -> None:
    """Refuse aliases, anchors, extra documents and deep nesting from the event stream.

    This runs before any node is built, so an alias bomb costs one event, not memory.
    """
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise InputError(f"YAML alias '*{event.anchor}' refused: anchors and aliases are not allowed",
                             source=where, line=line)
        if getattr(event, "anchor", None) is not None:
            raise InputError(f"YAML anchor '&{event.anchor}' refused: anchors and aliases are not allowed",
                             source=where, line=line)
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise InputError("a second YAML document ('---') refused: one document per file",
                                 source=where, line=line)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"nesting deeper than {MAX_DEPTH} levels refused", source=where, line=line)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _syntax_error(exc: yaml.MarkedYAMLError, where: str) -> InputError:
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
    if mark is None:
        return InputError(f"invalid YAML: {problem}", source=where)
    return InputError(f"invalid YAML: {problem} (column {mark.column + 1})", source=where, line=mark.line + 1)


def _reader_error(exc: yaml.YAMLError, text: str, where: str) -> InputError:
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        return InputError("invalid YAML: a character YAML does not allow", source=where, line=line)
    return InputError("invalid YAML: " + " ".join(str(exc).split())[:200], source=where)


def _build(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], where: str,
           constructor: SafeConstructor) -> Any:
    line = node.start_mark.line + 1
    at = {"source": where, "line": line, "field": field_name(path) or None}
    if isinstance(node, yaml.MappingNode):
        if node.tag != _TAG + "map":
            raise InputError(f"YAML tag '{node.tag}' refused: only plain mappings are allowed", **at)
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _TAG + "str"):
                scalar = isinstance(key_node, yaml.ScalarNode)
                shown = f"'{clip_text(key_node.value)}'" if scalar else "a collection"
                hint = " (quote it)" if scalar else ""
                if key_node.tag == _TAG + "merge":
                    hint = " (merge keys '<<' are not supported)"
                raise InputError(f"key {shown} is not a string{hint}", source=where, line=key_line,
                                 field=field_name(path) or None)
            key = key_node.value
            if key in out:
                raise InputError(f"duplicate key '{clip_text(key)}' (first at line {first_line[key]}, "
                                 f"again at line {key_line})", source=where, line=key_line, field=field_name(path + (key,)))
            first_line[key] = key_line
            lines[path + (key,)] = key_line
            out[key] = _build(value_node, path + (key,), lines, where, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _TAG + "seq":
            raise InputError(f"YAML tag '{node.tag}' refused: only plain lists are allowed", **at)
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            items.append(_build(item, path + (index,), lines, where, constructor))
        return items
    if node.tag == _TAG + "timestamp":
        return node.value  # a date is kept as the text written: teenet data is JSON data
    if node.tag not in _SCALAR_TAGS:
        raise InputError(f"YAML tag '{node.tag}' refused: only strings, numbers, booleans and null", **at)
    try:
        value = SafeConstructor.yaml_constructors[node.tag](constructor, node)
    except (ValueError, yaml.YAMLError):
        raise InputError(f"cannot read {node.tag[len(_TAG):]} value", **at) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError("NaN and infinity are not allowed (expected a finite number)", **at)
    return value


@dataclass(frozen=True)
class Located:
    """A value inside a document and its field path: the typed readers every schema uses.

    Each reader returns the value or raises one InputError naming the source, the line and
    the field, and saying what was expected.
    """

    doc: LocatedDocument
    path: FieldPath
    value: Any

    @property
    def field(self) -> str:
        return field_name(self.path)

    @property
    def line(self) -> int | None:
        return self.doc.line_of(self.path)

    def error(self, message: str) -> InputError:
        return self.doc.error(self.path, message)

    def child(self, key: str | int, value: Any) -> "Located":
        return Located(self.doc, self.path + (key,), value)

    def _type_error(self, expected: str, *, text_expected: bool = False) -> InputError:
        found = _describe(self.value)
        hint = ""
        if text_expected and isinstance(self.value, bool):
            hint = " (YAML reads yes/no/on/off/true/false as booleans; quote it)"
        elif text_expected and isinstance(self.value, (int, float)):
            hint = " (quote it to make it text)"
        return self.error(f"expected {expected}, found {found}{hint}")

    def mapping(self, *, required: Iterable[str] = (), optional: Iterable[str] = (),
                what: str = "a mapping") -> dict[str, "Located"]:
        """A mapping with exactly these fields allowed; unknown ones are refused by name."""
        required = tuple(required)
        allowed = set(required) | set(optional)
        if not isinstance(self.value, dict):
            raise self._type_error(what)
        for key in self.value:
            if key not in allowed:
                raise self.doc.error(self.path + (key,),
                                     f"unknown field '{clip_text(key)}'; allowed fields: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in self.value:
                raise self.doc.error(self.path + (key,), f"missing required field '{key}'")
        return {key: self.child(key, value) for key, value in self.value.items()}

    def entries(self, *, max_items: int, what: str = "a mapping") -> dict[str, "Located"]:
        """A mapping whose keys are data (names), not fixed fields."""
        if not isinstance(self.value, dict):
            raise self._type_error(what)
        if len(self.value) > max_items:
            raise self.error(f"at most {max_items} entries allowed, found {len(self.value)}")
        return {key: self.child(key, value) for key, value in self.value.items()}

    def sequence(self, *, min_items: int = 0, max_items: int, what: str = "a list") -> list["Located"]:
        if not isinstance(self.value, list):
            raise self._type_error(what)
        if len(self.value) < min_items:
            raise self.error(f"expected at least {min_items} item(s), found {len(self.value)}")
        if len(self.value) > max_items:
            raise self.error(f"at most {max_items} items allowed, found {len(self.value)}")
        return [self.child(i, v) for i, v in enumerate(self.value)]

    def string(self, *, pattern: re.Pattern[str] | None = None, what: str = "a string",
               max_length: int = 4096, choices: Iterable[str] | None = None) -> str:
        if not isinstance(self.value, str):
            raise self._type_error(what, text_expected=True)
        if choices is not None:
            options = tuple(choices)
            if self.value not in options:
                raise self.error(f"'{clip_text(self.value)}' is not one of: {', '.join(options)}")
            return self.value
        if not self.value:
            raise self.error(f"expected {what}, found an empty string")
        if len(self.value) > max_length:
            raise self.error(f"expected {what} of at most {max_length} characters, found {len(self.value)}")
        if pattern is not None and not pattern.fullmatch(self.value):
            raise self.error(f"'{clip_text(self.value)}' is not {what}")
        return self.value

    def strings(self, *, pattern: re.Pattern[str] | None = None, what: str = "a string",
                min_items: int = 0, max_items: int, unique: bool = True) -> tuple[str, ...]:
        """A list of strings; with `unique`, a repeated item is refused naming both positions."""
        out: list[str] = []
        for item in self.sequence(min_items=min_items, max_items=max_items, what=f"a list of {what}s"):
            value = item.string(pattern=pattern, what=what)
            if unique and value in out:
                raise item.error(f"'{clip_text(value)}' is listed twice (also at {self.field}[{out.index(value)}])")
            out.append(value)
        return tuple(out)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self._type_error("true or false")
        return self.value

    def integer(self, *, minimum: int, maximum: int) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self._type_error("an integer")
        if not minimum <= self.value <= maximum:
            raise self.error(f"expected an integer from {minimum} to {maximum}, found {self.value}")
        return self.value

    def number(self, *, minimum: float, maximum: float) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise self._type_error("a number")
        if not (math.isfinite(self.value) and minimum <= self.value <= maximum):
            raise self.error(f"expected a number from {minimum} to {maximum}, found {self.value}")
        return float(self.value)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string '{clip_text(value)}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def clip_text(text: str, limit: int = 80) -> str:
    """User text as shown in an error: control characters escaped (one line), bounded."""
    flat = text.encode("unicode_escape").decode("ascii")
    return flat if len(flat) <= limit else flat[:limit] + "..."
