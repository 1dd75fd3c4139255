"""Reading a job's `params` mapping into typed values, naming the field on every error.

Unknown keys are refused (`done()`): a typo in a job spec must not silently fall back to
a default the owners did not read.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from teenet.errors import InputError

_MISSING: Any = object()


class ParamReader:
    """A cursor over one mapping of params at a dotted path such as `params.dp`."""

    def __init__(self, values: Any, path: str = "params") -> None:
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise InputError(f"expected a mapping, found {type(values).__name__}", field=path)
        self.values = values
        self.path = path
        self._seen: set[str] = set()

    def field(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return name in self.values and self.values[name] is not None

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._seen.add(name)
        if not self.has(name):
            if default is _MISSING:
                raise InputError("is required", field=self.field(name))
            return default
        return self.values[name]

    def text(self, name: str, *, choices: tuple[str, ...] | None = None,
             default: Any = _MISSING) -> str:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            raise InputError(f"expected a non-empty string, found {type(value).__name__}",
                             field=self.field(name))
        if choices is not None and value not in choices:
            raise InputError(f"expected one of {', '.join(choices)}, found '{value}'",
                             field=self.field(name))
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise InputError(f"expected true or false, found {type(value).__name__}",
                             field=self.field(name))
        return value

    def number(self, name: str, *, default: Any = _MISSING, above: float | None = None,
               at_least: float | None = None, below: float | None = None) -> float:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"expected a finite number, found {value!r}", field=self.field(name))
        value = float(value)
        bounds = []
        if above is not None:
            bounds.append(f"> {above:g}")
        if at_least is not None:
            bounds.append(f">= {at_least:g}")
        if below is not None:
            bounds.append(f"< {below:g}")
        if (above is not None and not value > above) or (at_least is not None and value < at_least) \
                or (below is not None and not value < below):
            raise InputError(f"expected a number {' and '.join(bounds)}, found {value:g}",
                             field=self.field(name))
        return value

    def integer(self, name: str, *, default: Any = _MISSING, at_least: int | None = None) -> int:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"expected an integer, found {value!r}", field=self.field(name))
        if at_least is not None and value < at_least:
            raise InputError(f"expected an integer >= {at_least}, found {value}", field=self.field(name))
        return value

    def names(self, name: str, *, default: Any = _MISSING) -> tuple[str, ...] | None:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return None if default is None else tuple(default)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise InputError(f"expected a list of names, found {type(value).__name__}",
                             field=self.field(name))
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise InputError("expected a non-empty string", field=f"{self.field(name)}[{i}]")
        if len(set(value)) != len(value):
            raise InputError("names must not repeat", field=self.field(name))
        return tuple(value)

    def section(self, name: str) -> "ParamReader | None":
        """The nested mapping `name`, or None when absent."""
        value = self.raw(name, None)
        return None if value is None else ParamReader(value, self.field(name))

    def sections(self, name: str, *, default: Any = _MISSING) -> list["ParamReader"]:
        """A list of nested mappings, each with its own indexed path."""
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return []
        if not isinstance(value, (list, tuple)):
            raise InputError(f"expected a list, found {type(value).__name__}", field=self.field(name))
        return [ParamReader(item, f"{self.field(name)}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        """Refuse keys this reader never asked for."""
        unknown = sorted(str(k) for k in self.values if k not in self._seen)
        if unknown:
            raise InputError(f"unknown parameter(s): {', '.join(unknown)}", field=self.path)
