"""Filters the portal's drawings use: `{% load portal_tags %}`.

{{ states|lookup:node.id }}   a mapping's value for a key; None when absent or no mapping
{{ state|state_glyph }}       the state's glyph: "✓", "✗", "▶", "↻", "…", "↷", ...
{{ state|state_label }}       glyph and words, "↻ up for retry": a state is never told by
                              colour alone
"""

from __future__ import annotations

from collections.abc import Mapping

from django import template

from portal.templatetags.portal_format import GLYPHS

__all__ = ["lookup", "register", "state_glyph", "state_label"]

register = template.Library()

UNKNOWN_GLYPH = "•"


@register.filter
def lookup(mapping: object, key: object) -> object:
    """Templates cannot index a dict by a variable; an undefined variable arrives as ""."""
    return mapping.get(key) if isinstance(mapping, Mapping) else None


@register.filter
def state_glyph(state: str | None) -> str:
    return GLYPHS.get(state or "", UNKNOWN_GLYPH)


@register.filter
def state_label(state: str | None) -> str:
    if not state:
        return ""
    return f"{state_glyph(state)} {state.replace('_', ' ')}"
