"""`manage.py apply PATH... --tenant T [--dry-run] [--prune] [--diff]`: sync a folder of
specs (GitOps) through workflows.services.apply_workflows, the service the REST endpoint
`POST .../workflows/apply/`, GraphQL and git sync use: all files validated first, then all
of them applied in one transaction, or none."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator.actors import Actor
from orchestrator.errors import DomainError
from orchestrator.models import Tenant
from workflows import services
from workflows.specfiles import InvalidFiles, collect, error_line, format_plan


class Command(BaseCommand):
    help = "Apply a folder of workflow specs to a tenant, like `kubectl apply`."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="spec files or folders")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--dry-run", action="store_true", help="show what would change")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete the tenant's workflows that no file defines",
        )
        parser.add_argument(
            "--diff", action="store_true", help="show each change as a diff of the spec"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"], archived_at__isnull=True).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        try:
            files = [(str(path), path.read_bytes()) for path in collect(options["paths"])]
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        try:
            plan = services.apply_workflows(
                actor=Actor.cli(),
                tenant=tenant,
                files=files,
                dry_run=options["dry_run"],
                prune=options["prune"],
            )
        except InvalidFiles as exc:
            for file, path, message in exc.file_errors:
                self.stderr.write(error_line(file, path, message))
            raise CommandError(exc.message) from None
        except DomainError as exc:
            raise CommandError(f"{exc.message}; nothing was applied") from None
        changes = plan.as_dict()["changes"]
        for line in format_plan(changes, dry_run=plan.dry_run, diff=options["diff"]):
            self.stdout.write(line)
