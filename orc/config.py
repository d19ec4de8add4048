"""Where `orc` finds its server, tenant and token: the environment over a config file of
named contexts (docs/cli.md, "Configuration").

The file is TOML, `$ORC_CONFIG`, else `$XDG_CONFIG_HOME/orc/config.toml`, else
`~/.config/orc/config.toml`:

    current = "acme"

    [contexts.acme]
    server = "https://orchestrator.example.com"
    tenant = "acme"
    token = "orc_..."

It holds tokens, so it is written readable by its owner only (0600, in a 0700 folder), and
a file that holds a token but that others can read is refused rather than used."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "ConfigError",
    "ConfigFile",
    "Context",
    "Settings",
    "config_path",
    "resolve",
]


class ConfigError(Exception):
    """The configuration is missing, unreadable or unsafe: the message says what to do."""


@dataclass(frozen=True)
class Context:
    name: str
    server: str
    tenant: str
    token: str | None = None


@dataclass
class ConfigFile:
    path: Path
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ConfigFile:
        """The file's contexts (none when it does not exist yet)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        config = cls(path, _string(data, "current", path), _contexts(data, path))
        config.check_private()
        return config

    def check_private(self) -> None:
        """Refuse a file holding a token that its group or others can read."""
        if not any(c.token for c in self.contexts.values()):
            return
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{self.path} holds API tokens but its mode is {mode:04o}, so other users can "
                f"read them; make it readable by you only: chmod 600 {self.path}"
            )

    def save(self) -> None:
        """Write the file atomically, mode 0600 from the start (never briefly readable)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".config-")
        try:
            with os.fdopen(handle, "w") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(self.dumps())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def dumps(self) -> str:
        lines = [f"current = {_quote(self.current)}"] if self.current else []
        for context in self.contexts.values():
            lines += ["", f"[contexts.{_quote(context.name)}]"]
            lines += [f"server = {_quote(context.server)}", f"tenant = {_quote(context.tenant)}"]
            if context.token:
                lines.append(f"token = {_quote(context.token)}")
        return "\n".join(lines) + "\n"

    def context(self, name: str) -> Context:
        found = self.contexts.get(name)
        if found is None:
            known = ", ".join(sorted(self.contexts)) or "none yet (orc login makes one)"
            raise ConfigError(f"no context {name!r} in {self.path}; contexts: {known}")
        return found


def _quote(text: str) -> str:
    """A TOML basic string: JSON's escapes are valid TOML ones."""
    return json.dumps(text)


def _string(data: Mapping[str, object], key: str, where: object) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return value


def _contexts(data: Mapping[str, object], path: Path) -> dict[str, Context]:
    raw = data.get("contexts", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: contexts must be a table of [contexts.NAME] tables")
    contexts = {}
    for name, values in raw.items():
        where = f"{path}: contexts.{name}"
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: expected a table with server, tenant and token")
        server, tenant = _string(values, "server", where), _string(values, "tenant", where)
        if not server or not tenant:
            raise ConfigError(f"{where}: server and tenant are required")
        contexts[name] = Context(name, server, tenant, _string(values, "token", where))
    return contexts


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("ORC_CONFIG"):
        return Path(env["ORC_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "orc" / "config.toml"


@dataclass(frozen=True)
class Settings:
    """What a command talks to: resolved from options, the environment and the file."""

    server: str
    tenant: str | None
    token: str
    context: str | None  # the context used, if any

    def with_tenant(self, tenant: str | None) -> Settings:
        return replace(self, tenant=tenant or self.tenant)


def resolve(
    env: Mapping[str, str],
    *,
    context: str | None = None,
    server: str | None = None,
    tenant: str | None = None,
) -> Settings:
    """Options first, then ORC_SERVER / ORC_TENANT / ORC_TOKEN, then the context (named by
    the option, ORC_CONTEXT, or the file's current one). With all three from the
    environment the file is not read at all (CI needs none)."""
    server = server or env.get("ORC_SERVER") or None
    tenant = tenant or env.get("ORC_TENANT") or None
    token = env.get("ORC_TOKEN") or None
    name = context or env.get("ORC_CONTEXT") or None
    chosen: Context | None = None
    if name or not (server and tenant and token):
        config = ConfigFile.load(config_path(env))
        name = name or config.current
        if name:
            chosen = config.context(name)
    if chosen is not None:
        # A context's token goes to its own server only, never to one named elsewhere.
        if token is None and (server is None or _same_server(server, chosen.server)):
            token = chosen.token
        server, tenant = server or chosen.server, tenant or chosen.tenant
    if not server:
        raise ConfigError(
            "no server: run `orc login --server URL --tenant SLUG`, or set ORC_SERVER "
            "(with ORC_TENANT and ORC_TOKEN)"
        )
    if not token:
        raise ConfigError(
            f"no token for {server}: run `orc login --server {server}`, or set ORC_TOKEN"
            + (
                f" (context {name!r} holds a token for {chosen.server}, which is not sent "
                "to another server)"
                if chosen is not None and not _same_server(server, chosen.server)
                else ""
            )
        )
    return Settings(server=server, tenant=tenant, token=token, context=name)


def _same_server(one: str, other: str) -> bool:
    return one.rstrip("/") == other.rstrip("/")
