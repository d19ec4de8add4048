"""Staff see every tenant's pools in the admin with their usage, and create, resize and
delete them there through runs.pools: each change audited once as the staff member's with
source "admin", a bad field shown on its form field, and a pool in use kept (the refusal
shown as a message). Staff who are not superusers see none of it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from runs.models import Pool
from tests.harness import Team, audit_count, new_audit_events
from tests.runs.pools.pool_states import a_pool, busy_run

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_pool_changelist")
ADD = reverse("admin:runs_pool_add")


def change_url(pool: Pool) -> str:
    return reverse("admin:runs_pool_change", args=[pool.pk])


def delete_url(pool: Pool) -> str:
    return reverse("admin:runs_pool_delete", args=[pool.pk])


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=None)


@pytest.fixture
def staff(client: Client, root: User) -> Client:
    client.force_login(root)
    return client


def test_staff_see_every_tenants_pools_with_their_usage(
    staff: Client, team: Team, outsider: Team
) -> None:
    ours = a_pool(team, slots=4)
    busy_run(team)
    a_pool(outsider, name="gpu", slots=2)
    page = staff.get(CHANGELIST)
    assert page.status_code == 200
    assert "3 of 4 slots in use; 1 running, 1 queued, 1 waiting" in page.text
    assert "0 of 2 slots in use; 0 running, 0 queued, 0 waiting" in page.text
    assert staff.get(CHANGELIST, {"q": outsider.slug}).text.count("slots in use") == 1
    assert "3 of 4 slots in use" in staff.get(change_url(ours)).text


def test_staff_create_resize_and_delete_a_pool_audited_as_admin(
    staff: Client, root: User, team: Team
) -> None:
    count = audit_count(team.tenant)
    body = {"tenant": team.tenant.pk, "name": "warehouse", "slots": 3, "description": "wh"}
    assert staff.post(ADD, body).status_code == 302
    pool = Pool.objects.dangerously_unscoped().get(tenant=team.tenant, name="warehouse")
    assert (pool.slots, pool.description) == (3, "wh")
    response = staff.post(change_url(pool), {"slots": 6, "description": "wh"})
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.slots == 6
    assert staff.post(delete_url(pool), {"post": "yes"}).status_code == 302
    assert not Pool.objects.dangerously_unscoped().filter(pk=pool.pk).exists()
    events = new_audit_events(team.tenant, count)
    assert [(e.action, e.source, e.actor_id) for e in events] == [
        ("pool.create", "admin", root.pk),
        ("pool.update", "admin", root.pk),
        ("pool.delete", "admin", root.pk),
    ]
    assert events[1].changes == {"before": {"slots": 3}, "after": {"slots": 6}}


def test_a_bad_name_and_a_taken_name_are_form_errors(staff: Client, team: Team) -> None:
    a_pool(team)
    count = audit_count(team.tenant)
    bad = staff.post(ADD, {"tenant": team.tenant.pk, "name": "Bad Name", "slots": 1})
    assert bad.status_code == 200
    assert "is not a valid pool name" in bad.text
    taken = staff.post(ADD, {"tenant": team.tenant.pk, "name": "warehouse", "slots": 1})
    assert taken.status_code == 200
    assert "already exists" in taken.text
    assert audit_count(team.tenant) == count
    assert Pool.objects.dangerously_unscoped().filter(tenant=team.tenant).count() == 1


def test_a_pool_in_use_is_kept_with_a_message(staff: Client, team: Team) -> None:
    pool = a_pool(team)
    busy_run(team)
    count = audit_count(team.tenant)
    response = staff.post(delete_url(pool), {"post": "yes"}, follow=True)
    assert "is in use by 3 unfinished task instance(s)" in response.text
    assert Pool.objects.dangerously_unscoped().filter(pk=pool.pk).exists()
    assert audit_count(team.tenant) == count


def test_it_is_for_superusers_only(client: Client, team: Team) -> None:
    pool = a_pool(team)
    clerk = User.objects.create_user("clerk", is_staff=True)
    client.force_login(clerk)
    for url in (CHANGELIST, ADD, change_url(pool), delete_url(pool)):
        assert client.get(url).status_code == 403, url
