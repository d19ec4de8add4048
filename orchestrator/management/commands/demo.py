"""`manage.py demo` (what `make demo` runs): a demo tenant, an admin user and an API token,
then the whole service in this process (`standalone`)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import ApiToken, Role, Tenant

DEMO_TENANT = "demo"
DEMO_USER = "admin"


class Command(BaseCommand):
    help = "Set up a demo tenant, admin user and token, then run the service standalone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--setup-only",
            action="store_true",
            help="set up and print the credentials, but do not serve",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        password, token = self.set_up()
        base = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Orchestrator demo",
                    f"  health        {base}/healthz",
                    f"  API docs      {base}/api/docs/",
                    f"  GraphQL       {base}/graphql",
                    f"  admin         {base}/admin/   login: {DEMO_USER} / {password}",
                    f"  tenant        {DEMO_TENANT} (you are its owner)",
                    f"  API token     {token}",
                    "",
                    "Try:",
                    f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/me",
                    "",
                ]
            )
        )
        self.stdout.flush()
        if not options["setup_only"]:
            call_command("standalone", host=options["host"], port=options["port"], no_migrate=True)

    @transaction.atomic
    def set_up(self) -> tuple[str, str]:
        """A fresh admin password and token on every start, so the printed ones always work."""
        actor = Actor.cli()
        User = get_user_model()
        user, _ = User.objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        tenant = Tenant.objects.filter(slug=DEMO_TENANT).first()
        if tenant is None:
            tenant = services.create_tenant(actor=actor, slug=DEMO_TENANT, name="Demo", owner=user)
        # Only the newest demo token stays live: restarts must not pile them up.
        with tenant_scope([tenant]):
            for old in ApiToken.objects.filter(name="demo", user=user, revoked_at__isnull=True):
                services.revoke_token(actor=actor, token=old)
        _, token = services.create_token(
            actor=actor, tenant=tenant, name="demo", role=Role.OWNER, user=user
        )
        return password, token
