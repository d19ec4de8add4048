from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # LEAD-TODO: temporary while the helpers write transports/messages/services/sla;
        # the full version is in /tmp/apps_final.py.
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions

        register_permissions(
            {
                "notification.view": Role.VIEWER,
                "notification_delivery.retry": Role.OPERATOR,
                "notification_rule.manage": Role.EDITOR,
                "notification_channel.manage": Role.ADMIN,
            }
        )
