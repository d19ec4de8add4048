"""The admin shows platform staff grants, webhooks (a secret's prefix and expiry, never
the secret, not even encrypted), webhook deliveries, datasets and their updates, all
read-only; a member who is not staff sees none of it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from events.models import Webhook, WebhookDelivery, WebhookSecret
from orchestrator import crypto
from orchestrator.models import Grant
from runs.models import Dataset, DatasetUpdate
from tests.harness import Team, make_team
from workflows.models import Workflow

MODELS: list[Any] = [Grant, Webhook, WebhookDelivery, Dataset, DatasetUpdate]
SECRET = "whsec_not-to-be-shown-anywhere"


def _url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def rows(team: Team) -> None:
    other = make_team("partners")
    tenant = team.tenant
    Grant.objects.dangerously_unscoped().create(
        tenant=tenant, grantee=other.tenant, kind="dataset", name="warehouse.sales"
    )
    workflow = Workflow.objects.dangerously_unscoped().create(tenant=tenant, name="ingest")
    hook = Webhook.objects.dangerously_unscoped().create(
        tenant=tenant, workflow=workflow, name="uploads", uid="u" * 32
    )
    WebhookSecret.objects.dangerously_unscoped().create(
        tenant=tenant,
        webhook=hook,
        secret_encrypted=crypto.encrypt(SECRET),
        prefix="whsec_abc",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    WebhookDelivery.objects.dangerously_unscoped().create(tenant=tenant, webhook=hook, key="k" * 64)
    dataset = Dataset.objects.dangerously_unscoped().create(tenant=tenant, name="warehouse.sales")
    DatasetUpdate.objects.dangerously_unscoped().create(
        tenant=tenant, dataset=dataset, task_id="load", metadata={"rows": 120}
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("rows")
def test_it_shows_them_read_only_and_no_secret(client: Client, team: Team) -> None:
    client.force_login(User.objects.create_superuser("root", password=None))
    pages = []
    for model in MODELS:
        obj = model.objects.dangerously_unscoped().first()
        for url in (_url(model, "changelist"), _url(model, "change", obj.pk)):
            response = client.get(url)
            assert response.status_code == 200, url
            pages.append(response.content.decode())
        assert client.get(_url(model, "add")).status_code == 403
        assert client.get(_url(model, "delete", obj.pk)).status_code == 403
    text = "\n".join(pages)
    for shown in ("partners", "warehouse.sales", "uploads", "whsec_abc", "rows"):
        assert shown in text
    stored = WebhookSecret.objects.dangerously_unscoped().get().secret_encrypted
    assert SECRET not in text
    assert stored not in text


@pytest.mark.django_db
@pytest.mark.usefixtures("rows")
def test_a_member_who_is_not_staff_sees_none_of_it(client: Client, team: Team) -> None:
    client.force_login(team.owner)
    for model in MODELS:
        response = client.get(_url(model, "changelist"))
        assert response.status_code in (302, 403)
