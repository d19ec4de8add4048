from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"

    def ready(self) -> None:
        """Hook events into what it builds on, which knows nothing of it: the engine's
        outbox (new events are dispatched to event triggers and dataset schedules after
        commit), its OpenLineage outbox (sent after commit), the reconciler's repairs, and the
        permissions."""
        from events import dispatch, openlineage
        from events.models import WebhookDelivery
        from events.tasks import dispatch as dispatch_task
        from events.tasks import send_lineage
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions
        from runs import engine, retention
        from runs.engine import events

        events.on_events(lambda ids: dispatch_task.delay(ids))
        engine.register_repair("dispatched_events", dispatch.dispatch_leftovers)
        engine.register_repair("dataset_schedules", dispatch.evaluate_waiting_schedules)
        engine.on_lineage(lambda ids: send_lineage.delay(ids))
        engine.register_repair("lineage_events", openlineage.resend_due)
        # Retention deletes old webhook deliveries (their idempotency memory) with the rest.
        retention.register_purge("webhook_deliveries", WebhookDelivery, "received_at")

        register_permissions(
            {
                "event.view": Role.VIEWER,
                "event.publish": Role.OPERATOR,
                "webhook.view": Role.VIEWER,
                "webhook.manage": Role.EDITOR,
                "lineage.view": Role.VIEWER,
            }
        )
