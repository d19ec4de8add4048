from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Platform"

    def ready(self) -> None:
        from orchestrator import checks  # noqa: F401  (registers the deploy checks)
