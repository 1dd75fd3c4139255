"""How commands print: rich for people, `--json` for programs. One place for both.

rich is imported on the first print, not when a command module loads: a command that
talks to the coordinator reaches it before paying for rich (about 40 ms, docs/cli.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from rich.console import Console

JSON_HELP = "Print machine-readable JSON instead of text."


class _FirstUseConsole:
    """The one stdout `rich.console.Console`, made when something first prints with it."""

    _console: "Console | None" = None

    def __getattr__(self, name: str) -> Any:
        if _FirstUseConsole._console is None:
            from rich.console import Console

            _FirstUseConsole._console = Console(highlight=False, soft_wrap=True)
        return getattr(_FirstUseConsole._console, name)


console: "Console" = _FirstUseConsole()  # type: ignore[assignment]


def emit(data: Any, as_json: bool, render: Callable[["Console"], None]) -> None:
    """Print `data` as JSON if asked, else let `render` draw it for a person."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(console)
