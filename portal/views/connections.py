"""Connections, variables and secrets: the list every member may open (connections and
secrets only for editors and above, as in the API), and the forms that create, change,
test and delete them. Each form calls the connections.services function that the REST
API calls, so the rules and the audit events are the API's.

Connection passwords, connection extras and secret values are write-only here, as they
are everywhere else. A form says whether one is set and never what it is. A field left
empty keeps the stored value. Nothing typed into a write-only field is written back into
a page, not even when the form comes back with an error.

The editors have their own paths (`connection-editor/<name>/`). A name can never collide
with a page of the list, whatever names the tenant picks."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import path, reverse
from django.utils import timezone

from connections import selectors, services
from connections.models import Connection, Secret, Variable
from orchestrator.errors import FieldError, Invalid
from orchestrator.integers import ascii_int
from orchestrator.policy import PERMISSIONS
from portal.actions import FieldErrors, TenantForm
from portal.pages import TenantPage

__all__ = [
    "ConnectionDeletePage",
    "ConnectionEditor",
    "ConnectionTestAction",
    "ConnectionsPage",
    "SecretDeletePage",
    "SecretEditor",
    "VariableDeletePage",
    "VariableEditor",
    "urlpatterns",
]

NOT_A_PORT = "must be an integer from 1 to 65535, or empty for the default"


class ConnectionsPage(TenantPage):
    """The tenant's connections, variables and secrets, each with what the API shows of
    it. Connections and secrets are left out for roles that may not see them, and are
    not even read for those roles."""

    permission = "variable.view"
    template_name = "portal/connections/list.html"
    nav = "connections"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "connections": list(selectors.all_connections()) if self.may("connection.view") else [],
            "variables": list(selectors.all_variables()),
            "secrets": list(selectors.all_secrets()) if self.may("secret.view") else [],
        }

    def may(self, permission: str) -> bool:
        return self.role.includes(PERMISSIONS[permission])


# --- forms ------------------------------------------------------------------------------


class _Editor(TenantForm):
    """A create-or-change form for one kind of object: `connection-editor/` makes a new one
    and `connection-editor/<name>/` changes the named one. `fields` are the form's fields,
    named by the paths the services report errors at. An error at any other path shows
    above the form."""

    nav = "connections"
    fields: ClassVar[tuple[str, ...]]
    write_only: ClassVar[frozenset[str]] = frozenset()

    def target(self, name: str) -> Any:
        raise NotImplementedError

    def initial(self, obj: Any) -> dict[str, Any]:
        """What the form shows before anything is typed: the object's readable fields."""
        shown = [f for f in self.fields if f != "name" and f not in self.write_only]
        return {field: getattr(obj, field) for field in shown}

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        obj = self.target(kwargs["name"]) if "name" in kwargs else None
        if values is None:
            values = self.initial(obj) if obj is not None else {}
        shown = {k: v for k, v in values.items() if k not in self.write_only}
        return {
            "object": obj,
            "values": shown,
            "errors": errors,
            "form_errors": general_errors(errors, self.fields),
            "retype": sorted(self.write_only & {k for k, v in values.items() if v}),
        }

    def list_url(self, anchor: str) -> str:
        return reverse("portal:connections", args=[self.tenant.slug]) + f"#{anchor}"


class ConnectionEditor(_Editor):
    """Admins: a connection's page (its facts, the test button, the form to change it) or
    the form for a new one."""

    permission = "connection.manage"
    template_name = "portal/connections/connection_form.html"
    fields = (
        "name",
        "kind",
        "host",
        "port",
        "database",
        "login",
        "password",
        "extra",
        "description",
    )
    write_only = frozenset({"password", "extra"})

    def target(self, name: str) -> Connection:
        return selectors.get_connection(name)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return super().form_context(values=values, errors=errors, **kwargs) | {
            "kinds": services.KINDS
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        if "name" not in kwargs:
            name = one_line(post, "name")
            services.create_connection(
                actor=self.actor, tenant=self.tenant, name=name, **connection_changes(post)
            )
            return self.page_url(name), f"Connection {name!r} created."
        connection = self.target(kwargs["name"])
        changes = connection_changes(post, editing=True)
        services.update_connection(actor=self.actor, connection=connection, **changes)
        return self.page_url(connection.name), f"Connection {connection.name!r} saved."

    def page_url(self, name: str) -> str:
        return reverse("portal:connection-edit", args=[self.tenant.slug, name])


class VariableEditor(_Editor):
    """Editors: a variable's value and description, or a new variable."""

    permission = "variable.manage"
    template_name = "portal/connections/variable_form.html"
    fields = ("name", "value", "description")

    def target(self, name: str) -> Variable:
        return selectors.get_variable(name)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        value, description = multiline(post, "value"), one_line(post, "description")
        if "name" not in kwargs:
            name = one_line(post, "name")
            services.create_variable(
                actor=self.actor,
                tenant=self.tenant,
                name=name,
                value=value,
                description=description,
            )
            return self.list_url("variables"), f"Variable {name!r} created."
        variable = self.target(kwargs["name"])
        services.update_variable(
            actor=self.actor, variable=variable, value=value, description=description
        )
        return self.list_url("variables"), f"Variable {variable.name!r} saved."


class SecretEditor(_Editor):
    """Admins: set a new secret, or replace a secret's value (rotate) or description. The
    value is never shown; left empty on a change, the stored one is kept."""

    permission = "secret.manage"
    template_name = "portal/connections/secret_form.html"
    fields = ("name", "value", "description")
    write_only = frozenset({"value"})

    def target(self, name: str) -> Secret:
        return selectors.get_secret(name)

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        value, description = post.get("value", ""), one_line(post, "description")
        if "name" not in kwargs:
            name = one_line(post, "name")
            services.create_secret(
                actor=self.actor,
                tenant=self.tenant,
                name=name,
                value=value,
                description=description,
            )
            return self.list_url("secrets"), f"Secret {name!r} set."
        secret = self.target(kwargs["name"])
        changes: dict[str, Any] = {"description": description}
        if value:
            changes["value"] = value
        services.update_secret(actor=self.actor, secret=secret, **changes)
        replaced = "value replaced" if value else "saved"
        return self.list_url("secrets"), f"Secret {secret.name!r} {replaced}."


# --- the connection test ----------------------------------------------------------------


class ConnectionTestAction(TenantPage):
    """POST: probe whether this installation reaches the connection (the API's `test`),
    then back to the connection's page with the answer: reached or not, what happened,
    and when it was asked. A probe changes nothing, so nothing is audited."""

    permission = "connection.manage"
    http_method_names: ClassVar[list[str]] = ["post"]  # type: ignore[misc]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        connection = selectors.get_connection(kwargs["name"])
        ok, said = services.check_connection(actor=self.actor, connection=connection)
        at = timezone.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        if ok:
            messages.success(
                request, f"Reached {connection.name}: {said} (tested at {at}).", "connection-test"
            )
        else:
            messages.error(
                request,
                f"Not reached {connection.name}: {said} (tested at {at}).",
                "connection-test",
            )
        url = reverse("portal:connection-edit", args=[self.tenant.slug, connection.name])
        return HttpResponseRedirect(url)


# --- deleting ---------------------------------------------------------------------------


class _Delete(TenantForm):
    """GET: what deleting the object will do. POST: delete it through its service."""

    nav = "connections"
    template_name = "portal/connections/delete.html"
    what: ClassVar[str]
    anchor: ClassVar[str]
    consequence: ClassVar[str]
    edit_url_name: ClassVar[str]

    def target(self, name: str) -> Connection | Variable | Secret:
        raise NotImplementedError

    def delete(self, obj: Any) -> None:
        raise NotImplementedError

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        obj = self.target(kwargs["name"])
        return {
            "object": obj,
            "what": self.what,
            "consequence": self.consequence.replace("NAME", obj.name),
            "form_errors": general_errors(errors, ()),
            "back_url": reverse(f"portal:{self.edit_url_name}", args=[self.tenant.slug, obj.name]),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        obj = self.target(kwargs["name"])
        self.delete(obj)
        url = reverse("portal:connections", args=[self.tenant.slug]) + f"#{self.anchor}"
        return url, f"{self.what.capitalize()} {kwargs['name']!r} deleted."


class ConnectionDeletePage(_Delete):
    permission = "connection.manage"
    what, anchor, edit_url_name = "connection", "connections", "connection-edit"
    consequence = (
        "Tasks that name this connection fail from then on, and they are not retried. "
        "The audit log keeps its settings, but not its password or extra."
    )

    def target(self, name: str) -> Connection:
        return selectors.get_connection(name)

    def delete(self, obj: Connection) -> None:
        services.delete_connection(actor=self.actor, connection=obj)


class VariableDeletePage(_Delete):
    permission = "variable.manage"
    what, anchor, edit_url_name = "variable", "variables", "variable-edit"
    consequence = "Tasks whose templates read it as {{ vars.NAME }} fail from then on."

    def target(self, name: str) -> Variable:
        return selectors.get_variable(name)

    def delete(self, obj: Variable) -> None:
        services.delete_variable(actor=self.actor, variable=obj)


class SecretDeletePage(_Delete):
    permission = "secret.manage"
    what, anchor, edit_url_name = "secret", "secrets", "secret-edit"
    consequence = (
        "Tasks whose templates use it as {{ secrets.NAME }} fail from then on. The value "
        "cannot be recovered."
    )

    def target(self, name: str) -> Secret:
        return selectors.get_secret(name)

    def delete(self, obj: Secret) -> None:
        services.delete_secret(actor=self.actor, secret=obj)


# --- from the form to the services' arguments --------------------------------------------


def general_errors(errors: FieldErrors, fields: tuple[str, ...]) -> list[str]:
    """The errors that no field of the form shows: shown above it, with their path."""
    return [
        f"{path}: {message}" if path else message
        for path, found in errors.items()
        if path not in fields
        for message in found
    ]


def one_line(post: QueryDict, name: str) -> str:
    """A one-line field, trimmed as the API's serializers trim it."""
    return str(post.get(name, "")).strip()


def multiline(post: QueryDict, name: str) -> str:
    """A textarea's value as it was typed. Browsers send its line breaks as CRLF."""
    return str(post.get(name, "")).replace("\r\n", "\n")


def connection_changes(post: QueryDict, *, editing: bool = False) -> dict[str, Any]:
    """The arguments of create_connection or update_connection, from the form.

    A password or extra left empty is kept, and only its checkbox clears it. A port or
    extra the form cannot turn into what the service takes is refused here, as the API's
    serializer refuses it."""
    fields = ("kind", "host", "database", "login", "description")
    changes: dict[str, Any] = {field: one_line(post, field) for field in fields}
    raw_port, raw_extra = one_line(post, "port"), multiline(post, "extra").strip()
    errors: list[FieldError] = []
    changes["port"] = ascii_int(raw_port) if raw_port else None
    if raw_port and changes["port"] is None:
        errors.append(("port", NOT_A_PORT))
    if password := str(post.get("password", "")):
        changes["password"] = password
    elif editing and post.get("clear_password"):
        changes["password"] = ""
    if raw_extra:
        changes["extra"], extra_errors = json_object(raw_extra)
        errors += extra_errors
    elif editing and post.get("clear_extra"):
        changes["extra"] = {}
    if errors:
        raise Invalid(errors)
    return changes


def json_object(text: str) -> tuple[Any, list[FieldError]]:
    """The JSON value of `text`, or the error that says where it stops being JSON. The
    service checks that it is an object."""
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        example = '{"sslmode": "require"}'
        return None, [("extra", f"not JSON ({exc.msg} at {where}); expected e.g. {example}")]


urlpatterns = [
    path("connections/", ConnectionsPage.as_view(), name="connections"),
    path("connection-editor/", ConnectionEditor.as_view(), name="connection-new"),
    path("connection-editor/<str:name>/", ConnectionEditor.as_view(), name="connection-edit"),
    path(
        "connection-editor/<str:name>/test/",
        ConnectionTestAction.as_view(),
        name="connection-test",
    ),
    path(
        "connection-editor/<str:name>/delete/",
        ConnectionDeletePage.as_view(),
        name="connection-delete",
    ),
    path("variable-editor/", VariableEditor.as_view(), name="variable-new"),
    path("variable-editor/<str:name>/", VariableEditor.as_view(), name="variable-edit"),
    path(
        "variable-editor/<str:name>/delete/", VariableDeletePage.as_view(), name="variable-delete"
    ),
    path("secret-editor/", SecretEditor.as_view(), name="secret-new"),
    path("secret-editor/<str:name>/", SecretEditor.as_view(), name="secret-edit"),
    path("secret-editor/<str:name>/delete/", SecretDeletePage.as_view(), name="secret-delete"),
]
