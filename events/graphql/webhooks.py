"""Inbound webhooks over GraphQL, through the same services and policy as REST
(events/api/webhooks.py): a workflow's declared webhooks with their URLs, secrets (prefix
and expiry only) and deliveries; a new signing secret, returned by the mutation that makes
it and never again; revoking one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from events import webhooks
from orchestrator.graphql.types import LIST_LIMIT_DEFAULT, actor_of, list_limit, tenant_scope_for
from workflows.selectors import get_workflow

__all__ = ["WebhookMutation", "WebhookQuery"]


@strawberry.type
class WebhookSecretType:
    """A signing secret's metadata: the secret itself is returned once, by
    createWebhookSecret."""

    id: int
    prefix: str = strawberry.field(description="its first characters, to tell it apart")
    created_at: dt.datetime
    expires_at: dt.datetime | None = strawberry.field(
        description="when it stops being accepted (null: until a rotation)"
    )
    expired: bool

    @classmethod
    def of(cls, secret: webhooks.SigningSecret) -> WebhookSecretType:
        return cls(
            id=secret.id,
            prefix=secret.prefix,
            created_at=secret.created_at,
            expires_at=secret.expires_at,
            expired=secret.expired,
        )


@strawberry.type
class WebhookType:
    """A webhook the workflow's current version declares."""

    name: str
    url: str | None = strawberry.field(
        description="where to POST (PUBLIC_URL/hooks/<uid>); null until its first secret"
    )
    deliveries: int = strawberry.field(description="deliveries accepted")
    last_delivery_at: dt.datetime | None
    all_secrets: strawberry.Private[list[webhooks.SigningSecret]]
    param_templates: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="The run params' templates, as the spec has them.")  # type: ignore[untyped-decorator]
    def params(self) -> JSON:
        return self.param_templates  # type: ignore[return-value]

    @strawberry.field(description="Valid and expired ones, newest first.")  # type: ignore[untyped-decorator]
    def secrets(self, limit: int = LIST_LIMIT_DEFAULT) -> list[WebhookSecretType]:
        return [WebhookSecretType.of(s) for s in self.all_secrets[: list_limit(limit)]]

    @classmethod
    def of(cls, webhook: webhooks.DeclaredWebhook) -> WebhookType:
        return cls(
            name=webhook.name,
            url=webhook.url,
            param_templates=webhook.params,
            deliveries=webhook.deliveries,
            last_delivery_at=webhook.last_delivery_at,
            all_secrets=webhook.secrets,
        )


@strawberry.type
class WebhookSecretCreated:
    webhook: WebhookType
    secret: WebhookSecretType
    signing_secret: str = strawberry.field(
        description="The secret (whsec_...), shown this once: keep it in the sender's vault."
    )


def _declared(name: str, workflow_name: str) -> WebhookType:
    workflow = get_workflow(workflow_name)
    [found] = [w for w in webhooks.webhooks_of(workflow) if w.name == name]
    return WebhookType.of(found)


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The webhooks a workflow's current version declares.")  # type: ignore[untyped-decorator]
    def webhooks(
        self, info: Info, tenant: str, workflow: str, limit: int = LIST_LIMIT_DEFAULT
    ) -> list[WebhookType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "webhook.view"):
            declared = webhooks.webhooks_of(get_workflow(workflow))
            return [WebhookType.of(w) for w in declared[:limit]]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="A new signing secret for a declared webhook (and its URL, on the first "
        "one), shown this once. The older secrets stay valid for `overlap` seconds more "
        "(default one day; 0: they stop at once)."
    )  # type: ignore[untyped-decorator]
    def create_webhook_secret(
        self,
        info: Info,
        tenant: str,
        workflow: str,
        name: str,
        overlap: int = webhooks.DEFAULT_OVERLAP,
    ) -> WebhookSecretCreated:
        with tenant_scope_for(info, tenant, "webhook.manage"):
            _, secret, plaintext = webhooks.create_secret(
                actor=actor_of(info), workflow=get_workflow(workflow), name=name, overlap=overlap
            )
            shown = _declared(name, workflow)
        [made] = [s for s in shown.all_secrets if s.id == secret.pk]
        return WebhookSecretCreated(
            webhook=shown, secret=WebhookSecretType.of(made), signing_secret=plaintext
        )

    @strawberry.mutation(description="Revoke a webhook's signing secret at once.")  # type: ignore[untyped-decorator]
    def delete_webhook_secret(
        self, info: Info, tenant: str, workflow: str, name: str, id: int
    ) -> bool:
        with tenant_scope_for(info, tenant, "webhook.manage"):
            secret = webhooks.get_secret(get_workflow(workflow), name, id)
            webhooks.delete_secret(actor=actor_of(info), secret=secret)
        return True
