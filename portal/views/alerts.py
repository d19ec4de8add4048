"""Alerts: where a team hears of its runs (channels), which events go where (rules), what
was sent and how it went (deliveries), and the SLAs its workflows missed; and the forms
that change them.

Every form calls the service the REST API calls (notifications.services, and
notifications.delivery for a retry) with the API's permission: every member reads, an
operator sends a failed delivery again, an editor manages rules, an admin manages
channels. A channel's URL and signing secret are write-only as in the API: the URL is
never shown again (its scheme and host are, as `url_hint`), the signing secret once, on
the page that made it (creation or rotation)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from notifications import delivery as deliveries
from notifications import selectors, services
from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator.errors import Invalid
from portal.actions import FieldErrors, TenantForm, by_field
from portal.pages import TenantPage, keyset_page
from runs.models import Event
from workflows.durations import format_duration

__all__ = [
    "ChannelCreate",
    "ChannelDelete",
    "ChannelEdit",
    "ChannelRotateSecret",
    "ChannelTest",
    "ChannelsPage",
    "DeliveriesPage",
    "DeliveryRetry",
    "RuleCreate",
    "RuleDelete",
    "RuleEdit",
    "RulesPage",
    "SlaMissesPage",
    "urlpatterns",
]

PAGE_SIZE = 50
# The tabs of the alerts pages: (URL name, label).
TABS = (
    ("portal:alerts", "Channels"),
    ("portal:alert-rules", "Rules"),
    ("portal:deliveries", "Deliveries"),
    ("portal:sla-misses", "SLA misses"),
)
# A delivery's status is never told by colour alone: a glyph and its name go with it.
STATUS_GLYPHS = {"pending": "○", "sent": "✓", "failed": "✗", "suppressed": "⊖"}
KINDS = SlaMiss.Kind.values
DESCRIPTION_LIMIT = 500  # the API's serializers accept at most this many characters


# --- reading ---------------------------------------------------------------------------------


class AlertsPage(TenantPage):
    """One tab of the alerts pages: every member may read them."""

    permission = "notification.view"
    nav = "alerts"
    tab: ClassVar[str]

    def page_context(self) -> dict[str, Any]:
        return super().page_context() | {"tabs": TABS, "tab": self.tab}


class ChannelsPage(AlertsPage):
    """The channels with what the API shows of them: a URL only as its scheme and host."""

    template_name = "portal/alerts/channels.html"
    tab = "portal:alerts"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return {"channels": list(selectors.all_channels())}


class RulesPage(AlertsPage):
    template_name = "portal/alerts/rules.html"
    tab = "portal:alert-rules"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        return {"rows": [(rule, quiet_words(rule)) for rule in selectors.all_rules()]}


class DeliveriesPage(AlertsPage):
    """Newest first, by keyset pages, filtered by status and channel as the API's list."""

    template_name = "portal/alerts/deliveries.html"
    tab = "portal:deliveries"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        filters = delivery_filters(self.request)
        found = selectors.delivery_list(status=filters["status"], channel=filters["channel"])
        page = keyset_page(
            found,
            key="id",
            descending=True,
            cursor=self.request.GET.get("cursor"),
            size=PAGE_SIZE,
            parse=int,
        )
        rows = [(d, STATUS_GLYPHS.get(d.status, "•")) for d in page.items]
        return self.choices() | {"page": page, "rows": rows, "filters": filters}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return self.choices() | {"rows": [], "filters": delivery_filters(self.request)}

    def choices(self) -> dict[str, Any]:
        names = selectors.all_channels().values_list("name", flat=True)
        return {"statuses": Delivery.Status.values, "channel_names": list(names)}


class SlaMissesPage(AlertsPage):
    template_name = "portal/alerts/sla_misses.html"
    tab = "portal:sla-misses"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        filters = {name: self.request.GET.get(name, "").strip() for name in ("workflow", "kind")}
        found = selectors.sla_miss_list(workflow=filters["workflow"], kind=filters["kind"])
        page = keyset_page(
            found,
            key="id",
            descending=True,
            cursor=self.request.GET.get("cursor"),
            size=PAGE_SIZE,
            parse=int,
        )
        return {"page": page, "misses": page.items, "filters": filters, "kinds": KINDS}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        filters = {name: self.request.GET.get(name, "") for name in ("workflow", "kind")}
        return {"misses": [], "filters": filters, "kinds": KINDS}


def quiet_words(rule: Rule) -> str:
    return format_duration(rule.quiet_period) if rule.quiet_period else ""


def delivery_filters(request: HttpRequest) -> dict[str, str]:
    return {name: request.GET.get(name, "").strip() for name in ("status", "channel")}


# --- the forms' shared translation -------------------------------------------------------------


def words(text: str) -> list[str]:
    """A list typed into one box: separated by commas, spaces or new lines."""
    return [word for word in re.split(r"[\s,;]+", text) if word]


def described(post: Any) -> str:
    """The description as typed; refused past the API's limit (its serializer's check)."""
    text = str(post.get("description", "")).strip()
    if len(text) > DESCRIPTION_LIMIT:
        raise Invalid([("description", f"too long: at most {DESCRIPTION_LIMIT} characters")])
    return text


class AlertForm(TenantForm):
    """A form of the alerts pages: errors shown by the form's own fields."""

    nav = "alerts"
    fields: ClassVar[tuple[str, ...]] = ()

    def again(self, errors: FieldErrors, status: int, **kwargs: Any) -> HttpResponse:
        return super().again(by_field(errors, self.fields), status, **kwargs)

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            "values": values or {},
            "posted": values is not None,
            "errors": errors,
            "general": errors.get("", []),
        }

    def url(self, name: str, *args: Any) -> str:
        return reverse(name, args=[self.tenant.slug, *args])


class SecretOnce(AlertForm):
    """A form whose success makes a signing secret: the answer is the page that shows it,
    this once (never stored, never redirected to, never cached), instead of a redirect."""

    single_use = True
    secret: str | None = None
    channel: Channel

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        done = super().post(request, *args, **kwargs)
        if self.secret is None or not isinstance(done, HttpResponseRedirect):
            return done
        context = self.page_context() | {"channel": self.channel, "secret": self.secret}
        shown = TemplateResponse(request, "portal/alerts/secret.html", context)
        shown["Cache-Control"] = "no-store"
        return shown


# --- channels ----------------------------------------------------------------------------------


class ChannelCreate(SecretOnce):
    permission = "notification_channel.manage"
    template_name = "portal/alerts/channel_form.html"
    fields = ("name", "kind", "description", "enabled", "url", "recipients")

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        if values is None:
            context["values"] = {"kind": Channel.Kind.WEBHOOK, "enabled": "on"}
        return context | {"kinds": Channel.Kind.values}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        self.channel, self.secret = services.create_channel(
            actor=self.actor,
            tenant=self.tenant,
            name=post.get("name", "").strip(),
            kind=post.get("kind", ""),
            description=described(post),
            enabled="enabled" in post,
            url=post.get("url", "").strip() or None,
            recipients=words(post.get("recipients", "")),
        )
        return self.url("portal:alerts"), f"Channel {self.channel.name} created."


class ChannelEdit(AlertForm):
    """Name, description, enabled, recipients; a new URL replaces the old one, which is
    never shown (an empty box keeps it). A channel keeps its kind."""

    permission = "notification_channel.manage"
    template_name = "portal/alerts/channel_form.html"
    fields = ("name", "description", "enabled", "url", "recipients")

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        channel = selectors.get_channel(kwargs["channel"])
        context = super().form_context(values=values, errors=errors)
        if values is None:
            context["values"] = {
                "name": channel.name,
                "description": channel.description,
                "enabled": "on" if channel.enabled else "",
                "recipients": "\n".join(channel.recipients),
            }
        return context | {"channel": channel}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        post = self.request.POST
        channel = selectors.get_channel(kwargs["channel"])
        changes: dict[str, Any] = {
            "name": post.get("name", "").strip(),
            "description": described(post),
            "enabled": "enabled" in post,
        }
        if url := post.get("url", "").strip():
            changes["url"] = url
        if channel.kind == Channel.Kind.EMAIL:
            changes["recipients"] = words(post.get("recipients", ""))
        saved = services.update_channel(actor=self.actor, channel=channel, **changes)
        return self.url("portal:alerts"), f"Channel {saved.name} saved."


class ChannelAction(AlertForm):
    """A confirmation on GET of what will happen to one channel, done on POST."""

    permission = "notification_channel.manage"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        return context | {"channel": selectors.get_channel(kwargs["channel"])}


class ChannelTest(ChannelAction):
    """Send a test message now and say what the receiver answered. Changes nothing (the
    service audits nothing either)."""

    template_name = "portal/alerts/channel_test.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        channel = selectors.get_channel(kwargs["channel"])
        ok, answer = services.test_channel(actor=self.actor, channel=channel)
        if ok:
            messages.success(request, f"Test message to {channel.name} sent: {answer}")
        else:
            messages.error(request, f"Test message to {channel.name} failed: {answer}")
        if request.POST.get("back") == "list":
            return HttpResponseRedirect(self.url("portal:alerts"))
        return HttpResponseRedirect(self.url("portal:channel-edit", channel.name))


class ChannelRotateSecret(ChannelAction, SecretOnce):
    template_name = "portal/alerts/channel_rotate.html"

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        self.channel = selectors.get_channel(kwargs["channel"])
        self.secret = services.rotate_secret(actor=self.actor, channel=self.channel)
        return self.url("portal:alerts"), f"Channel {self.channel.name} has a new signing secret."


class ChannelDelete(ChannelAction):
    """Refused (by the service) while a workflow's notify names the channel."""

    template_name = "portal/alerts/channel_delete.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors, **kwargs)
        channel: Channel = context["channel"]
        return context | {
            "deliveries": channel.deliveries.count(),
            "rules": list(channel.rules.values_list("name", flat=True)),
        }

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        channel = selectors.get_channel(kwargs["channel"])
        services.delete_channel(actor=self.actor, channel=channel)
        return self.url("portal:alerts"), f"Channel {channel.name} deleted."


# --- rules -------------------------------------------------------------------------------------


class RuleForm(AlertForm):
    """Event types and channels as checkboxes, workflows and tags typed as lists."""

    permission = "notification_rule.manage"
    template_name = "portal/alerts/rule_form.html"
    fields = (
        "name",
        "description",
        "enabled",
        "event_types",
        "workflows",
        "tags",
        "channels",
        "quiet_period",
    )

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        post = self.request.POST
        if values is not None:  # what was posted: each checkbox list whole
            context["values"] |= {
                "event_types": post.getlist("event_types"),
                "channels": post.getlist("channels"),
            }
        return context | {
            "event_types": Event.Type.choices,
            "channel_choices": list(selectors.all_channels()),
        }

    def given(self) -> dict[str, Any]:
        """The rule's fields as the service takes them (it checks every one)."""
        post = self.request.POST
        return {
            "name": post.get("name", "").strip(),
            "description": described(post),
            "enabled": "enabled" in post,
            "event_types": post.getlist("event_types"),
            "workflows": words(post.get("workflows", "")),
            "tags": words(post.get("tags", "")),
            "channels": post.getlist("channels"),
            "quiet_period": post.get("quiet_period", "").strip() or 0,
        }


class RuleCreate(RuleForm):
    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        if values is None:
            context["values"] = {"enabled": "on", "event_types": [Event.Type.RUN_FAILED]}
        return context

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        rule = services.create_rule(actor=self.actor, tenant=self.tenant, **self.given())
        return self.url("portal:alert-rules"), f"Rule {rule.name} created."


class RuleEdit(RuleForm):
    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        rule = selectors.get_rule(kwargs["rule"])
        context = super().form_context(values=values, errors=errors)
        if values is None:
            context["values"] = {
                "name": rule.name,
                "description": rule.description,
                "enabled": "on" if rule.enabled else "",
                "event_types": rule.event_types,
                "workflows": ", ".join(rule.workflows),
                "tags": ", ".join(rule.tags),
                "channels": [c.name for c in rule.channels.all()],
                "quiet_period": quiet_words(rule),
            }
        return context | {"rule": rule}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        rule = selectors.get_rule(kwargs["rule"])
        saved = services.update_rule(actor=self.actor, rule=rule, **self.given())
        return self.url("portal:alert-rules"), f"Rule {saved.name} saved."


class RuleDelete(AlertForm):
    permission = "notification_rule.manage"
    template_name = "portal/alerts/rule_delete.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        return context | {"rule": selectors.get_rule(kwargs["rule"])}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        rule = selectors.get_rule(kwargs["rule"])
        services.delete_rule(actor=self.actor, rule=rule)
        return self.url("portal:alert-rules"), f"Rule {rule.name} deleted."


# --- deliveries --------------------------------------------------------------------------------


class DeliveryRetry(AlertForm):
    """Send a failed delivery again (the service refuses any other with a 409); back to the
    deliveries list with its filters."""

    permission = "notification_delivery.retry"
    template_name = "portal/alerts/delivery_retry.html"

    def form_context(
        self, *, values: dict[str, Any] | None, errors: FieldErrors, **kwargs: Any
    ) -> dict[str, Any]:
        context = super().form_context(values=values, errors=errors)
        return context | {"delivery": selectors.get_delivery(kwargs["delivery"])}

    def perform(self, **kwargs: Any) -> tuple[str, str]:
        target = selectors.get_delivery(kwargs["delivery"])
        deliveries.retry_delivery(actor=self.actor, delivery=target)
        post = self.request.POST
        kept = {k: post[k] for k in ("status", "channel", "cursor") if post.get(k)}
        back = self.url("portal:deliveries") + (f"?{urlencode(kept)}" if kept else "")
        return back, f"Delivery {target.pk} to {target.channel.name} is being sent again."


urlpatterns = [
    path("alerts/", ChannelsPage.as_view(), name="alerts"),
    path("alerts/rules/", RulesPage.as_view(), name="alert-rules"),
    path("alerts/deliveries/", DeliveriesPage.as_view(), name="deliveries"),
    path(
        "alerts/deliveries/<int:delivery>/retry/",
        DeliveryRetry.as_view(),
        name="delivery-retry",
    ),
    path("alerts/sla-misses/", SlaMissesPage.as_view(), name="sla-misses"),
    # Editors' paths are apart from the pages', so no channel or rule name can collide.
    path("alerts/channel-editor/", ChannelCreate.as_view(), name="channel-new"),
    path("alerts/channel-editor/<str:channel>/", ChannelEdit.as_view(), name="channel-edit"),
    path("alerts/channel-editor/<str:channel>/test/", ChannelTest.as_view(), name="channel-test"),
    path(
        "alerts/channel-editor/<str:channel>/rotate-secret/",
        ChannelRotateSecret.as_view(),
        name="channel-rotate-secret",
    ),
    path(
        "alerts/channel-editor/<str:channel>/delete/",
        ChannelDelete.as_view(),
        name="channel-delete",
    ),
    path("alerts/rule-editor/", RuleCreate.as_view(), name="rule-new"),
    path("alerts/rule-editor/<str:rule>/", RuleEdit.as_view(), name="rule-edit"),
    path("alerts/rule-editor/<str:rule>/delete/", RuleDelete.as_view(), name="rule-delete"),
]
