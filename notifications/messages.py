"""What a delivery says: one Message per event (or quiet-period count) with every form the
transports need: a Slack Block Kit message, an email (subject, text and HTML parts from
the template files in templates/notifications/email/) and the CloudEvent for webhooks.
The event's data is already masked (errors and logs are masked when a try records them)."""

from __future__ import annotations

import uuid
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from notifications.models import Channel, Delivery
from notifications.transports import Message
from runs.engine.events import cloudevent
from runs.models import Event

__all__ = ["for_delivery", "test_message"]

SLACK_TEXT_LIMIT = 2900  # a section's text may hold 3000 characters
SLACK_TASKS_SHOWN = 5

_HEADLINES = {
    "run.succeeded": (":large_green_circle:", "succeeded"),
    "run.failed": (":red_circle:", "failed"),
    "run.recovered": (":white_check_mark:", "recovered"),
    "run.cancelled": (":black_circle:", "was cancelled"),
    "task.failed": (":red_circle:", "task failed"),
    "task.retrying": (":large_orange_circle:", "task failed, will retry"),
    "sla.missed": (":alarm_clock:", "missed its SLA"),
}


def for_delivery(delivery: Delivery) -> Message:
    event, tenant = delivery.event, delivery.channel.tenant.slug
    if delivery.kind == Delivery.Kind.SUMMARY:
        return _summary(event, tenant, delivery.suppressed_count, delivery.pk)
    return _event_message(event, tenant)


def _context(event: Event, tenant: str) -> dict[str, Any]:
    data = event.data
    emoji, verb = _HEADLINES.get(event.type, (":bell:", event.type))
    run = data.get("run") or {}
    task = data.get("task") or {}
    subject_bits = [f"[orchestrator] {tenant}/{data.get('workflow') or '-'}:"]
    if event.type.startswith("task."):
        subject_bits.append(f"task {task.get('task_id')} of run {run.get('id')} {verb}")
    elif event.type == "sla.missed":
        subject_bits.append(f"{(data.get('sla') or {}).get('sla', 'SLA')} missed")
    else:
        subject_bits.append(f"run {run.get('id')} {verb}")
    return {
        "event": event,
        "type": event.type,
        "tenant": tenant,
        "workflow": data.get("workflow"),
        "verb": verb,
        "emoji": emoji,
        "run": run,
        "task": task,
        "failed_tasks": data.get("failed_tasks") or [],
        "sla": data.get("sla") or {},
        "sla_task": data.get("task_id") or "",
        "reason": data.get("reason") or "",
        "url": data.get("url") or "",
        "subject": " ".join(subject_bits),
    }


def _event_message(event: Event, tenant: str) -> Message:
    context = _context(event, tenant)
    return Message(
        subject=context["subject"],
        text=render_to_string("notifications/email/event.txt", context),
        html=render_to_string("notifications/email/event.html", context),
        blocks=_blocks(context),
        cloudevent=cloudevent(event, tenant),
    )


def _code(text: str) -> str:
    text = text.replace("```", "'''")
    return f"```{text[:SLACK_TEXT_LIMIT]}```" if text else ""


def _blocks(c: dict[str, Any]) -> list[dict[str, Any]]:
    run, task = c["run"], c["task"]
    title = f"{c['workflow'] or c['tenant']} {c['verb']}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
    ]
    fields = [f"*Tenant*\n{c['tenant']}", f"*Event*\n`{c['type']}`"]
    if run.get("id") is not None:
        fields.append(f"*Run*\n{run['id']}" + (f" ({run['state']})" if run.get("state") else ""))
    if run.get("trigger_source"):
        fields.append(f"*Trigger*\n{run['trigger_source']}")
    if run.get("logical_date"):
        fields.append(f"*Logical date*\n{run['logical_date']}")
    if run.get("duration_seconds") is not None:
        fields.append(f"*Duration*\n{run['duration_seconds']:.1f} s")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    if c["reason"]:
        blocks.append(_section(f"*Reason:* {c['reason']}"))
    for failed in c["failed_tasks"][:SLACK_TASKS_SHOWN]:
        blocks.append(_task_section(failed))
    if task:
        blocks.append(_task_section(task))
    if c["sla"]:
        sla = c["sla"]
        what = f" (task `{c['sla_task']}`)" if c["sla_task"] else ""
        blocks.append(_section(f"*SLA* `{sla.get('sla')}`{what} was due at {sla.get('due_at')}"))
    if c["url"]:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open run"},
                        "url": c["url"],
                    }
                ],
            }
        )
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SLACK_TEXT_LIMIT]}}


def _task_section(task: dict[str, Any]) -> dict[str, Any]:
    head = f"*Task* `{task.get('task_id')}`, try {task.get('try_number')}"
    if task.get("next_try_at"):
        head += f", next try at {task['next_try_at']}"
    detail = task.get("log_tail") or task.get("error") or ""
    if task.get("error") and task.get("log_tail"):
        detail = f"{task['error']}\n{task['log_tail']}"
    return _section(f"{head}\n{_code(detail)}" if detail else head)


def _summary(event: Event, tenant: str, count: int, delivery_id: int) -> Message:
    """The count of a quiet period: `count` more events of the workflow were held back."""
    context = _context(event, tenant)
    context.update(count=count)
    workflow = context["workflow"] or "-"
    subject = f"[orchestrator] {tenant}/{workflow}: {count} more events during the quiet period"
    text = (
        f"{count} more event{'s' if count != 1 else ''} from workflow {workflow} arrived "
        f"during the quiet period (the last: {event.type} of run {context['run'].get('id')})."
    )
    last = cloudevent(event, tenant)
    return Message(
        subject=subject,
        text=render_to_string("notifications/email/summary.txt", {**context, "summary": text}),
        html=render_to_string("notifications/email/summary.html", {**context, "summary": text}),
        blocks=[
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"{workflow}: {count} more events"},
            },
            _section(text + (f"\n<{context['url']}|Open the last run>" if context["url"] else "")),
        ],
        cloudevent={
            "specversion": "1.0",
            "id": f"{event.uid}-summary-{delivery_id}",
            "source": last["source"],
            "type": "notification.suppressed",
            "time": last["time"],
            "datacontenttype": "application/json",
            "tenant": tenant,
            "data": {"count": count, "last_event": last},
        },
    )


def test_message(channel: Channel) -> Message:
    """What the `test` action sends: says plainly that it is a test."""
    tenant = channel.tenant.slug
    text = (
        f"This is a test message from the orchestrator for tenant {tenant}, channel "
        f"{channel.name}. If you can read it, the channel works."
    )
    return Message(
        subject=f"[orchestrator] {tenant}: test message for channel {channel.name}",
        text=text + "\n",
        html=f"<p>{text}</p>\n",
        blocks=[_section(f":wave: {text}")],
        cloudevent={
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/tenants/{tenant}",
            "type": "notification.test",
            "time": timezone.now().isoformat(),
            "datacontenttype": "application/json",
            "tenant": tenant,
            "data": {"channel": channel.name, "message": text},
        },
    )
