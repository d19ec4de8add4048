from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        """Hook notifications into what it builds on, which knows nothing of it: the
        engine's outbox (new events are routed after commit), the reconciler's repairs
        (leftover events, due and lost deliveries, quiet-period counts, SLA checks), the
        apply-time check of `notify.channels`, and the permissions."""
        from notifications import delivery, routing, services, sla
        from notifications.models import Delivery
        from notifications.tasks import route
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions
        from runs import engine, retention
        from runs.engine import events
        from workflows.services import APPLY_CHECKS

        events.on_events(lambda ids: route.delay(ids))
        engine.register_repair("routed_events", routing.route_leftovers)
        engine.register_repair("quiet_summaries", routing.flush_quiet_windows)
        engine.register_repair("resent_deliveries", delivery.resend_due)
        engine.register_repair("lost_deliveries", delivery.fail_lost_claims)
        engine.register_repair("sla_misses", sla.check)
        # Retention keeps an event while a delivery of it is still to be sent.
        retention.register_event_hold(
            "pending_deliveries",
            lambda: (
                Delivery.objects.dangerously_unscoped()
                .filter(status=Delivery.Status.PENDING)
                .values("event_id")
            ),
        )
        APPLY_CHECKS.append(services.check_notify_channels)
        register_permissions(
            {
                "notification.view": Role.VIEWER,
                "notification_delivery.retry": Role.OPERATOR,
                "notification_rule.manage": Role.EDITOR,
                "notification_channel.manage": Role.ADMIN,
            }
        )
