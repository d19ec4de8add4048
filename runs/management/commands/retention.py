"""`manage.py retention [--dry-run] [--tenant SLUG] [--batch-size N]`: the daily retention
pass (docs/retention.md) run now, printing what it deleted (or, with --dry-run, what it
would delete) per tenant."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator.actors import Actor
from orchestrator.models import Tenant
from runs import retention


class Command(BaseCommand):
    help = "Delete finished runs and old events past each tenant's retention (docs/retention.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.BATCH_SIZE,
            help=f"rows per transaction (default {retention.BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        tenants = list(Tenant.objects.active())
        if options["tenant"]:
            tenants = [t for t in tenants if t.slug == options["tenant"]]
            if not tenants:
                raise CommandError(f"unknown or archived tenant {options['tenant']!r}")
        dry_run = options["dry_run"]
        done = retention.purge(
            actor=Actor.cli(),
            tenants=tenants,
            dry_run=dry_run,
            batch_size=options["batch_size"],
        )
        verb = "would delete" if dry_run else "deleted"
        for one in done:
            self.stdout.write(describe(one, verb))
        failed = sorted({t.slug for t in tenants} - {one.tenant for one in done})
        if failed:
            raise CommandError(f"retention failed for {', '.join(failed)}: see the log")


def describe(done: retention.TenantPurge, verb: str) -> str:
    if done.cutoff is None:
        return f"{done.tenant}: kept forever (retention 0 days)"
    counts = ", ".join(f"{name} {n}" for name, n in sorted(done.counts.items()) if n)
    return (
        f"{done.tenant}: {verb} {done.total} rows ended before "
        f"{done.cutoff:%Y-%m-%d %H:%M} UTC ({done.days} days)" + (f": {counts}" if counts else "")
    )
