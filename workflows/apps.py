from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"

    def ready(self) -> None:
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions

        register_permissions(
            {
                "workflow.view": Role.VIEWER,
                "workflow.pause": Role.OPERATOR,
                "workflow.edit": Role.EDITOR,
                "package.view": Role.VIEWER,
                "package.upload": Role.EDITOR,
            }
        )
