"""Every change to connections, variables and secrets: keyword-only, transactional,
authorised by the policy and audited in the same transaction. REST, GraphQL, the admin and
the CLI all call these.

Secret values (a connection's password and extra, a secret's value) are encrypted before
they are stored and never returned. The audit log shows that one changed, masked."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction

from connections.info import ConnectionInfo
from connections.models import (
    CONNECTION_NAME_PATTERN,
    KEY_NAME_PATTERN,
    Connection,
    Secret,
    Stamped,
    Variable,
)
from orchestrator import audit, crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, FieldError, Invalid
from orchestrator.models import Tenant
from orchestrator.policy import authorize

__all__ = [
    "KINDS",
    "UNSET",
    "check_connection",
    "connection_info",
    "create_connection",
    "create_secret",
    "create_variable",
    "delete_connection",
    "delete_secret",
    "delete_variable",
    "register_connection_test",
    "update_connection",
    "update_secret",
    "update_variable",
]

UNSET: Any = object()

KINDS = [k.value for k in Connection.Kind]
NEEDS_HOST = ("postgres", "mysql", "http")
MAX_VALUE_CHARS = 65536  # a password, extra's JSON, a secret's or a variable's value
CONNECTION_NAMES = (
    "lowercase letters, digits, - and _, starting with a letter or digit, at most 63 characters"
)
KEY_NAMES = "letters, digits and _, not starting with a digit, at most 63 characters"
_HOST = re.compile(r"^[^\s/?#@]+$")


# --- masking in the audit log ---------------------------------------------------------


class _MaskedChange(str):
    """The mask of a secret value replaced by another: it never equals another mask, so
    the audit diff lists the field ("********" -> "********") without either value."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True


def _masks(was_set: bool, now_set: bool, changed: bool) -> tuple[str, str]:
    if changed and was_set and now_set:
        return _MaskedChange(audit.MASK), _MaskedChange(audit.MASK)
    return (audit.MASK if was_set else ""), (audit.MASK if now_set else "")


def _open(ciphertext: str) -> str | None:
    """The clear text ("" when empty), None when no configured key opens it."""
    if not ciphertext:
        return ""
    try:
        return crypto.decrypt(ciphertext)
    except crypto.DecryptionError:
        return None


# --- shared steps ---------------------------------------------------------------------


def _stamp(obj: Stamped, actor: Actor, *, created: bool) -> None:
    if created:
        obj.created_by_id = actor.user_id  # type: ignore[attr-defined]
    obj.updated_by_id = actor.user_id  # type: ignore[attr-defined]


def _save_new(obj: Stamped, what: str) -> None:
    try:
        with transaction.atomic():  # two creators racing for one name: the loser gets a 409
            obj.save()
    except IntegrityError:
        raise Conflict(f"{what} exists; choose another name, or update it") from None


def _check_name(name: Any, pattern: str, accepted: str) -> list[FieldError]:
    if not isinstance(name, str) or not re.match(pattern, name):
        return [("name", f"{name!r} is not a valid name; accepted: {accepted}")]
    return []


def _check_size(path: str, value: str) -> list[FieldError]:
    if len(value) > MAX_VALUE_CHARS:
        return [(path, f"too long: at most {MAX_VALUE_CHARS} characters")]
    return []


def _locked(model: type[Stamped], obj: Stamped) -> Any:
    with tenant_scope([obj.tenant_id]):
        return model.objects.select_for_update(no_key=True).get(pk=obj.pk)  # type: ignore[attr-defined]


def _delete(actor: Actor, obj: Stamped, fields: Sequence[str], permission: str) -> None:
    authorize(actor, permission, obj.tenant)
    before = audit.snapshot(obj, fields)
    action = f"{obj._meta.model_name}.delete"
    audit.record(actor=actor, action=action, tenant=obj.tenant, obj=obj, before=before)
    obj.delete()


# --- connections ----------------------------------------------------------------------

CONNECTION_FIELDS = [
    "name",
    "kind",
    "host",
    "port",
    "database",
    "login",
    "extra_keys",
    "description",
]


def _check_connection(conn: Connection) -> list[FieldError]:
    errors: list[FieldError] = []
    if conn.kind not in KINDS:
        errors.append(("kind", f"unknown kind {conn.kind!r}; accepted: {', '.join(KINDS)}"))
    if conn.kind in NEEDS_HOST and not conn.host:
        errors.append(("host", f"a {conn.kind} connection needs a host"))
    if conn.host and not _HOST.match(conn.host):
        errors.append(
            (
                "host",
                "a host name or IP address only, without scheme, path or credentials (put "
                "the scheme in extra.scheme, the login and password in their own fields)",
            )
        )
    if conn.kind == "sqlite" and not conn.database:
        errors.append(("database", "a sqlite connection needs database: the file's path"))
    port = conn.port
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        errors.append(("port", "must be an integer from 1 to 65535, or null for the default"))
    return errors


def _extra_json(extra: Any) -> tuple[str, list[FieldError]]:
    """Canonical JSON of a valid extra ("" when empty), or the errors."""
    if not isinstance(extra, Mapping):
        return "", [("extra", 'expected an object of settings, e.g. {"sslmode": "require"}')]
    text = json.dumps(dict(extra), sort_keys=True) if extra else ""
    return text, _check_size("extra", text)


def _connection_changes(
    conn: Connection, password: str, extra: Any
) -> tuple[str | None, str | None, list[FieldError]]:
    """Validate the connection as it would be; the new password and extra JSON (None: keep)."""
    errors = _check_connection(conn)
    if password is not UNSET:
        errors += _check_size("password", password)
    extra_text = None
    if extra is not UNSET:
        extra_text, extra_errors = _extra_json(extra)
        errors += extra_errors
    return (None if password is UNSET else password), extra_text, errors


@transaction.atomic
def create_connection(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    kind: str,
    host: str = "",
    port: int | None = None,
    database: str = "",
    login: str = "",
    password: str = "",
    extra: Mapping[str, Any] | None = None,
    description: str = "",
) -> Connection:
    authorize(actor, "connection.manage", tenant)
    conn = Connection(
        tenant=tenant,
        name=name,
        kind=kind,
        host=host,
        port=port,
        database=database,
        login=login,
        description=description,
    )
    _, extra_text, errors = _connection_changes(conn, password, extra or {})
    errors = _check_name(name, CONNECTION_NAME_PATTERN, CONNECTION_NAMES) + errors
    if errors:
        raise Invalid(errors)
    conn.password_encrypted = crypto.encrypt(password) if password else ""
    conn.extra_encrypted = crypto.encrypt(extra_text) if extra_text else ""
    conn.extra_keys = sorted(extra or {})
    _stamp(conn, actor, created=True)
    _save_new(conn, f"connection {name!r}")
    after = {
        **audit.snapshot(conn, CONNECTION_FIELDS),
        "password": audit.MASK if password else "",
        "extra": audit.MASK if extra_text else "",
    }
    audit.record(actor=actor, action="connection.create", tenant=tenant, obj=conn, after=after)
    return conn


@transaction.atomic
def update_connection(
    *,
    actor: Actor,
    connection: Connection,
    kind: str = UNSET,
    host: str = UNSET,
    port: int | None = UNSET,
    database: str = UNSET,
    login: str = UNSET,
    password: str = UNSET,
    extra: Mapping[str, Any] = UNSET,
    description: str = UNSET,
) -> Connection:
    """Change what is given. A password not given is kept and "" clears it; extra, when
    given, replaces the whole object (its values cannot be read back to merge with)."""
    authorize(actor, "connection.manage", connection.tenant)
    conn: Connection = _locked(Connection, connection)
    before = audit.snapshot(conn, CONNECTION_FIELDS)
    given = {"kind": kind, "host": host, "port": port, "database": database, "login": login}
    given["description"] = description
    for field, value in given.items():
        if value is not UNSET:
            setattr(conn, field, value)
    new_password, new_extra, errors = _connection_changes(conn, password, extra)
    if errors:
        raise Invalid(errors)
    old_masks, new_masks, secrets_changed = {}, {}, False
    for field, new in (("password", new_password), ("extra", new_extra)):
        ciphertext = getattr(conn, f"{field}_encrypted")
        changed = new is not None and _open(ciphertext) != new
        if changed:
            assert new is not None
            setattr(conn, f"{field}_encrypted", crypto.encrypt(new) if new else "")
            secrets_changed = True
        old_masks[field], new_masks[field] = _masks(
            bool(ciphertext), bool(getattr(conn, f"{field}_encrypted")), changed
        )
    if new_extra is not None:
        conn.extra_keys = sorted(extra)
    after = audit.snapshot(conn, CONNECTION_FIELDS)
    if after == before and not secrets_changed:
        return conn  # nothing changed: nothing saved, nothing audited
    _stamp(conn, actor, created=False)
    conn.save()
    audit.record(
        actor=actor,
        action="connection.update",
        tenant=conn.tenant,
        obj=conn,
        before={**before, **old_masks},
        after={**after, **new_masks},
    )
    return conn


@transaction.atomic
def delete_connection(*, actor: Actor, connection: Connection) -> None:
    """Tasks that name it fail from now on; the audit log keeps its metadata."""
    _delete(actor, connection, CONNECTION_FIELDS, "connection.manage")


def connection_info(connection: Connection) -> ConnectionInfo:
    """The connection decrypted, as the worker sees it (crypto.DecryptionError when no
    configured key opens its values)."""
    extra = (
        json.loads(crypto.decrypt(connection.extra_encrypted)) if connection.extra_encrypted else {}
    )
    return ConnectionInfo(
        name=connection.name,
        kind=connection.kind,
        host=connection.host,
        port=connection.port,
        database=connection.database,
        login=connection.login,
        password=crypto.decrypt(connection.password_encrypted)
        if connection.password_encrypted
        else "",
        extra=extra,
    )


def check_connection(*, actor: Actor, connection: Connection) -> tuple[bool, str]:
    """Probe whether this installation reaches the connection: (ok, what happened).

    Changes nothing, so it writes no audit event (the policy still requires
    connection.manage: a probe reaches out with the connection's credentials)."""
    tenant = connection.tenant
    authorize(actor, "connection.manage", tenant)
    test = _tests.get(connection.kind)
    if test is None:
        return False, f"this installation has no test for {connection.kind} connections"
    try:
        info = connection_info(connection)
    except crypto.DecryptionError:
        return False, "no configured encryption key opens this connection's password or extra"
    return test(info, tenant.policy, tenant.slug)


# A probe of a connection: (its values, the tenant's policy, the tenant's slug) -> (reached,
# what happened, in words safe to show).
ConnectionTest = Callable[[ConnectionInfo, Mapping[str, Any], str], tuple[bool, str]]
_tests: dict[str, ConnectionTest] = {}


def register_connection_test(kinds: Iterable[str], test: ConnectionTest) -> None:
    """Called by the app whose task types hold the probes (runs), when it is ready."""
    for kind in kinds:
        _tests[kind] = test


# --- variables ------------------------------------------------------------------------

VARIABLE_FIELDS = ["name", "value", "description"]


@transaction.atomic
def create_variable(
    *, actor: Actor, tenant: Tenant, name: str, value: str, description: str = ""
) -> Variable:
    authorize(actor, "variable.manage", tenant)
    errors = _check_name(name, KEY_NAME_PATTERN, KEY_NAMES) + _check_size("value", value)
    if errors:
        raise Invalid(errors)
    variable = Variable(tenant=tenant, name=name, value=value, description=description)
    _stamp(variable, actor, created=True)
    _save_new(variable, f"variable {name!r}")
    after = audit.snapshot(variable, VARIABLE_FIELDS)
    audit.record(actor=actor, action="variable.create", tenant=tenant, obj=variable, after=after)
    return variable


@transaction.atomic
def update_variable(
    *, actor: Actor, variable: Variable, value: str = UNSET, description: str = UNSET
) -> Variable:
    authorize(actor, "variable.manage", variable.tenant)
    variable = _locked(Variable, variable)
    before = audit.snapshot(variable, VARIABLE_FIELDS)
    if value is not UNSET:
        if errors := _check_size("value", value):
            raise Invalid(errors)
        variable.value = value
    if description is not UNSET:
        variable.description = description
    after = audit.snapshot(variable, VARIABLE_FIELDS)
    if after == before:
        return variable
    _stamp(variable, actor, created=False)
    variable.save()
    audit.record(
        actor=actor,
        action="variable.update",
        tenant=variable.tenant,
        obj=variable,
        before=before,
        after=after,
    )
    return variable


@transaction.atomic
def delete_variable(*, actor: Actor, variable: Variable) -> None:
    _delete(actor, variable, VARIABLE_FIELDS, "variable.manage")


# --- secrets --------------------------------------------------------------------------

SECRET_FIELDS = ["name", "description"]


def _check_secret_value(value: str) -> list[FieldError]:
    if not value:
        return [("value", "a secret needs a value; delete the secret to remove it")]
    return _check_size("value", value)


@transaction.atomic
def create_secret(
    *, actor: Actor, tenant: Tenant, name: str, value: str, description: str = ""
) -> Secret:
    authorize(actor, "secret.manage", tenant)
    errors = _check_name(name, KEY_NAME_PATTERN, KEY_NAMES) + _check_secret_value(value)
    if errors:
        raise Invalid(errors)
    secret = Secret(
        tenant=tenant, name=name, value_encrypted=crypto.encrypt(value), description=description
    )
    _stamp(secret, actor, created=True)
    _save_new(secret, f"secret {name!r}")
    after = {**audit.snapshot(secret, SECRET_FIELDS), "value": audit.MASK}
    audit.record(actor=actor, action="secret.create", tenant=tenant, obj=secret, after=after)
    return secret


@transaction.atomic
def update_secret(
    *, actor: Actor, secret: Secret, value: str = UNSET, description: str = UNSET
) -> Secret:
    """A new value (rotation) or description; a value not given is kept."""
    authorize(actor, "secret.manage", secret.tenant)
    secret = _locked(Secret, secret)
    before = audit.snapshot(secret, SECRET_FIELDS)
    changed = False
    if value is not UNSET:
        if errors := _check_secret_value(value):
            raise Invalid(errors)
        changed = _open(secret.value_encrypted) != value
        if changed:
            secret.value_encrypted = crypto.encrypt(value)
    if description is not UNSET:
        secret.description = description
    after = audit.snapshot(secret, SECRET_FIELDS)
    if after == before and not changed:
        return secret
    old_mask, new_mask = _masks(True, True, changed)
    _stamp(secret, actor, created=False)
    secret.save()
    audit.record(
        actor=actor,
        action="secret.update",
        tenant=secret.tenant,
        obj=secret,
        before={**before, "value": old_mask},
        after={**after, "value": new_mask},
    )
    return secret


@transaction.atomic
def delete_secret(*, actor: Actor, secret: Secret) -> None:
    _delete(actor, secret, SECRET_FIELDS, "secret.manage")
