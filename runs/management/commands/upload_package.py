"""`manage.py upload_package --tenant SLUG FILE [--as USERNAME]`: upload a team code package
(a wheel, an sdist or an archive of a source tree) as the platform operator at a shell;
`--as` names a member of the tenant as its uploader (on the package and in the audit
event), e.g. when a release pipeline uploads on a team's behalf. The same service as REST
and GraphQL: the same checks, lock, index and audit event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import DomainError
from orchestrator.models import Membership, Tenant
from runs.packages import upload_package
from workflows.models import CodePackage


class Command(BaseCommand):
    help = "Upload a Python package (wheel, sdist or source tree archive) to a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a .whl, an sdist (.tar.gz, .zip) or a .tar.gz/.zip tree")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--as",
            dest="username",
            help="record this member of the tenant as the uploader",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"], archived_at__isnull=True).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        actor = Actor.cli(self.member(tenant, options["username"]))
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        started = timezone.now()
        with tenant_scope([tenant]):
            try:
                package = upload_package(actor=actor, tenant=tenant, filename=path.name, data=data)
            except DomainError as exc:
                raise CommandError(exc.message) from None
        self.report(package, new=package.created_at >= started)

    def member(self, tenant: Tenant, username: str | None) -> Any:
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"--as: no active user {username!r}")
        members = Membership.objects.dangerously_unscoped().filter(tenant=tenant, user=user)
        if not members.exists():
            raise CommandError(f"--as: {username!r} is not a member of tenant {tenant.slug!r}")
        return user

    def report(self, package: CodePackage, *, new: bool) -> None:
        state = "uploaded" if new else "already uploaded (the same file): unchanged"
        self.stdout.write(f"{package.name} {package.version}: {state}")
        self.stdout.write(f"digest: sha256:{package.digest}")
        self.stdout.write(f"wheel: {package.filename} ({package.size} bytes)")
        self.stdout.write("locked dependencies:" if package.lock else "locked dependencies: none")
        for line in package.lock:
            self.stdout.write(f"  {line}")
        self.stdout.write("functions:")
        for module, functions in package.index.items():
            self.stdout.write(f"  {module}: {', '.join(functions) or '(none)'}")
