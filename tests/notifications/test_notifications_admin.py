"""The admin shows platform staff channels, rules, deliveries, SLA misses and events, all
read-only, and no channel's URL or signing secret, not even encrypted."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator import crypto
from runs.models import Event
from tests.harness import Team
from tests.notifications.objects import (
    HOOK_PATH,
    SLACK_PATH,
    a_delivery,
    a_rule,
    a_webhook_channel,
    an_sla_miss,
)

MODELS: list[Any] = [Channel, Rule, Delivery, SlaMiss, Event]


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def staff(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("root", password=None))
    return client


def _url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_it_shows_everything_but_secrets(staff: Client, team: Team) -> None:
    a_webhook_channel(team)
    a_rule(team)
    a_delivery(team)
    an_sla_miss(team)
    hook = Channel.objects.dangerously_unscoped().get(name="team-hook")
    secret = crypto.decrypt(hook.signing_secret_encrypted)
    pages = []
    for model in MODELS:
        obj = model.objects.dangerously_unscoped().filter(tenant=team.tenant).first()
        for url in (_url(model, "changelist"), _url(model, "change", obj.pk)):
            response = staff.get(url)
            assert response.status_code == 200, url
            pages.append(response.content.decode())
    text = "\n".join(pages)
    for shown in ("team-hook", "failures-slack", "http://127.0.0.1:9/…", "run_duration: 1h"):
        assert shown in text
    for hidden in (SLACK_PATH, HOOK_PATH, secret, "whsec_", "gAAAAA"):
        assert hidden not in text


def test_it_refuses_changes(staff: Client, team: Team) -> None:
    a_delivery(team)
    a_rule(team)
    an_sla_miss(team)
    for model in MODELS:
        obj = model.objects.dangerously_unscoped().filter(tenant=team.tenant).first()
        assert staff.get(_url(model, "add")).status_code == 403
        assert staff.post(_url(model, "delete", obj.pk)).status_code == 403
        assert model.objects.dangerously_unscoped().filter(pk=obj.pk).exists()


def test_it_is_for_platform_staff_only(client: Client, team: Team) -> None:
    user = User.objects.create_user("helper", password=None, is_staff=True)
    client.force_login(user)
    for model in MODELS:
        assert client.get(_url(model, "changelist")).status_code in (302, 403)
