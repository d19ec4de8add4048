from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from orchestrator.models import Role
        from orchestrator.policy import register_permissions
        from runs.executor import EXECUTORS
        from runs.periodic import ensure_periodic_tasks
        from workflows.services import DELETE_GUARDS
        from workflows.task_types import register_executor

        post_migrate.connect(ensure_periodic_tasks, sender=self)
        from runs.guards import active_runs

        DELETE_GUARDS.append(active_runs)
        from runs.sensors import CHECKS

        for task_type in EXECUTORS:
            register_executor(task_type, tuple(CHECKS) if task_type == "wait_for" else None)
        register_permissions(
            {
                "run.view": Role.VIEWER,
                "run.operate": Role.OPERATOR,
                "backfill.view": Role.VIEWER,
                "backfill.operate": Role.OPERATOR,
            }
        )
