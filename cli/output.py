"""How commands print: rich for people, `--json` for programs. One place for both."""

from __future__ import annotations

import json
from typing import Any, Callable

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)

JSON_HELP = "Print machine-readable JSON instead of text."


def emit(data: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    """Print `data` as JSON if asked, else let `render` draw it for a person."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(console)
