"""What a delivery says, in each form: Slack Block Kit (within Slack's limits, escaped),
the email's subject and parts (from the templates, the HTML escaped) and the CloudEvent;
for each event type, a quiet period's count and a channel's test."""

from __future__ import annotations

import json
from typing import Any

import pytest

from notifications import messages
from notifications.models import Channel, Delivery
from runs.engine import events
from runs.models import Event
from tests.harness import Team, make_team

pytestmark = pytest.mark.django_db

URL = "https://orc.example.com/t/acme/runs/41/"
RUN = {
    "id": 41,
    "state": "failed",
    "trigger_source": "schedule",
    "logical_date": "2026-12-04T01:00:00+00:00",
    "created_at": "2026-12-05T02:00:00+00:00",
    "started_at": "2026-12-05T02:00:00+00:00",
    "ended_at": "2026-12-05T02:00:41.400000+00:00",
    "duration_seconds": 41.4,
}
LOAD = {
    "task_id": "load",
    "try_number": 3,
    "exit_code": 1,
    "error": "exit code 1",
    "log_tail": 'Traceback (most recent call last):\nUndefinedTable: relation "staging"',
}


def failed(**changes: Any) -> dict[str, Any]:
    data = {
        "tenant": "acme",
        "workflow": "daily-sales",
        "run": RUN,
        "url": URL,
        "failed_tasks": [LOAD],
    }
    return {**data, **changes}


@pytest.fixture
def team(db: None) -> Team:
    return make_team("acme", roles=[])


@pytest.fixture
def slack(team: Team) -> Channel:
    return Channel.objects.dangerously_unscoped().create(
        tenant=team.tenant, name="team-slack", kind="slack"
    )


def delivery(
    team: Team, target: Channel, type: str, data: dict[str, Any], **fields: Any
) -> Delivery:
    event = events.emit(tenant_id=team.tenant.pk, type=type, data=data, run_id=None)
    return Delivery.objects.dangerously_unscoped().create(
        tenant=team.tenant, key=f"e{event.pk}:c{target.pk}", event=event, channel=target, **fields
    )


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of the blocks, one a line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return "\n".join(found)


def fields(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """The facts section's fields, label: value."""
    [facts] = [b for b in blocks if "fields" in b]
    return dict(f["text"].strip("*").split("*\n", 1) for f in facts["fields"])


def within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if "fields" in block:
            assert len(block["fields"]) <= 10
            assert all(len(f["text"]) <= 2000 for f in block["fields"])


# --- a failed run --------------------------------------------------------------------------


def test_a_failed_run_in_slack_has_the_facts_the_task_its_error_and_the_link(
    team: Team, slack: Channel
) -> None:
    message = messages.for_delivery(delivery(team, slack, "run.failed", failed()))
    blocks = message.blocks
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "daily-sales failed", "emoji": True},
    }
    assert fields(blocks) == {
        "Tenant": "acme",
        "Event": "run.failed",
        "Run": "41 (failed)",
        "Trigger": "schedule",
        "Logical date": "2026-12-04T01:00:00+00:00",
        "Duration": "41.4 s",
    }
    assert blocks[2]["text"]["text"] == (
        "*Task* `load`, try 3\n```exit code 1\nTraceback (most recent call last):\n"
        'UndefinedTable: relation "staging"```'
    )
    assert blocks[-1] == {
        "type": "actions",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open run"}, "url": URL}
        ],
    }
    within_slack_limits(blocks)


def test_a_failed_run_by_email_has_a_subject_to_filter_on_and_both_parts(
    team: Team, slack: Channel
) -> None:
    message = messages.for_delivery(delivery(team, slack, "run.failed", failed()))
    assert message.subject == "[orchestrator] acme/daily-sales: run 41 failed"
    assert message.text.startswith("daily-sales failed\n\nTenant:        acme\n")
    for line in (
        "Run:           41 (failed)",
        "Trigger:       schedule",
        "Duration:      41.4 s",
        "Failed task load (try 3): exit code 1",
        'UndefinedTable: relation "staging"',
        f"Open the run: {URL}",
    ):
        assert line in message.text
    assert '<h2 style="margin: 0 0 12px 0;">daily-sales failed</h2>' in message.html
    assert "Failed task <code>load</code> (try 3)" in message.html
    assert "UndefinedTable: relation &quot;staging&quot;" in message.html
    assert f'<a href="{URL}">Open the run</a>' in message.html


def test_the_webhook_gets_the_event_as_its_cloudevent(team: Team, slack: Channel) -> None:
    row = delivery(team, slack, "run.failed", failed())
    message = messages.for_delivery(row)
    assert message.cloudevent == events.cloudevent(row.event, "acme")
    assert message.cloudevent["id"] == str(row.event.uid)
    assert message.cloudevent["data"] == failed()


def test_error_text_cannot_ping_or_link_in_slack_nor_inject_html(
    team: Team, slack: Channel
) -> None:
    evil = {
        **LOAD,
        "error": "<!channel> <https://evil.example|click> & <script>alert(1)</script>",
    }
    message = messages.for_delivery(
        delivery(team, slack, "run.failed", failed(failed_tasks=[evil], reason="<!here> late"))
    )
    shown = texts(message.blocks)
    assert "<!channel>" not in shown
    assert "<!here>" not in shown
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; &lt;script&gt;" in shown
    assert "*Reason:* &lt;!here&gt; late" in shown
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "<script>alert(1)</script>" in message.text  # plain text: as it was


def test_a_long_log_keeps_its_start_and_end_within_slacks_limit(team: Team, slack: Channel) -> None:
    lines = [f"line {i} & more <detail>" for i in range(400)]
    long = {**LOAD, "error": "first error line", "log_tail": "\n".join(lines)}
    message = messages.for_delivery(
        delivery(team, slack, "run.failed", failed(failed_tasks=[long]))
    )
    [section] = [b for b in message.blocks if "`load`" in b.get("text", {}).get("text", "")]
    text = section["text"]["text"]
    assert len(text) <= 3000
    assert text.endswith("line 399 &amp; more &lt;detail&gt;```")
    assert "```first error line\nline 0 &amp; more" in text
    assert "\n…\n" in text
    assert text.count("```") == 2


def test_many_failed_tasks_show_five_and_count_the_rest(team: Team, slack: Channel) -> None:
    tasks = [{**LOAD, "task_id": f"t{i}"} for i in range(10)]
    message = messages.for_delivery(delivery(team, slack, "run.failed", failed(failed_tasks=tasks)))
    shown = texts(message.blocks)
    assert [f"`t{i}`" in shown for i in range(10)] == [True] * 5 + [False] * 5
    assert "… and 5 more failed tasks: see the run" in shown
    assert all(f"Failed task t{i} (try 3)" in message.text for i in range(10))
    within_slack_limits(message.blocks)


# --- other events --------------------------------------------------------------------------


def test_a_retrying_task_says_which_try_and_when_the_next(team: Team, slack: Channel) -> None:
    data = {
        "tenant": "acme",
        "workflow": "daily-sales",
        "run": {"id": 41, "logical_date": "2026-12-04T01:00:00+00:00"},
        "task": {**LOAD, "try_number": 2, "max_tries": 3, "next_try_at": "2026-12-05T02:05:00"},
        "url": URL,
    }
    message = messages.for_delivery(delivery(team, slack, "task.retrying", data))
    assert message.subject == (
        "[orchestrator] acme/daily-sales: task load of run 41 failed, will retry"
    )
    assert message.blocks[0]["text"]["text"] == "daily-sales: task load failed, will retry"
    assert fields(message.blocks)["Run"] == "41"
    assert "*Task* `load`, try 2 of 3, next try at 2026-12-05T02:05:00\n```exit code 1" in texts(
        message.blocks
    )
    assert "Task load (try 2 of 3): exit code 1\nNext try at 2026-12-05T02:05:00" in message.text
    assert message.blocks[-1]["elements"][0]["url"] == URL


def test_a_failed_task_has_its_own_subject(team: Team, slack: Channel) -> None:
    data = {"workflow": "daily-sales", "run": {"id": 41}, "task": {**LOAD, "max_tries": 3}}
    message = messages.for_delivery(delivery(team, slack, "task.failed", data))
    assert message.subject == "[orchestrator] acme/daily-sales: task load of run 41 failed"
    assert message.blocks[0]["text"]["text"] == "daily-sales: task load failed"
    assert message.blocks[-1]["type"] != "actions"  # no url, no button


def sla_data(**changes: Any) -> dict[str, Any]:
    data = {
        "tenant": "acme",
        "workflow": "daily-sales",
        "sla": {
            "kind": "run_duration",
            "sla": "run_duration: 1h",
            "due_at": "2026-12-05T03:00:00+00:00",
        },
        "run": {**RUN, "state": "running", "ended_at": None, "duration_seconds": None},
        "url": URL,
    }
    return {**data, **changes}


def test_a_late_run_says_what_was_late_and_when_it_was_due(team: Team, slack: Channel) -> None:
    message = messages.for_delivery(delivery(team, slack, "sla.missed", sla_data()))
    assert message.subject == (
        "[orchestrator] acme/daily-sales: run 41 missed its SLA (run_duration: 1h)"
    )
    assert message.blocks[0]["text"]["text"] == "daily-sales missed its SLA"
    assert fields(message.blocks)["Run"] == "41 (running)"
    assert "Duration" not in fields(message.blocks)
    assert "*SLA missed:* `run_duration: 1h`, due at 2026-12-05T03:00:00+00:00" in texts(
        message.blocks
    )
    assert "SLA missed:    run_duration: 1h, due at 2026-12-05T03:00:00+00:00" in message.text
    assert "<code>run_duration: 1h</code>" in message.html
    assert message.blocks[-1]["elements"][0]["url"] == URL


def test_a_late_task_names_the_task(team: Team, slack: Channel) -> None:
    sla = {"kind": "task_duration", "sla": "duration: 10m", "due_at": "2026-12-05T02:10:00"}
    message = messages.for_delivery(
        delivery(team, slack, "sla.missed", sla_data(sla=sla, task_id="load"))
    )
    assert message.subject == (
        "[orchestrator] acme/daily-sales: task load of run 41 missed its SLA (duration: 10m)"
    )
    assert message.blocks[0]["text"]["text"] == "daily-sales: task load missed its SLA"
    assert "*SLA missed:* `duration: 10m` of task `load`" in texts(message.blocks)
    assert "SLA missed:    duration: 10m (task load)" in message.text


def test_a_missed_deadline_with_no_run_has_no_run_and_no_link(team: Team, slack: Channel) -> None:
    sla = {"kind": "deadline", "sla": "deadline: 06:00 (UTC)", "due_at": "2026-12-05T06:00:00"}
    message = messages.for_delivery(
        delivery(team, slack, "sla.missed", sla_data(sla=sla, run=None, url=None))
    )
    assert message.subject == (
        "[orchestrator] acme/daily-sales: the scheduled run missed its SLA (deadline: 06:00 (UTC))"
    )
    assert "Run" not in fields(message.blocks)
    assert all(block["type"] != "actions" for block in message.blocks)
    assert "Open the run" not in message.text
    assert "<a href" not in message.html


def test_a_cancelled_run_gives_its_reason(team: Team, slack: Channel) -> None:
    data = failed(run={**RUN, "state": "cancelled"}, reason="cancelled by alice")
    del data["failed_tasks"]
    message = messages.for_delivery(delivery(team, slack, "run.cancelled", data))
    assert message.subject == "[orchestrator] acme/daily-sales: run 41 was cancelled"
    assert "*Reason:* cancelled by alice" in texts(message.blocks)
    assert "Reason:        cancelled by alice" in message.text


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.25, "0.2 s"), (250, "4 min 10 s"), (7380.5, "2 h 03 min")]
)
def test_a_duration_reads_as_a_person_would_say_it(
    team: Team, slack: Channel, seconds: float, shown: str
) -> None:
    data = failed(run={**RUN, "state": "success", "duration_seconds": seconds})
    message = messages.for_delivery(delivery(team, slack, "run.succeeded", data))
    assert message.subject == "[orchestrator] acme/daily-sales: run 41 succeeded"
    assert fields(message.blocks)["Duration"] == shown
    assert f"Duration:      {shown}" in message.text


def test_a_recovered_run_says_so(team: Team, slack: Channel) -> None:
    data = failed(run={**RUN, "state": "success"})
    message = messages.for_delivery(delivery(team, slack, "run.recovered", data))
    assert message.subject == "[orchestrator] acme/daily-sales: run 41 recovered"
    assert message.blocks[0]["text"]["text"] == "daily-sales recovered"


# --- a quiet period's count ----------------------------------------------------------------


def test_a_quiet_periods_count_is_one_message_about_the_last_event(
    team: Team, slack: Channel
) -> None:
    row = delivery(team, slack, "run.failed", failed(), kind="summary", suppressed_count=49)
    message = messages.for_delivery(row)
    said = (
        "49 more events from workflow daily-sales during the quiet period "
        "(last: run.failed of run 41)."
    )
    assert message.subject == (
        "[orchestrator] acme/daily-sales: 49 more events during the quiet period"
    )
    assert message.blocks[0]["text"]["text"] == "daily-sales: 49 more events"
    assert message.blocks[1]["text"]["text"] == said
    assert message.blocks[-1]["elements"][0] == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Open the last run"},
        "url": URL,
    }
    assert message.text.startswith(said)
    assert f"Open the last run: {URL}" in message.text
    assert f'<a href="{URL}">Open the last run</a>' in message.html


def test_a_quiet_periods_cloudevent_counts_and_carries_the_last_event(
    team: Team, slack: Channel
) -> None:
    row = delivery(team, slack, "run.failed", failed(), kind="summary", suppressed_count=49)
    envelope = messages.for_delivery(row).cloudevent
    last = events.cloudevent(row.event, "acme")
    assert envelope == {
        "specversion": "1.0",
        "id": f"{row.event.uid}-summary-{row.pk}",
        "source": "/tenants/acme/workflows/daily-sales",
        "type": "notification.suppressed",
        "time": row.created_at.isoformat(),
        "datacontenttype": "application/json",
        "tenant": "acme",
        "data": {"count": 49, "last_event": last},
    }
    # The same on every attempt: a receiver may deduplicate on the id.
    assert messages.for_delivery(row).cloudevent == envelope
    json.dumps(envelope)  # serialisable as it is


def test_one_suppressed_event_is_one_event(team: Team, slack: Channel) -> None:
    data = failed()
    del data["url"]
    row = delivery(team, slack, "sla.missed", data, kind="summary", suppressed_count=1)
    message = messages.for_delivery(row)
    assert (
        message.subject == "[orchestrator] acme/daily-sales: 1 more event during the quiet period"
    )
    assert "(last: sla.missed of run 41)" in message.blocks[1]["text"]["text"]
    assert all(block["type"] != "actions" for block in message.blocks)


# --- a channel's test ----------------------------------------------------------------------


def test_a_test_message_says_it_is_a_test_from_the_tenant_and_the_channel(
    team: Team, slack: Channel
) -> None:
    message = messages.test_message(slack)
    said = (
        "This is a test message from the orchestrator for tenant acme, channel team-slack "
        "(slack). If you can read it, the channel works."
    )
    assert message.subject == "[orchestrator] acme: test message for channel team-slack"
    assert message.text.startswith(said + "\n")
    assert "channel <strong>team-slack</strong> (slack)" in message.html
    assert message.blocks[0]["text"]["text"] == "Test message"
    assert message.blocks[1]["text"]["text"] == said
    envelope = message.cloudevent
    assert envelope["type"] == "notification.test"
    assert envelope["source"] == "/tenants/acme"
    assert envelope["subject"] == "notification-channels/team-slack"
    assert envelope["data"] == {"tenant": "acme", "channel": "team-slack", "kind": "slack"}
    assert messages.test_message(slack).cloudevent["id"] != envelope["id"]  # each test is new


def test_an_event_of_a_type_it_does_not_know_still_reads(team: Team, slack: Channel) -> None:
    """Types added to the outbox later get a plain message until they have their own."""
    row = delivery(team, slack, "run.failed", failed())
    Event.objects.dangerously_unscoped().filter(pk=row.event_id).update(type="run.paused")
    row.event.refresh_from_db()
    message = messages.for_delivery(row)
    assert message.subject == "[orchestrator] acme/daily-sales: run 41 run.paused"
    assert message.blocks[0]["text"]["text"] == "daily-sales run.paused"
