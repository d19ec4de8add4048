"""`manage.py verify_audit [--tenant SLUG]`: walk the audit chains and report the first
broken link of each; exits non-zero when any chain is broken."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator.audit import PLATFORM_CHAIN, ChainReport, chain_key, verify_chain
from orchestrator.models import AuditChainHead, AuditEvent, Tenant


class Command(BaseCommand):
    help = "Verify the HMAC chains of the audit log (every tenant's and the platform's)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="verify only this tenant's chain")

    def handle(self, *args: Any, **options: Any) -> None:
        chains = [one_tenant(options["tenant"])] if options["tenant"] else all_chains()
        broken = 0
        for label, key in chains:
            report = verify_chain(key)
            broken += not report.ok
            self.stdout.write(f"{label}: {describe(report)}")
        if broken:
            raise CommandError(f"{broken} of {len(chains)} audit chains are broken")


def describe(report: ChainReport) -> str:
    if report.ok:
        return f"OK, {report.checked} event{'' if report.checked == 1 else 's'}"
    return f"BROKEN at event #{report.broken_seq}: {report.reason}"


def one_tenant(slug: str) -> tuple[str, str]:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"unknown tenant {slug!r}")
    return f"tenant {tenant.slug}", chain_key(tenant.pk)


def all_chains() -> list[tuple[str, str]]:
    """Every tenant's chain, the platform's, and any other chain found in the log."""
    chains = {
        chain_key(pk): f"tenant {slug}" for pk, slug in Tenant.objects.values_list("pk", "slug")
    }
    chains[PLATFORM_CHAIN] = "platform"
    found = set(AuditChainHead.objects.values_list("chain", flat=True))
    found |= set(
        AuditEvent.objects.dangerously_unscoped()
        .values_list("chain", flat=True)
        .order_by("chain")
        .distinct()
    )
    for key in sorted(found - set(chains)):
        chains[key] = f"chain {key}"
    return [(label, key) for key, label in chains.items()]
