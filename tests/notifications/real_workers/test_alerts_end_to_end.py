"""Alerts end to end: real worker processes and a beat run a failing workflow, and the
alerts reach real receivers on 127.0.0.1 exactly once; a worker killed while sending does
not make a second message."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from notifications import services as notes
from notifications.models import Delivery
from notifications.tasks import deliver as deliver_task
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import Event, WorkflowRun
from runs.periodic import ensure_periodic_tasks
from runs.services import trigger_run
from tests.harness import Team, make_team
from tests.notifications.servers import Answer, HttpReceiver, SmtpReceiver
from tests.workers import Workers, publishing_to, wait_for
from workflows.services import apply_workflow

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NOTIFY_TIMEOUT = 2  # seconds: a claim counts as lost 2 * 2 + 10 = 14 s after it was made


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[HttpReceiver, SmtpReceiver]]:
    http, smtp = HttpReceiver(), SmtpReceiver()
    yield http, smtp
    http.close()
    smtp.close()


@pytest.fixture(scope="module")
def workers(
    django_db_setup: None, django_db_blocker: Any, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> Iterator[Workers]:
    _, smtp = receivers
    with django_db_blocker.unblock():
        pool = Workers(
            count=2,
            concurrency=2,
            env={
                "NOTIFY_ALLOWED_HOSTS": "127.0.0.1",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(smtp.port),
                "NOTIFY_TIMEOUT_SECONDS": str(NOTIFY_TIMEOUT),
                "NOTIFY_RETRY_DELAY_SECONDS": "0.5",
                "PUBLIC_URL": "https://orc.example.com",
            },
        )
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


@pytest.fixture
def team(workers: Workers, settings: Any) -> Team:
    ensure_periodic_tasks()
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    return make_team("acme", roles=[])


def fail_a_run(team: Team, channels: list[str]) -> WorkflowRun:
    spec = {
        "name": "nightly",
        "notify": {"on": ["run.failed"], "channels": channels},
        "tasks": {
            "load": {
                "type": "python",
                "callable": "runs.library:fail",
                "kwargs": {"message": "relation staging does not exist"},
            }
        },
    }
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow
        return trigger_run(actor=Actor.cli(), workflow=workflow).run


def deliveries(team: Team) -> list[Delivery]:
    return list(Delivery.objects.dangerously_unscoped().filter(tenant=team.tenant).order_by("id"))


def test_a_failing_run_gives_one_slack_post_one_email_and_one_signed_cloudevent(
    team: Team, workers: Workers, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, smtp = receivers
    http.posts.clear()
    smtp.messages.clear()
    actor = Actor.cli()
    with tenant_scope([team.tenant]):
        notes.create_channel(
            actor=actor, tenant=team.tenant, name="slack", kind="slack", url=http.url("/slack")
        )
        _, secret = notes.create_channel(
            actor=actor, tenant=team.tenant, name="hook", kind="webhook", url=http.url("/hook")
        )
        notes.create_channel(
            actor=actor,
            tenant=team.tenant,
            name="mail",
            kind="email",
            recipients=["oncall@example.com"],
        )
    run = fail_a_run(team, ["slack", "hook", "mail"])

    def all_sent() -> bool:
        rows = deliveries(team)
        return len(rows) == 3 and all(r.status == "sent" for r in rows)

    wait_for(all_sent, 60, "three deliveries sent", workers)
    posts = http.wait(2)
    by_path = {p.path: p for p in posts}
    assert sorted(by_path) == ["/hook", "/slack"]
    assert len(posts) == 2
    slack = by_path["/slack"].json()
    assert slack["text"] == f"[orchestrator] acme/nightly: run {run.pk} failed"
    link = f"https://orc.example.com/t/acme/runs/{run.pk}/"
    assert slack["blocks"][-1]["elements"][0]["url"] == link
    hook = by_path["/hook"]
    from notifications.transports import verify

    assert verify(secret or "", hook.headers, hook.body)
    envelope = hook.json()
    [event] = Event.objects.dangerously_unscoped().filter(run=run, type="run.failed")
    assert envelope["id"] == str(event.uid)
    assert envelope["data"]["failed_tasks"][0]["task_id"] == "load"
    [(recipients, mail)] = smtp.wait(1)
    assert recipients == ["oncall@example.com"]
    assert mail["Subject"] == f"[orchestrator] acme/nightly: run {run.pk} failed"
    assert mail.get_body(("plain",)) is not None
    assert mail.get_body(("html",)) is not None
    assert [r.attempts for r in deliveries(team)] == [1, 1, 1]


def test_a_receiver_answering_500_twice_gets_the_message_once(
    team: Team, workers: Workers, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, _ = receivers
    http.posts.clear()
    http.answer(Answer(500), Answer(500))
    with tenant_scope([team.tenant]):
        notes.create_channel(
            actor=Actor.cli(), tenant=team.tenant, name="hook", kind="webhook", url=http.url()
        )
    fail_a_run(team, ["hook"])

    def sent() -> Delivery | None:
        rows = deliveries(team)
        return rows[0] if rows and rows[0].status == "sent" else None

    row = wait_for(sent, 60, "the delivery to go through on its third attempt", workers)
    assert row.attempts == 3
    statuses = [p.headers["webhook-id"] for p in http.posts]
    assert len(statuses) == 3
    assert len(set(statuses)) == 1


def test_a_worker_killed_while_sending_does_not_send_it_twice(
    team: Team, workers: Workers, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, _ = receivers
    http.posts.clear()
    http.answer(Answer(200, delay=30))  # the post arrives; the answer never gets back
    with tenant_scope([team.tenant]):
        notes.create_channel(
            actor=Actor.cli(), tenant=team.tenant, name="hook", kind="webhook", url=http.url()
        )
    fail_a_run(team, ["hook"])
    http.wait(1, timeout=60)
    assert len(http.posts) == 1
    for name in ("w1", "w2"):  # whichever was sending dies with the message unrecorded
        os.killpg(workers.named[name].pid, signal.SIGKILL)
        workers.named[name].wait()
    workers.start_worker("w3")
    workers.start_worker("w4")
    [row] = deliveries(team)
    deliver_task.delay(row.pk)  # as the broker would redeliver the unacknowledged message

    def failed() -> Delivery | None:
        rows = deliveries(team)
        return rows[0] if rows[0].status == "failed" else None

    row = wait_for(failed, 60, "the lost claim to be failed by the reconciler", workers)
    assert "not sent again automatically" in row.last_error
    assert len(http.posts) == 1
