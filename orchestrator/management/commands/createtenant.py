"""`manage.py createtenant SLUG [--name NAME] [--owner USERNAME]`: a tenant and its owner,
the owner's user created (without a password) when missing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.errors import DomainError
from orchestrator.models import Tenant

SLUG_MAX_LENGTH = 63


class Command(BaseCommand):
    help = "Create a tenant owned by a user (created, without a password, if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug: letters, digits, - and _")
        parser.add_argument("--name", help="display name (default: the slug)")
        parser.add_argument(
            "--owner",
            metavar="USERNAME",
            help="the owner's user name (default: the only superuser, if there is exactly one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        check_slug(slug)
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} exists")
        with transaction.atomic():
            owner, created = owner_user(options["owner"])
            try:
                tenant = services.create_tenant(
                    actor=Actor.cli(), slug=slug, name=options["name"] or slug, owner=owner
                )
            except DomainError as exc:
                raise CommandError(exc.message) from None
        name = owner.get_username()
        self.stdout.write(f"created tenant {tenant.slug!r} ({tenant.name}), owner {name!r}")
        if created:
            self.stdout.write(
                f"user {name!r} was created without a password; set one with "
                f"`python manage.py changepassword {name}`"
            )


def check_slug(slug: str) -> None:
    try:
        validate_slug(slug)
    except ValidationError:
        raise CommandError(
            f"slug {slug!r} is not valid: use letters, digits, hyphens and underscores"
        ) from None
    if len(slug) > SLUG_MAX_LENGTH:
        raise CommandError(f"slug {slug!r} is too long: at most {SLUG_MAX_LENGTH} characters")


def owner_user(username: str | None) -> tuple[User, bool]:
    """The named user (created when missing), or the one superuser when none is named."""
    if username is None:
        superusers = list(User.objects.filter(is_superuser=True, is_active=True)[:3])
        if len(superusers) != 1:
            found = "no superuser exists" if not superusers else "there are several superusers"
            raise CommandError(f"--owner USERNAME is required: {found} to default to")
        return superusers[0], False
    user = User.objects.filter(username=username).first()
    if user is None:
        return User.objects.create_user(username=username, password=None), True
    if not user.is_active:
        raise CommandError(f"user {username!r} is deactivated; it cannot own a tenant")
    if hasattr(user, "service_account"):
        raise CommandError(f"user {username!r} is a service account; it cannot own a tenant")
    return user, False
