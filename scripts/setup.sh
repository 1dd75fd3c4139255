#!/usr/bin/env bash
# Create .venv and install teenet into it (editable). `--dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "teenet needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
  # The console's browser tests drive Debian's Chromium (Playwright's own download is not used).
  if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "installing Debian's chromium for the console's browser tests"
      (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null \
        || echo "could not install chromium; the browser tests will skip (see README)" >&2
    else
      echo "no chromium and no root apt: the console's browser tests will skip (see README)" >&2
    fi
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
echo "teenet installed in .venv ($(.venv/bin/teenet --version 2>/dev/null || echo 'cli not ready'))"
