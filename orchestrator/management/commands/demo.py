"""`manage.py demo` (what `make demo` runs): a demo tenant, an admin user and an API token,
the runnable examples applied, one run triggered and followed to its end, and the whole
service serving in this process (`standalone`).

With `--distributed` (`make demo-distributed`) the same runs on PostgreSQL and Redis, with
the production processes started side by side: gunicorn, two workers, a housekeeper and a
beat (orchestrator/processes.py)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.management.commands.standalone import Standalone
from orchestrator.models import ApiToken, Role, Tenant
from orchestrator.processes import Distributed, ensure_database

DEMO_TENANT = "demo"
DEMO_USER = "admin"
DEMO_RUN = "fan-in-report"
EXAMPLES = Path(settings.BASE_DIR) / "examples"


class Command(BaseCommand):
    help = "Set up a demo tenant with examples, run one, and serve the service standalone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--distributed",
            action="store_true",
            help="run gunicorn, two Celery workers, a housekeeper and a beat as separate "
            "processes (needs CELERY_BROKER_URL, and DATABASE_URL for PostgreSQL)",
        )
        parser.add_argument(
            "--setup-only",
            action="store_true",
            help="set up and print the credentials, but do not serve",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["distributed"]:
            if settings.EMBEDDED_BROKER:
                raise CommandError(
                    "--distributed needs a real broker: set CELERY_BROKER_URL, e.g. "
                    "redis://127.0.0.1:6379/1 (make demo-distributed does)"
                )
            if ensure_database():
                self.stdout.write(f"created database {settings.DATABASES['default']['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        password, token, tenant = self.set_up()
        base = f"http://{options['host']}:{options['port']}"
        api = f"{base}/api/v1/tenants/{DEMO_TENANT}"
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
                ]
            )
        )
        if options["setup_only"]:
            return
        service: Standalone | Distributed = (
            Distributed(host=options["host"], port=options["port"])
            if options["distributed"]
            else Standalone(
                host=options["host"], port=options["port"], concurrency=4, web_threads=8
            )
        )
        service.start()
        self.stdout.write(service.banner() + "\n")
        self.apply_examples(tenant)
        run_id = self.run_one(tenant)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Try:",
                    f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/me",
                    f"  curl -H 'Authorization: Bearer {token}' {api}/runs/{run_id}/tasks/",
                    f"  curl -X POST -H 'Authorization: Bearer {token}' "
                    "-H 'Content-Type: application/json'"
                    f' -d \'{{"params": {{"table": "orders"}}}}\' '
                    f"{api}/workflows/parametrised-export/runs/",
                    "",
                    "Serving until Ctrl-C.",
                    "",
                ]
            )
        )
        self.stdout.flush()
        service.wait()

    @transaction.atomic
    def set_up(self) -> tuple[str, str, Tenant]:
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
        return password, token, tenant

    def apply_examples(self, tenant: Tenant) -> None:
        from workflows.services import apply_workflow, parse_spec

        for path in sorted(EXAMPLES.glob("*.yaml")):
            try:
                with tenant_scope([tenant]):
                    result = apply_workflow(
                        actor=Actor.cli(), tenant=tenant, data=parse_spec(path.read_bytes(), tenant)
                    )
            except Invalid as exc:
                reason = exc.errors[0][1] if exc.errors else exc.message
                self.stdout.write(f"  example {path.name}: not applied ({reason})")
                continue
            what = (
                "created"
                if result.created
                else f"version {result.version.number}"
                if result.changed
                else "unchanged"
            )
            self.stdout.write(f"  example {path.name}: {result.workflow.name} {what}")

    def run_one(self, tenant: Tenant) -> int:
        """Trigger the demo workflow and print its task states as they change."""
        from runs.models import TaskInstance, WorkflowRun
        from runs.services import trigger_run
        from workflows.selectors import get_workflow

        with tenant_scope([tenant]):
            run = trigger_run(actor=Actor.cli(), workflow=get_workflow(DEMO_RUN)).run
            self.stdout.write(f"\nTriggered {DEMO_RUN} run {run.pk}; task states as they change:")
            seen: dict[str, str] = {}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for task_id, state in (
                    TaskInstance.objects.filter(run=run)
                    .order_by("id")
                    .values_list("task_id", "state")
                ):
                    if seen.get(task_id) != state:
                        seen[task_id] = state
                        self.stdout.write(f"  {time.strftime('%H:%M:%S')}  {task_id:<18} {state}")
                run.refresh_from_db()
                if run.state in WorkflowRun.FINISHED:
                    break
                time.sleep(0.05)
            self.stdout.write(f"Run {run.pk} finished: {run.state}")
        return int(run.pk)
