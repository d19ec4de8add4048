from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Platform"

    def ready(self) -> None:
        # The deploy checks register themselves; the Celery app becomes the current one, so
        # that every shared_task sends through it (the standard pattern loads it from the
        # package's __init__, which would make every import of orchestrator load Django).
        from orchestrator import celery, checks  # noqa: F401
