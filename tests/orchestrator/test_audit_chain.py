"""The audit log: append-only, chained per tenant with an HMAC, verifiable, never forked by
concurrent writers."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from orchestrator import audit, services
from orchestrator.actors import Actor
from orchestrator.models import AuditChainHead, AuditEvent
from tests.harness import Team, make_team, make_teammate, send


def _chain(team: Team) -> str:
    return audit.chain_key(team.tenant.pk)


def test_it_verifies_after_a_series_of_api_changes(team: Team) -> None:
    owner, admin = team.tokens["owner"], team.tokens["admin"]
    base = f"/api/v1/tenants/{team.slug}/"
    newcomer = make_teammate(team).username
    created = send(admin, "POST", f"{base}tokens/", {"name": "ci", "role": "viewer"}).json()
    send(admin, "DELETE", f"{base}tokens/{created['prefix']}/")
    send(admin, "POST", f"{base}members/", {"username": newcomer, "role": "viewer"})
    send(admin, "PATCH", f"{base}members/{newcomer}/", {"role": "editor"})
    send(admin, "DELETE", f"{base}members/{newcomer}/")
    send(owner, "PATCH", base, {"name": "Acme Inc"})
    events = AuditEvent.objects.dangerously_unscoped().filter(chain=_chain(team)).order_by("seq")
    assert [e.seq for e in events] == list(range(1, events.count() + 1))
    assert [e.action for e in events][-6:] == [
        "token.create",
        "token.revoke",
        "membership.create",
        "membership.update",
        "membership.delete",
        "tenant.update",
    ]
    report = audit.verify_chain(_chain(team))
    assert report.ok, report
    assert report.checked == events.count()
    head, last = AuditChainHead.objects.get(chain=_chain(team)), events.last()
    assert last is not None
    assert (head.seq, head.hash) == (last.seq, last.hash)


def test_it_keeps_one_chain_per_tenant(team: Team, outsider: Team) -> None:
    ours = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant)
    theirs = AuditEvent.objects.dangerously_unscoped().filter(tenant=outsider.tenant)
    assert {e.chain for e in ours} == {_chain(team)}
    assert [e.seq for e in theirs.order_by("seq")] == list(range(1, theirs.count() + 1))
    assert audit.verify_chain(_chain(outsider)).ok


def test_it_finds_an_event_signed_with_another_key(team: Team) -> None:
    head = AuditChainHead.objects.get(chain=_chain(team))
    forged = AuditEvent(
        tenant=team.tenant,
        chain=_chain(team),
        seq=head.seq + 1,
        created_at=timezone.now(),
        actor_label="mallory",
        source="cli",
        action="tenant.update",
        object_type="tenant",
        prev_hash=head.hash,
        hash="f" * 64,
    )
    forged.save()
    report = audit.verify_chain(_chain(team))
    assert (report.ok, report.broken_seq) == (False, head.seq + 1)
    assert "HMAC" in report.reason


def test_it_finds_events_missing_after_the_last_one(team: Team) -> None:
    AuditChainHead.objects.filter(chain=_chain(team)).update(seq=99)
    report = audit.verify_chain(_chain(team))
    assert not report.ok
    assert "missing" in report.reason


def test_it_refuses_to_change_or_delete_an_event_in_python(team: Team) -> None:
    event = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant).first()
    assert event is not None
    event.action = "tenant.nothing"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.dangerously_unscoped().filter(pk=event.pk).update(action="x")
    with pytest.raises(TypeError):
        AuditEvent.objects.dangerously_unscoped().filter(pk=event.pk).delete()
    event.refresh_from_db()
    assert event.action != "tenant.nothing"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE orchestrator_auditevent SET action = 'x' WHERE id = %s",
        "DELETE FROM orchestrator_auditevent WHERE id = %s",
    ],
    ids=["update", "delete"],
)
def test_it_refuses_to_change_or_delete_an_event_in_the_database(team: Team, sql: str) -> None:
    event = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant).first()
    assert event is not None
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.dangerously_unscoped().get(pk=event.pk).action == event.action


# Transactional tests: they need PostgreSQL's row locks, and its triggers that can be lifted
# for the flush that ends them (SQLite's can only be dropped).
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, flushable log)"
)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_it_never_forks_the_chain_under_concurrent_writers() -> None:
    team = make_team("acme", roles=["owner"])
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def mint(n: int) -> None:
        try:
            start.wait()
            for i in range(3):
                services.create_token(
                    actor=Actor.cli(),
                    tenant=team.tenant,
                    name=f"t{n}-{i}",
                    role="viewer",
                    user=team.owner,
                )
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=mint, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = AuditEvent.objects.dangerously_unscoped().filter(chain=_chain(team))
    seqs = sorted(events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert events.filter(action="token.create").count() == 1 + 6 * 3
    assert audit.verify_chain(_chain(team)).ok


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_record_outside_the_changes_transaction() -> None:
    team = make_team("acme", roles=["owner"])
    count = AuditEvent.objects.dangerously_unscoped().count()
    with pytest.raises(RuntimeError, match="same transaction"):
        audit.record(actor=Actor.system(), action="tenant.poke", tenant=team.tenant)
    assert AuditEvent.objects.dangerously_unscoped().count() == count
