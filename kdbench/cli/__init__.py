"""The ``kdbench`` command: one Typer app, sub-apps named by noun.

Each command is a thin wrapper over an importable function with the same arguments. Errors
caused by input are printed as one clear message and exit non-zero, without a traceback. Heavy
libraries are imported inside the commands that need them, so that ``kdbench --help``,
``plugins``, ``protocol validate`` and ``plan`` answer in about a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kdbench import __version__
from kdbench.cli import data, deploy, evaluate, plan, plugins, protocol, report, run, tune
from kdbench.cli.common import State, err_console, esc
from kdbench.errors import KdbenchError

app = typer.Typer(
    name="kdbench",
    help="Benchmark brain-tumour segmentation strategies with missing MRI modalities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(protocol.app, name="protocol")
app.add_typer(data.app, name="data")
app.command("plugins")(plugins.plugins)
app.command("plan")(plan.plan)
app.command("run")(run.run)
app.command("evaluate")(evaluate.evaluate)
app.command("export")(deploy.export)
app.command("predict")(deploy.predict)
app.command("report")(report.report)
app.command("tune")(tune.tune)
app.command("status")(run.status)
app.add_typer(run.app, name="job")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kdbench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    plugins_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--plugins-dir",
            metavar="DIR",
            help="Also load every *.py plugin file in this folder (repeatable; "
            "KDBENCH_PLUGINS_DIR too).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """kdbench: one protocol, one nnU-Net backbone, every strategy, paired statistics."""
    ctx.obj = State(plugins_dirs=list(plugins_dir or []))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning input errors into a clean exit.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``); tests call ``main([...])`` in-process.

    Raises:
        SystemExit: with the exit status, except after a command that succeeds.
    """
    try:
        app(args=argv, prog_name="kdbench", standalone_mode=False)
    except KdbenchError as exc:
        err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):
            # click turns any EOFError into Abort; outside a prompt it is a file that ends early.
            err_console.print(f"[bold red]error:[/] a file ended early ({esc(exc.__cause__)}); "
                              "it is truncated: re-download or re-export it", highlight=False,
                              soft_wrap=True)
            sys.exit(KdbenchError.exit_code)
        err_console.print("aborted")
        sys.exit(130)
    except _usage_error_types() as exc:
        # An unknown command or option, a missing argument, a bad value: click's usage message.
        exc.show()
        sys.exit(exc.exit_code)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """click's exception base, as Typer raises it: Typer >= 0.29 vendors click as
    ``typer._click``, earlier releases raise the installed click's own class."""
    import click

    types: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as vendored
    except ImportError:  # Typer < 0.29 uses the installed click
        pass
    else:
        types.append(vendored)
    return tuple(types)


if __name__ == "__main__":
    main()
