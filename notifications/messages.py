"""What a delivery says: one Message per event (or per quiet period's count), in every form
the transports need: a Slack Block Kit message, an email (a subject to filter on, text and
HTML parts rendered from templates/notifications/email/) and the CloudEvent for webhooks.

The event's data is already masked (errors and logs are masked when a try records them);
nothing here adds to it. Slack text is escaped (transports.slack_escape) so that an error
line cannot mention @channel or make a link; the HTML part is autoescaped.

A quiet period's count is the CloudEvent `notification.suppressed`, id
"<last event's id>-summary-<delivery id>", data {"count": n, "last_event": <CloudEvent>};
a channel's test message is `notification.test`."""

from __future__ import annotations

import uuid
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from notifications.models import Channel, Delivery
from notifications.transports import Message, slack_escape
from runs.engine.events import cloudevent
from runs.models import Event

__all__ = ["for_delivery", "test_message"]

SLACK_TEXT_LIMIT = 3000  # characters in a section's text
SLACK_HEADER_LIMIT = 150  # characters in a header
SLACK_TASKS_SHOWN = 5  # failed tasks with a section each (of the event's 10 at most)
GAP = "\n…\n"  # where the middle of a long error was left out

_VERBS = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.recovered": "recovered",
    "run.cancelled": "was cancelled",
    "task.failed": "failed",
    "task.retrying": "failed, will retry",
    "sla.missed": "missed its SLA",
}


def for_delivery(delivery: Delivery) -> Message:
    """The message of a delivery: its event's, or a quiet period's count."""
    tenant = delivery.channel.tenant.slug
    if delivery.kind == Delivery.Kind.SUMMARY:
        return _summary(delivery, tenant)
    context = _context(delivery.event, tenant)
    return Message(
        subject=context["subject"],
        text=render_to_string("notifications/email/event.txt", context),
        html=render_to_string("notifications/email/event.html", context),
        blocks=_blocks(context),
        cloudevent=cloudevent(delivery.event, tenant),
    )


# --- what an event says ------------------------------------------------------------------


def _context(event: Event, tenant: str) -> dict[str, Any]:
    """The event's data as the templates and the blocks read it."""
    data = event.data
    run, task = data.get("run") or {}, data.get("task") or {}
    workflow, sla = data.get("workflow") or "", data.get("sla") or {}
    task_id = str(task.get("task_id") or data.get("task_id") or "")
    where = f"{tenant}/{workflow or '-'}"
    return {
        "type": event.type,
        "tenant": tenant,
        "workflow": workflow,
        "title": _title(event.type, workflow or tenant, task_id),
        "subject": _subject(event.type, where, run.get("id"), task_id, sla.get("sla") or ""),
        "run": run,
        "duration": _duration(run.get("duration_seconds")),
        "task": task,
        "failed_tasks": data.get("failed_tasks") or [],
        "sla": sla,
        "sla_task": data.get("task_id") or "",
        "reason": data.get("reason") or "",
        "url": data.get("url") or "",
    }


def _title(type: str, name: str, task_id: str) -> str:
    """What happened, in a few words: "daily-sales failed", "daily-sales: task load failed"."""
    verb = _VERBS.get(type, type)
    return f"{name}: task {task_id} {verb}" if task_id else f"{name} {verb}"


def _subject(type: str, where: str, run_id: int | None, task_id: str, sla: str) -> str:
    """A subject a person can filter on: "[orchestrator] acme/daily-sales: run 41 failed",
    "... task load of run 41 failed, will retry", "... run 41 missed its SLA (run_duration:
    1h)"."""
    who = [f"task {task_id}"] if task_id else []
    who += [f"run {run_id}"] if run_id is not None else []
    what = f"{' of '.join(who) or 'the scheduled run'} {_VERBS.get(type, type)}"
    what += f" ({sla})" if sla else ""
    return " ".join(f"[orchestrator] {where}: {what}".split())  # one line: a mail header


def _duration(seconds: float | None) -> str:
    """41.4 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- Slack Block Kit ---------------------------------------------------------------------


def _blocks(c: dict[str, Any]) -> list[dict[str, Any]]:
    """Header, facts, what failed (or was late), the link: at most 12 blocks."""
    blocks = [_header(c["title"]), _facts(c)]
    if c["reason"]:
        blocks.append(_section(f"*Reason:* {slack_escape(c['reason'])}"))
    shown = c["failed_tasks"][:SLACK_TASKS_SHOWN]
    blocks += [_task_section(task) for task in shown]
    if len(c["failed_tasks"]) > len(shown):
        more = len(c["failed_tasks"]) - len(shown)
        blocks.append(_section(f"… and {more} more failed tasks: see the run"))
    if c["task"]:
        blocks.append(_task_section(c["task"]))
    if c["sla"]:
        blocks.append(_sla_section(c["sla"], c["sla_task"]))
    if c["url"]:
        blocks.append(_button("Open run", c["url"]))
    return blocks


def _header(text: str) -> dict[str, Any]:
    text = text if len(text) <= SLACK_HEADER_LIMIT else text[: SLACK_HEADER_LIMIT - 1] + "…"
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _facts(c: dict[str, Any]) -> dict[str, Any]:
    """Tenant, event, run, trigger, logical date, duration: the fields that are known."""
    run = c["run"]
    facts = [("Tenant", c["tenant"]), ("Event", c["type"])]
    if run.get("id") is not None:
        facts.append(("Run", f"{run['id']}" + (f" ({run['state']})" if run.get("state") else "")))
    facts += [
        (label, str(value))
        for label, value in (
            ("Trigger", run.get("trigger_source")),
            ("Logical date", run.get("logical_date")),
            ("Duration", c["duration"]),
        )
        if value
    ]
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{slack_escape(v)[:1900]}"} for k, v in facts]
    return {"type": "section", "fields": fields}


def _section(text: str) -> dict[str, Any]:
    """A mrkdwn section; `text` is escaped already."""
    if len(text) > SLACK_TEXT_LIMIT:
        text = text[: SLACK_TEXT_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _task_section(task: dict[str, Any]) -> dict[str, Any]:
    """A failed task's try and the start of its error and the end of its log."""
    head = f"*Task* `{slack_escape(str(task.get('task_id')))}`, try {task.get('try_number')}"
    if task.get("max_tries"):
        head += f" of {task['max_tries']}"
    if task.get("next_try_at"):
        head += f", next try at {slack_escape(str(task['next_try_at']))}"
    detail = "\n".join(part for part in (task.get("error"), task.get("log_tail")) if part)
    if not detail:
        return _section(head)
    detail = detail.replace("```", "'''")  # would end the code block
    room = SLACK_TEXT_LIMIT - len(head) - len("\n``````")
    return _section(f"{head}\n```{_fit(detail, room)}```")


def _sla_section(sla: dict[str, Any], task_id: str) -> dict[str, Any]:
    what = f"`{slack_escape(str(sla.get('sla') or sla.get('kind') or 'SLA'))}`"
    if task_id:
        what += f" of task `{slack_escape(task_id)}`"
    due = f", due at {slack_escape(str(sla['due_at']))}" if sla.get("due_at") else ""
    return _section(f"*SLA missed:* {what}{due}")


def _button(label: str, url: str) -> dict[str, Any]:
    button = {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
    return {"type": "actions", "elements": [button]}


def _fit(text: str, room: int) -> str:
    """`text` escaped in at most `room` characters: its start and its end (where a log says
    what went wrong), the middle left out when it is too long."""
    escaped = slack_escape(text)
    if len(escaped) <= room:
        return escaped
    half = (room - len(GAP)) // 2
    return _shrink(text, half, keep_end=False) + GAP + _shrink(text, half, keep_end=True)


def _shrink(text: str, room: int, *, keep_end: bool) -> str:
    """The start (or end) of `text` whose escaped form fits in `room` characters. Cut
    before escaping, so that no entity is cut in two."""
    part = text[-room:] if keep_end else text[:room]
    while (excess := len(slack_escape(part)) - room) > 0:
        part = part[excess:] if keep_end else part[:-excess]
    return slack_escape(part)


# --- a quiet period's count --------------------------------------------------------------


def _summary(delivery: Delivery, tenant: str) -> Message:
    """`count` more events of one workflow were held back by a quiet period; the delivery's
    event is the last of them."""
    last, count = delivery.event, delivery.suppressed_count
    context = _context(last, tenant)
    workflow = context["workflow"] or "-"
    events = f"{count} more event{'s' if count != 1 else ''}"
    run_id = context["run"].get("id")
    text = (
        f"{events} from workflow {workflow} during the quiet period "
        f"(last: {last.type}{f' of run {run_id}' if run_id else ''})."
    )
    context.update(summary=text, count=count)
    blocks = [_header(f"{workflow}: {events}"), _section(slack_escape(text))]
    if context["url"]:
        blocks.append(_button("Open the last run", context["url"]))
    return Message(
        subject=f"[orchestrator] {tenant}/{workflow}: {events} during the quiet period",
        text=render_to_string("notifications/email/summary.txt", context),
        html=render_to_string("notifications/email/summary.html", context),
        blocks=blocks,
        cloudevent=_summary_cloudevent(delivery, tenant),
    )


def _summary_cloudevent(delivery: Delivery, tenant: str) -> dict[str, Any]:
    """The same id and time on every attempt (a receiver may deduplicate on the id)."""
    last = cloudevent(delivery.event, tenant)
    made = delivery.created_at or timezone.now()
    return {
        "specversion": "1.0",
        "id": f"{last['id']}-summary-{delivery.pk}",
        "source": last["source"],
        "type": "notification.suppressed",
        "time": made.isoformat(),
        "datacontenttype": "application/json",
        "tenant": tenant,
        "data": {"count": delivery.suppressed_count, "last_event": last},
    }


# --- a channel's test --------------------------------------------------------------------


def test_message(channel: Channel) -> Message:
    """What a channel's `test` action sends: says plainly that it is a test, from where."""
    tenant = channel.tenant.slug
    context = {"tenant": tenant, "channel": channel.name, "kind": channel.kind}
    text = render_to_string("notifications/email/test.txt", context)
    return Message(
        subject=f"[orchestrator] {tenant}: test message for channel {channel.name}",
        text=text,
        html=render_to_string("notifications/email/test.html", context),
        blocks=[
            _header("Test message"),
            _section(slack_escape(text.split("\n\n")[0])),
        ],
        cloudevent={
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/tenants/{tenant}",
            "subject": f"notification-channels/{channel.name}",
            "type": "notification.test",
            "time": timezone.now().isoformat(),
            "datacontenttype": "application/json",
            "tenant": tenant,
            "data": {"tenant": tenant, "channel": channel.name, "kind": channel.kind},
        },
    )
