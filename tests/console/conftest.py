"""Fixtures for the console's tests: a sandbox with every console on, and a headless Chromium.

Chromium is Debian's (`apt-get install chromium`; `bash scripts/setup.sh --dev` installs it
where apt is available and it runs as root) or the one TEENET_CHROMIUM names. Without one
the browser tests skip and say how to install it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from console_helpers import CHROMIUM_FLAGS, Console, ConsoleNetwork, chromium_path


@pytest.fixture(scope="module")
def console_network(tmp_path_factory):
    from teenet.cli.sandbox import console_urls, down_sandbox, init_sandbox, up_sandbox

    d = tmp_path_factory.mktemp("console-sandbox")
    init_sandbox(d, rows=2000)
    up_sandbox(d)
    try:
        consoles = {}
        for name, where in console_urls(d).items():
            consoles[name] = Console(name, where["url"].rstrip("/"), Path(where["token_file"]).read_text().strip())
        yield ConsoleNetwork(d, consoles)
    finally:
        down_sandbox(d)


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium here: `apt-get install chromium` (or `bash scripts/setup.sh --dev` as root), "
                    "or set TEENET_CHROMIUM to a Chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `pip install -e '.[dev]'`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()
