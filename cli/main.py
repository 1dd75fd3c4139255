"""The one `teenet` command. Each command group is a module of its own in this package;
errors are handled once, here: one red line on stderr and a non-zero exit.

Start-up is kept short on purpose (a user's script runs `teenet` many times): a group's
module is imported only when that group is invoked (`_LazyGroups`), `--help` lists every
group from `COMMAND_GROUPS` without importing any of them, and help is plain click text
rather than rich panels (rich's help renderer alone costs about 0.2 s per call).

Exit codes: 0 only when what was asked succeeded; 1 when teenet refused or it failed (a
job that ended failed or cancelled, a broken audit chain, unreachable services, bad
input); 2 for usage errors (a missing argument, an unknown option or command). Each
command's own cases are in docs/cli.md.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from teenet import __version__
from teenet.errors import TeenetError

# (module in teenet.cli, command-group name, help). A module exposes `app` (a Typer).
COMMAND_GROUPS: list[tuple[str, str, str]] = [
    ("enclave", "enclave", "The enclave's code measurement."),
    ("attest", "attest", "Verify attestation evidence."),
    ("job", "job", "Validate, submit and follow joint jobs; fetch verified results."),
    ("approvals", "approvals", "An owner's pending approvals: list, approve, reject."),
    ("budget", "budget", "A data node's privacy budget per table: show, raise."),
    ("audit", "audit", "Show and verify hash-chained audit logs."),
    ("node", "node", "Run an institution's node daemon."),
    ("coordinator", "coordinator", "Run the (untrusted) coordinator."),
    ("sandbox", "sandbox", "A whole consortium on this machine, on loopback."),
    ("lineage", "lineage", "What went into a result: its lineage, verified offline."),
    ("catalog", "catalog", "An owner's table registrations: fingerprints in its witnessed log."),
    ("demo", "demo", "Run a PSI, an aggregate and a joint training job end to end, then stop."),
]
_GROUPS = {name: (module, help_) for module, name, help_ in COMMAND_GROUPS}


def _plain_help(command: Any) -> None:
    """Plain click help for a command and everything under it (see the module docstring)."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class _LazyGroups(TyperGroup):
    """The root group: imports a command group's module only when that group is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*_GROUPS, *(n for n in super().list_commands(ctx) if n not in _GROUPS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _GROUPS:
            return super().get_command(ctx, cmd_name)
        if cmd_name not in self.commands:
            module, help_ = _GROUPS[cmd_name]
            sub_app = importlib.import_module(f"teenet.cli.{module}").app
            group = typer.main.get_group(sub_app)
            group.name = cmd_name
            group.help = group.help or help_
            _plain_help(group)
            self.commands[cmd_name] = group
        return self.commands[cmd_name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The group list from COMMAND_GROUPS: listing must not import every module."""
        rows = [(name, help_) for name, (_, help_) in _GROUPS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(cls=_LazyGroups, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="teenet: joint modelling on data no party may show another, inside attested TEEs.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"teenet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# click's ClickException (usage errors, bad parameters). Typer 0.29 vendors click instead of
# depending on it, so take the class from typer's own BadParameter rather than `import click`.
_CLICK_EXCEPTION: type = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _error_line(message: str) -> None:
    """One red line on stderr (rich only on this path: it costs ~40 ms to import)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}")


def _rpc_message(exc: Any) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    if code is not None and code.name == "UNAVAILABLE":
        return "the service is not reachable (is it running? `teenet sandbox status DIR` shows a sandbox's)"
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return f"the service refused: {details}" + (f" ({code.name})" if code is not None else "")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (module docstring). A `TeenetError` anywhere
    becomes one red line and 1; a usage error click's message and 2."""
    try:
        # Without standalone_mode click *returns* the code of a `typer.Exit(n)` raised in a
        # command (and the command's own return value otherwise): keep it, never drop it.
        code = app(args=argv, standalone_mode=False)
    except TeenetError as exc:
        _error_line(str(exc))
        return 1
    except (typer.Exit, SystemExit) as exc:  # raised outside click's own handling
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except typer.Abort:
        _error_line("aborted")
        return 1
    except KeyboardInterrupt:
        _error_line("interrupted")
        return 130
    except Exception as exc:  # click usage errors
        if isinstance(exc, _CLICK_EXCEPTION):
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        grpc = sys.modules.get("grpc")  # imported only by the commands that talk to a service
        if grpc is not None and isinstance(exc, grpc.RpcError):
            _error_line(_rpc_message(exc))
            return 1
        if isinstance(exc, OSError):
            _error_line(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "))
            return 1
        raise
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


# Set by command groups whose commands leave nothing to clean up when they return (a client's
# replies are in, its files written and closed): the console script then ends the process
# without the interpreter's teardown of grpc, cryptography and protobuf (~0.1 s a call).
_quick_exit = False


def quick_exit_allowed() -> None:
    """Called by such a group (teenet.cli.job); daemons and the sandbox never call it."""
    global _quick_exit
    _quick_exit = True


def entrypoint() -> None:
    code = main()
    if _quick_exit:
        import os

        logging.shutdown()  # what atexit would do for the log handlers
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: what was written is all the reader gets
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
