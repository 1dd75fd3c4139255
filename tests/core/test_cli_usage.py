"""Usage errors of the `teenet` command: one clear message and exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from teenet.cli.main import main


@pytest.mark.parametrize("argv, expected", [
    (["job", "submit"], "Missing argument"),
    (["job", "submit", "x.yaml", "--bogus"], "No such option: --bogus"),
    (["no-such-group"], "No such command"),
    (["approvals", "approve"], "Missing argument"),
])
def test_a_usage_error_is_one_message_and_exit_code_2(argv, expected, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert expected in err and "Traceback" not in err + out


def test_the_installed_command_reports_usage_errors_without_a_traceback():
    done = subprocess.run([sys.executable, "-m", "teenet.cli.main", "job", "status"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "Missing argument" in done.stderr and "Traceback" not in done.stderr
