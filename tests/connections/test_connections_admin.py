"""The admin lists connections, variables and secrets read-only, without any secret value."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from connections import services
from connections.models import Connection, Secret, Variable
from orchestrator.actors import Actor
from tests.harness import Team

PASSWORD = "pw-Adm1n-hidden"
VALUE = "secret-Adm1n-hidden"


@pytest.fixture
def staff(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("root", password=None))
    return client


def test_it_shows_metadata_and_no_value(staff: Client, team: Team) -> None:
    cli = Actor.cli()
    services.create_connection(
        actor=cli, tenant=team.tenant, name="db", kind="postgres", host="db.internal",
        password=PASSWORD, extra={"token": VALUE},
    )  # fmt: skip
    services.create_secret(actor=cli, tenant=team.tenant, name="KEY", value=VALUE)
    services.create_variable(actor=cli, tenant=team.tenant, name="region", value="eu-west")
    pages = []
    for model in (Connection, Secret, Variable):
        name = model._meta.model_name
        obj = model.objects.dangerously_unscoped().get()
        for url in (
            reverse(f"admin:connections_{name}_changelist"),
            reverse(f"admin:connections_{name}_change", args=[obj.pk]),
        ):
            response = staff.get(url)
            assert response.status_code == 200, url
            pages.append(response.content.decode())
    text = "\n".join(pages)
    assert "db.internal" in text
    assert "KEY" in text
    assert "eu-west" in text
    for hidden in (PASSWORD, VALUE, "gAAAAA"):
        assert hidden not in text


def test_it_refuses_changes(staff: Client, team: Team) -> None:
    services.create_secret(actor=Actor.cli(), tenant=team.tenant, name="KEY", value=VALUE)
    secret = Secret.objects.dangerously_unscoped().get()
    assert staff.get(reverse("admin:connections_secret_add")).status_code == 403
    response = staff.post(reverse("admin:connections_secret_delete", args=[secret.pk]))
    assert response.status_code == 403
    assert Secret.objects.dangerously_unscoped().filter(pk=secret.pk).exists()
