"""`orc login`, `orc whoami`, `orc context ...` and `orc tokens ...`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from orc.cli.common import Failure, OutputOption, state
from orc.client import Client, Token
from orc.config import ConfigFile, Context, config_path
from orc.output import Format, Table, emit, info, when

__all__ = ["context_app", "login", "register", "tokens_app", "whoami"]

context_app = typer.Typer(help="Named contexts: a server, a tenant and a token each.")
tokens_app = typer.Typer(help="API tokens of the tenant (admins).")

ContextName = Annotated[str, typer.Argument(metavar="NAME", help="a saved context")]


def login(
    ctx: typer.Context,
    server: Annotated[
        str,
        typer.Option(
            metavar="URL",
            envvar="ORC_SERVER",
            help="the service's address, e.g. https://orc.example.com",
        ),
    ],
    tenant: Annotated[
        str | None,
        typer.Option(metavar="SLUG", help="the tenant (default: the one the token is for)"),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", metavar="NAME", help="save it as (default: the tenant)"),
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the token from stdin instead of a prompt")
    ] = False,
) -> None:
    """Check an API token against the server and save it as a context (made current)."""
    if token_stdin:
        token = sys.stdin.read().strip()
    elif sys.stdin.isatty():
        token = typer.prompt("Token", hide_input=True).strip()
    else:
        raise Failure("no terminal to ask for the token on: pipe it in with --token-stdin")
    if not token:
        raise Failure("the token is empty")
    with Client(server, token) as client:
        me = client.me()
    bound = me["token"]["tenant"] if me["token"] else None
    if tenant and bound and tenant != bound:
        raise Failure(f"the token is bound to tenant {bound!r}, not {tenant!r}")
    tenant = tenant or bound
    if not tenant:
        raise Failure("the server did not say which tenant the token is for: pass --tenant")
    name = context or tenant
    path = config_path(state(ctx).env)
    config = ConfigFile.load(path)
    config.contexts[name] = Context(name, server.rstrip("/"), tenant, token)
    config.current = name
    config.save()
    role = me["token"]["role"] if me["token"] else "?"
    info(
        f"Logged in to {server} as {me['username']} (tenant {tenant}, role {role}); "
        f"context {name!r} saved in {path} and made current"
    )


def whoami(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Who the token is, on which server and tenant."""
    current = state(ctx)
    me = current.client(tenant_needed=False).me()
    settings = current.settings
    payload = {**me, "server": settings.server, "context": settings.context}

    def render() -> list[str]:
        lines = [
            f"user:     {me['username']}",
            f"server:   {settings.server}",
            f"context:  {settings.context or '(environment)'}",
        ]
        if me["token"]:
            token = me["token"]
            expires = when(token["expires_at"]) if token["expires_at"] else "never"
            lines += [
                f"tenant:   {token['tenant']}",
                f"role:     {token['role']}",
                f"token:    orc_{token['prefix']}_… (expires {expires})",
            ]
        return lines

    emit(output, payload, render)


@context_app.command("list")
def context_list(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """The saved contexts (tokens are not shown)."""
    config = ConfigFile.load(config_path(state(ctx).env))
    payload = [
        {
            "name": c.name,
            "server": c.server,
            "tenant": c.tenant,
            "current": c.name == config.current,
        }
        for c in config.contexts.values()
    ]
    rows = [
        ["*" if c["current"] else "", str(c["name"]), str(c["server"]), str(c["tenant"])]
        for c in payload
    ]
    emit(output, payload, lambda: Table(["CURRENT", "NAME", "SERVER", "TENANT"], rows))


@context_app.command("use")
def context_use(ctx: typer.Context, name: ContextName) -> None:
    """Make NAME the current context."""
    config = ConfigFile.load(config_path(state(ctx).env))
    config.context(name)
    config.current = name
    config.save()
    info(f"current context: {name}")


@context_app.command("delete")
def context_delete(ctx: typer.Context, name: ContextName) -> None:
    """Forget context NAME and its token (the token itself stays valid: revoke it on the
    server to end it)."""
    config = ConfigFile.load(config_path(state(ctx).env))
    config.context(name)
    del config.contexts[name]
    if config.current == name:
        config.current = None
    config.save()
    info(f"context {name!r} deleted")


def _expires_at(days: int | None) -> str | None:
    if days is None:
        return None
    if days < 1:
        raise Failure(f"--expires-in must be a whole number of days, 1 or more; got {days}")
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="a label for the token")],
    role: Annotated[str, typer.Option(help="viewer, operator, editor, admin or owner")],
    service_account: Annotated[
        str | None,
        typer.Option(help="a service account of the tenant to act as (default: yourself)"),
    ] = None,
    expires_in: Annotated[
        int | None, typer.Option(metavar="DAYS", help="expire after DAYS days (default: never)")
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a token; only the token goes to stdout (shown once: keep it now)."""
    client = state(ctx).client()
    token = client.create_token(
        name, role, service_account=service_account, expires_at=_expires_at(expires_in)
    )
    if output is Format.TABLE:
        info(
            f"token orc_{token['prefix']}_… for {token['username']!r} in {client.tenant!r}, "
            f"role {token['role']}; it is shown once"
        )
    emit(output, token, lambda: [str(token["token"])])


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """The tenant's tokens: metadata only."""
    tokens = state(ctx).client().list_tokens()

    def row(t: Token) -> list[str]:
        state_ = "revoked" if t["revoked_at"] else "active"
        return [
            f"orc_{t['prefix']}_…",
            t["name"],
            t["username"],
            t["role"],
            state_,
            when(t["expires_at"]) if t["expires_at"] else "never",
            when(t["last_used_at"]),
        ]

    columns = ["TOKEN", "NAME", "USER", "ROLE", "STATE", "EXPIRES", "LAST USED"]
    emit(output, tokens, lambda: Table(columns, [row(t) for t in tokens]))


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(whoami)
    app.add_typer(context_app, name="context")
    app.add_typer(tokens_app, name="tokens")
