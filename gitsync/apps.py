from __future__ import annotations

from django.apps import AppConfig

__all__ = ["GitsyncConfig"]


class GitsyncConfig(AppConfig):
    name = "gitsync"
    verbose_name = "GitOps pull mode"

    def ready(self) -> None:
        """The permissions of git sources, and the schedule's periodic job (made after
        migrate when missing, like the platform's others)."""
        from django.db.models.signals import post_migrate

        from gitsync.periodic import ensure_periodic_task
        from orchestrator.models import Role
        from orchestrator.policy import register_permissions

        post_migrate.connect(ensure_periodic_task, sender=self)
        register_permissions(
            {
                "git_source.view": Role.VIEWER,
                "git_source.sync": Role.OPERATOR,
                "git_source.manage": Role.EDITOR,
            }
        )
