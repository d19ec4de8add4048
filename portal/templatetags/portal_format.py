"""How the portal writes times, durations and states: `{% load portal_format %}`.

{% when run.created_at %}       <time> in UTC, shown in the reader's zone by portal.js
{{ seconds|duration }}          "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min", "3 d 4 h"
{% span run.started_at run.ended_at %}   the duration between two times (to now if open)
{% state_badge run.state %}     a badge with the state's colour, glyph and name
{% query_with cursor=page.next_cursor %}   this page's query string, one key changed
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

__all__ = [
    "GLYPHS",
    "duration",
    "lookup",
    "query_with",
    "register",
    "span",
    "state_badge",
    "state_glyph",
    "state_label",
    "when",
]

register = template.Library()

# A state is never told by colour alone: each also has a glyph and its name in words.
GLYPHS = {
    "success": "✓",
    "completed": "✓",
    "failed": "✗",
    "upstream_failed": "⊘",
    "running": "▶",
    "queued": "…",
    "scheduled": "◷",
    "pending": "○",
    "up_for_retry": "↻",
    "skipped": "↷",
    "cancelled": "■",
    "paused": "‖",
    "rescheduled": "↺",
}
UNKNOWN_GLYPH = "•"


@register.simple_tag
def when(moment: dt.datetime | None) -> SafeString | str:
    if moment is None:
        return "—"
    utc = moment.astimezone(dt.UTC)
    return format_html(
        '<time datetime="{}" data-local>{}</time>',
        utc.isoformat(),
        utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


@register.filter
def duration(seconds: float | dt.timedelta | None) -> str:
    if seconds is None:
        return "—"
    if isinstance(seconds, dt.timedelta):
        seconds = seconds.total_seconds()
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for unit, size, sub, sub_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            rest = (whole % size) // sub_size
            return f"{whole // size} {unit} {rest} {sub}" if rest else f"{whole // size} {unit}"
    return f"{whole} s"  # pragma: no cover (60 s and more is caught above)


@register.simple_tag
def span(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """From start to end, or to now while it is still going; "—" before it started."""
    if start is None:
        return "—"
    return duration(((end or timezone.now()) - start).total_seconds())


@register.simple_tag
def state_badge(state: str | None) -> SafeString:
    state = state or "none"
    return format_html(
        '<span class="badge st-{}"><span aria-hidden="true">{}</span> {}</span>',
        state,
        state_glyph(state),
        state.replace("_", " "),
    )


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: object) -> str:
    """`?` and the current request's query with `changes` applied (None or "" drops a key):
    links to the next page, or a filter, that keep the other filters."""
    query = context["request"].GET.copy()
    for key, value in changes.items():
        query.pop(key, None)
        if value not in (None, ""):
            query[key] = str(value)
    return "?" + query.urlencode() if query else "?"


@register.filter
def lookup(mapping: object, key: object) -> object:
    """Templates cannot index a dict by a variable; an undefined variable arrives as ""."""
    return mapping.get(key) if isinstance(mapping, Mapping) else None


@register.filter
def state_glyph(state: str | None) -> str:
    return GLYPHS.get(state or "", UNKNOWN_GLYPH)


@register.filter
def state_label(state: str | None) -> str:
    """A state is never told by colour alone: its glyph and its name in words."""
    if not state:
        return ""
    return f"{state_glyph(state)} {state.replace('_', ' ')}"
