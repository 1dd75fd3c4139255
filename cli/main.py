"""The one `teenet` command. Each command group is a module of its own in this package;
errors are handled once, here: one red line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

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
    ("demo", "demo", "Run a PSI, an aggregate and a joint training job end to end, then stop."),
]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
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


for _module, _name, _help in COMMAND_GROUPS:
    _mod = importlib.import_module(f"teenet.cli.{_module}")
    if isinstance(_mod.app, typer.Typer):
        app.add_typer(_mod.app, name=_name, help=_help)


# click's ClickException (usage errors, bad parameters). Typer 0.29 vendors click instead of
# depending on it, so take the class from typer's own BadParameter rather than `import click`.
_CLICK_EXCEPTION: type = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a `TeenetError` anywhere becomes one red line and exit code 1."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app(args=argv, standalone_mode=False)
    except TeenetError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        return 1
    except (typer.Exit, SystemExit) as exc:  # click raises these for --help, --version, typer.Exit
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except typer.Abort:
        err.print("[red]aborted[/red]")
        return 1
    except Exception as exc:  # click usage errors
        if isinstance(exc, _CLICK_EXCEPTION):
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, (OSError,)):
            err.print(f"[red]error:[/red] {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}")
            return 1
        raise
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
