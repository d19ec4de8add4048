"""`manage.py createtoken --tenant SLUG --role ROLE [--user USERNAME | --service-account NAME]`:
mint an API token. The token alone goes to stdout, so scripts can capture it:

    TOKEN=$(python manage.py createtoken --tenant acme --role editor)

Without --user, the token is for a service account (named after the role by default),
which is created, with that role, when it does not exist."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import slug_re
from django.db import transaction
from django.utils import timezone

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.errors import DomainError
from orchestrator.models import ROLE_ORDER, Membership, ServiceAccount, Tenant

NAME_MAX_LENGTH = 63


class Command(BaseCommand):
    help = "Create an API token for a member or a service account; prints only the token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument(
            "--role", required=True, help=f"one of {', '.join(r.value for r in ROLE_ORDER)}"
        )
        holder = parser.add_mutually_exclusive_group()
        holder.add_argument("--user", metavar="USERNAME", help="a member of the tenant")
        holder.add_argument(
            "--service-account",
            metavar="NAME",
            help="a service account of the tenant, created if missing (default: the role)",
        )
        parser.add_argument("--name", default="cli", help="a label for the token (default: cli)")
        parser.add_argument(
            "--expires-in", type=int, metavar="DAYS", help="expire after DAYS days (default never)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = live_tenant(options["tenant"])
        role = check_role(options["role"])
        expires_at = expiry(options["expires_in"])
        actor = Actor.cli()
        try:
            with transaction.atomic():
                if options["user"] is not None:
                    holder = member(tenant, options["user"])
                else:
                    holder = self.service_account(tenant, options["service_account"] or role, role)
                token, raw = services.create_token(
                    actor=actor,
                    tenant=tenant,
                    name=options["name"],
                    role=role,
                    user=holder,
                    expires_at=expires_at,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        until = f"until {token.expires_at.isoformat()}" if token.expires_at else "without expiry"
        self.info(
            f"token orc_{token.prefix}_… for {holder.get_username()!r} in {tenant.slug!r}, "
            f"role {token.role}, {until}"
        )
        self.stdout.write(raw)

    def service_account(self, tenant: Tenant, name: str, role: str) -> User:
        account = (
            ServiceAccount.objects.dangerously_unscoped()
            .filter(tenant=tenant, name=name)
            .select_related("user")
            .first()
        )
        if account is None:
            if not slug_re.match(name) or len(name) > NAME_MAX_LENGTH:
                raise CommandError(
                    f"service account name {name!r} is not valid: up to {NAME_MAX_LENGTH} "
                    "letters, digits, hyphens and underscores"
                )
            account = services.create_service_account(
                actor=Actor.cli(), tenant=tenant, name=name, role=role
            )
            self.info(f"created service account {name!r} in {tenant.slug!r} with role {role}")
        return account.user

    def info(self, message: str) -> None:
        """Anything but the token goes to stderr."""
        self.stderr.write(message, style_func=lambda text: text)


def live_tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"unknown tenant {slug!r}")
    if tenant.is_archived:
        raise CommandError(f"tenant {slug!r} is archived; its tokens would not work")
    return tenant


def check_role(role: str) -> str:
    accepted = [r.value for r in ROLE_ORDER]
    if role not in accepted:
        raise CommandError(f"invalid role {role!r}; accepted: {', '.join(accepted)}")
    return role


def expiry(days: int | None) -> dt.datetime | None:
    if days is None:
        return None
    if days < 1:
        raise CommandError(f"--expires-in must be a whole number of days, 1 or more; got {days}")
    return timezone.now() + dt.timedelta(days=days)


def member(tenant: Tenant, username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"unknown user {username!r}")
    if not user.is_active:
        raise CommandError(f"user {username!r} is deactivated")
    if not Membership.objects.dangerously_unscoped().filter(tenant=tenant, user=user).exists():
        raise CommandError(
            f"user {username!r} is not a member of tenant {tenant.slug!r}; add them first"
        )
    return user
