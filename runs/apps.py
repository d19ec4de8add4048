from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        """Hook `runs` into what it builds on, which knows nothing of it: the task types it
        can execute (workflows' registry), the probes that test connections, the guard
        against deleting a workflow with active runs, the backfill feeder's place after a
        run's end and in the repairs, the permissions and the periodic jobs."""
        from django.db.models.signals import post_migrate

        from connections.models import Connection
        from connections.services import register_connection_test
        from orchestrator import metrics
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions
        from runs import backfills, engine, gauges
        from runs.guards import active_runs
        from runs.periodic import ensure_periodic_tasks
        from runs.tasktypes import connection_tests
        from runs.tasktypes.registry import EXECUTORS
        from runs.tasktypes.wait_for import CHECKS
        from workflows.services import DELETE_GUARDS
        from workflows.task_types import register_executor

        post_migrate.connect(ensure_periodic_tasks, sender=self)
        DELETE_GUARDS.append(active_runs)
        for task_type in EXECUTORS:
            register_executor(task_type, tuple(CHECKS) if task_type == "wait_for" else None)
        register_connection_test(Connection.Kind.values, connection_tests.check)
        engine.on_run_ended(backfills.feed_ended_run)
        # Backfills also move on when one of their runs ends; this catches the rest (a
        # lost on-commit hook, a slot freed by a cancel).
        engine.register_repair("fed_backfills", backfills.feed_running)
        metrics.register_collector(gauges.collect)
        register_permissions(
            {
                "run.view": Role.VIEWER,
                "run.operate": Role.OPERATOR,
                "backfill.view": Role.VIEWER,
                "backfill.operate": Role.OPERATOR,
                "pool.view": Role.VIEWER,
                "pool.manage": Role.EDITOR,
            }
        )
