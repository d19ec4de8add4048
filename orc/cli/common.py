"""What every `orc` command shares: the global options, the client they make, exit codes,
`-o`, and how errors are shown."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any

import typer

from orc.client import ApiError, Client, ClientError, ConnectionFailed
from orc.config import ConfigError, Settings, resolve
from orc.output import Format, error

__all__ = [
    "ExitCode",
    "Failure",
    "OutputOption",
    "State",
    "parse_params",
    "report",
    "state",
]


class ExitCode(IntEnum):
    """docs/cli.md, "Exit codes": scripts rely on these."""

    OK = 0
    RUN_FAILED = 1  # the run (or task) waited for did not succeed
    USAGE = 2  # bad options or configuration, or specs that do not validate
    API = 3  # the server refused the request (4xx)
    SERVER = 4  # the server failed (5xx) or could not be reached
    INTERRUPTED = 130  # Ctrl-C


class Failure(Exception):
    """A command's own error: its message on stderr, then its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message, self.code = message, code


OutputOption = Annotated[
    Format,
    typer.Option("--output", "-o", help="table for people; json or yaml for scripts"),
]


@dataclass
class State:
    """The global options, and the client made from them on first use."""

    context: str | None = None
    server: str | None = None
    tenant: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _client: Client | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = resolve(
                self.env, context=self.context, server=self.server, tenant=self.tenant
            )
        return self._settings

    def client(self, *, tenant_needed: bool = True) -> Client:
        if self._client is None:
            settings = self.settings
            if tenant_needed and not settings.tenant:
                raise ConfigError(
                    "no tenant: pass --tenant SLUG, set ORC_TENANT, or log in to a tenant"
                )
            self._client = Client(
                settings.server, settings.token, settings.tenant, retries=self._retries()
            )
        return self._client

    def _retries(self) -> int:
        raw = self.env.get("ORC_RETRIES", "3")
        if not raw.isdigit():
            raise ConfigError(f"ORC_RETRIES={raw!r}: expected a whole number, 0 or more")
        return int(raw)

    def command(self, *words: str | int) -> str:
        """An `orc` command line with the global options this one was given, to print as
        advice (e.g. how to cancel a run), so it works as printed."""
        parts = ["orc"]
        for option, value in (
            ("--context", self.context),
            ("--server", self.server),
            ("--tenant", self.tenant),
        ):
            if value:
                parts += [option, value]
        return shlex.join([*parts, *(str(w) for w in words)])


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    assert found is not None, "the root callback sets the State"
    return found


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """`-p key=value`: a value that reads as JSON (3, true, null, "007", [1, 2],
    {"a": 1}) is sent as that; anything else as the string it is."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise Failure(f"-p {pair!r}: expected key=value, e.g. -p region=eu")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def report(exc: Exception) -> ExitCode:
    """Show an error the way every command does; the exit code it means."""
    if isinstance(exc, Failure):
        error(exc.message)
        return exc.code
    if isinstance(exc, ApiError):
        detail = f": {exc.detail}" if exc.detail and not exc.errors else ""
        error(f"{exc.status} {exc.title}{detail}")
        for item in exc.errors:
            where = item.get("path") or "(request)"
            prefix = f"{item['file']}: " if item.get("file") else ""
            typer.echo(f"  {prefix}{where}: {item.get('message', '')}", err=True)
        return ExitCode.SERVER if exc.status >= 500 else ExitCode.API
    if isinstance(exc, ConnectionFailed):
        error(str(exc))
        return ExitCode.SERVER
    if isinstance(exc, ConfigError | ClientError):
        error(str(exc))
        return ExitCode.USAGE
    raise exc
