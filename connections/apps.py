from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"

    def ready(self) -> None:
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions

        # "Admins manage connections and secrets, editors variables." Editors see the
        # metadata of connections and secrets (to use them in specs), never their values.
        register_permissions(
            {
                "connection.view": Role.EDITOR,
                "connection.manage": Role.ADMIN,
                "secret.view": Role.EDITOR,
                "secret.manage": Role.ADMIN,
                "variable.view": Role.VIEWER,
                "variable.manage": Role.EDITOR,
            }
        )
