"""pyarrow (about 0.3 s to import) loads only where a table is sealed or opened: key
negotiation, sealed bytes, releases and fetching a JSON or ONNX result do without it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow  # a fresh interpreter, so nothing this test session imported counts
def test_the_result_path_does_not_import_pyarrow_until_a_table_is_sealed():
    code = (
        "import sys\n"
        "import teenet.negotiation, teenet.release, teenet.sealed_bytes, teenet.node.results, teenet.sealing as s\n"
        "assert 'pyarrow' not in sys.modules, 'imported at module level'\n"
        "import pyarrow as pa\n"
        "assert s.pa.Schema is pa.Schema  # the stand-in resolves to pyarrow itself\n"
        "assert s.pa is pa  # and is replaced by it after the first read\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
