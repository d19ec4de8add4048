"""The `orc` command line (docs/cli.md): one typer app, its commands in the modules of
this package, errors reported once in `main` with the exit codes of `ExitCode`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orc import __version__
from orc.cli import auth, packages, runs, specs, workflows
from orc.cli.common import ExitCode, Failure, State, report
from orc.client import ClientError
from orc.config import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="orc",
    help="The orchestrator's command line: workflows, runs and logs over the REST API.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help and usage errors: nothing decorative in CI logs
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orc {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    context: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            envvar="ORC_CONTEXT",
            help="the saved context to use (default: the current one)",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the server, over ORC_SERVER and the context's"),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(metavar="SLUG", help="the tenant, over ORC_TENANT and the context's"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Configuration: --context/--server/--tenant, then ORC_SERVER, ORC_TENANT, ORC_TOKEN,
    ORC_CONTEXT, then the config file (ORC_CONFIG, default ~/.config/orc/config.toml)."""
    ctx.obj = State(context=context, server=server, tenant=tenant)


auth.register(app)
specs.register(app)
workflows.register(app)
runs.register(app)
app.add_typer(packages.packages_app, name="packages")


def main() -> None:
    """The console script: run the app; report errors as docs/cli.md says."""
    try:
        app(prog_name="orc")
    except (ClientError, ConfigError, Failure) as exc:
        sys.exit(int(report(exc)))
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
