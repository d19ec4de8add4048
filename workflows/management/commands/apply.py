"""`manage.py apply PATH... --tenant T [--dry-run] [--prune]`: sync a folder of specs
(GitOps). All files are validated first; if any is invalid nothing is applied. The rest
happens in one transaction: all of it, or none."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import DomainError
from orchestrator.models import Tenant
from workflows import services
from workflows.models import Workflow
from workflows.selectors import live_workflows
from workflows.specfiles import SpecFile, collect, format_errors, load_all


class DryRun(Exception):
    """Raised to roll the transaction back after a dry run."""


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

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"], archived_at__isnull=True).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        try:
            files = collect(options["paths"])
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        results = load_all(files, services.limits_for(tenant))
        invalid = [item for item in results if item.valid is None]
        if invalid:
            for item in invalid:
                for line in format_errors(item):
                    self.stderr.write(line)
            raise CommandError(
                f"{len(invalid)} of {len(results)} files are invalid; nothing was applied"
            )
        with tenant_scope([tenant]):
            try:
                with transaction.atomic():
                    self.sync(tenant, results, dry_run=options["dry_run"], prune=options["prune"])
                    if options["dry_run"]:
                        raise DryRun
            except DryRun:
                pass
            except DomainError as exc:
                raise CommandError(f"{exc.message}; nothing was applied") from None

    def sync(self, tenant: Tenant, results: list[SpecFile], *, dry_run: bool, prune: bool) -> None:
        actor = Actor.cli()
        would = "would be " if dry_run else ""
        names = set()
        for item in results:
            assert item.valid is not None
            name = item.valid.spec.name
            names.add(name)
            result = services.apply_workflow(actor=actor, tenant=tenant, data=item.valid.canonical)
            if result.created:
                self.stdout.write(f"{name}: {would}created (version 1)")
            elif result.changed:
                self.stdout.write(f"{name}: {would}new version {result.version.number}")
            else:
                self.stdout.write(f"{name}: unchanged (version {result.version.number})")
        if prune:
            for workflow in live_workflows().exclude(name__in=names).order_by("name"):
                self.prune(actor, workflow, dry_run)

    def prune(self, actor: Actor, workflow: Workflow, dry_run: bool) -> None:
        services.delete_workflow(actor=actor, workflow=workflow)
        self.stdout.write(f"{workflow.name}: {'would be ' if dry_run else ''}pruned")
