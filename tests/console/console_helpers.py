"""Helpers for the console's tests: finding Chromium, the sandbox's consoles, the analyst's CLI.

Playwright drives Debian's Chromium with the driver its pip wheel ships; Playwright's own
browser download is not used.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A train job over the bank's and the insurer's tables: the bank's rules approve it, the
# insurer's do not (its auto-approve rule covers psi and aggregate only), so it waits there.
CLAIMS_MODEL = """\
name: claims-model
function: train
compute: compute-1
inputs:
  - {party: bank,    table: customers, key: customer_id, columns: [age, income, defaulted]}
  - {party: insurer, table: policies,  key: customer_id, columns: [premium, claims]}
params: {layout: vertical, model: logistic_regression,
         label: {party: bank, column: defaulted}, test_fraction: 0.2, seed: 7}
release:
  - {kind: model,   to: [analyst, bank]}
  - {kind: metrics, to: [analyst, bank, insurer]}
"""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("TEENET_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Console:
    name: str
    url: str           # "http://127.0.0.1:PORT" (no trailing slash)
    token: str


@dataclass
class ConsoleNetwork:
    directory: Path
    consoles: dict[str, Console]

    def submit(self, capsys, spec_text: str, name: str) -> str:
        from teenet.cli.main import main

        path = self.directory / "jobs" / f"{name}.yaml"
        path.write_text(spec_text)
        capsys.readouterr()
        code = main(["job", "submit", "--config", str(self.directory / "analyst.yaml"), str(path), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)["job_id"]

    def status(self, capsys, job_id: str) -> dict:
        from teenet.cli.main import main

        capsys.readouterr()
        code = main(["job", "status", job_id, "--config", str(self.directory / "analyst.yaml"), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def node_config(directory: Path, name: str) -> dict:
    return yaml.safe_load((directory / f"{name}.yaml").read_text())
