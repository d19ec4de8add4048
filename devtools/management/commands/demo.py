"""`manage.py demo` (what `make demo` runs): a demo tenant, an admin user and an API token,
the runnable examples applied, one run triggered and followed to its end, and the whole
service serving in this process (`standalone`).

With `--distributed` (`make demo-distributed`) the same runs on PostgreSQL and Redis, with
the production processes started side by side: gunicorn, two workers, a housekeeper and a
beat (devtools/processes.py)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from devtools.demo_api import SalesApi
from devtools.demo_receiver import WebhookReceiver
from devtools.processes import Distributed, ensure_database
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.management.commands.standalone import Standalone
from orchestrator.models import ApiToken, Membership, Role, Tenant
from runs.tasktypes.sandbox import probe, uid_for

DEMO_TENANT = "demo"
DEMO_USER = "admin"
# A second team with a member of its own, to see in the portal that tenants are apart.
VIEWER_USER = "viewer"  # a member of the demo tenant who may only look
OTHER_TENANT = "other-team"
OTHER_USER = "other"
OTHER_SPEC = {
    "name": "other-team-report",
    "description": "Belongs to the other team only",
    "tags": ["other"],
    "tasks": {"report": {"type": "noop"}},
}
DEMO_RUNS = ("fan-in-report", "etl-daily-sales")
ALERT_CHANNEL = "demo-alerts"
# A workflow that fails on purpose, and tells the demo's alert channel (docs/notifications.md).
ALERT_SPEC = {
    "name": "demo-alert",
    "description": "Fails on purpose, to show an alert being delivered",
    "tags": ["demo"],
    "notify": {"on": ["run.failed", "run.recovered"], "channels": [ALERT_CHANNEL]},
    "tasks": {
        "check_inventory": {
            "type": "python",
            "callable": "runs.library:fail",
            "kwargs": {"message": "inventory file missing: /data/inventory.csv"},
        }
    },
}
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
        other_password = self.set_up_other_team()
        viewer_password = self.set_up_viewer(tenant)
        base = f"http://{options['host']}:{options['port']}"
        api = f"{base}/api/v1/tenants/{DEMO_TENANT}"
        # Links in alerts and password-reset mails lead to this demo, on its own port.
        public_url = {"PUBLIC_URL": os.environ.get("PUBLIC_URL") or base}
        settings.PUBLIC_URL = public_url["PUBLIC_URL"]
        # /metrics for a scraper on this machine, unless the operator said who may scrape.
        scrapers = {}
        if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
            scrapers = {"METRICS_ALLOWED_NETWORKS": "127.0.0.1,::1"}
            settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1", "::1"]
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Orchestrator demo",
                    f"  portal        {base}/   sign in: {DEMO_USER} / {password}",
                    f"                (a viewer of {DEMO_TENANT}, who may only look: "
                    f"{VIEWER_USER} / {viewer_password})",
                    f"                (another team's member: {OTHER_USER} / {other_password},"
                    f" who sees only {OTHER_TENANT})",
                    f"  health        {base}/healthz",
                    f"  metrics       {base}/metrics   (Prometheus"
                    + ("; from this machine)" if scrapers else "; METRICS_TOKEN)"),
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
        sandbox_env = self.task_sandbox(tenant)
        service: Standalone | Distributed = (
            Distributed(
                host=options["host"], port=options["port"], env=sandbox_env | public_url | scrapers
            )
            if options["distributed"]
            else Standalone(
                host=options["host"], port=options["port"], concurrency=4, web_threads=8
            )
        )
        service.start()
        self.stdout.write(service.banner() + "\n")
        if isinstance(service, Distributed):
            self.stdout.write("Waiting for the workers to start... ", ending="")
            self.stdout.flush()
            try:
                waited = service.wait_for_workers()
            except RuntimeError as exc:
                service.stop()
                raise CommandError(f"the workers did not start: {exc}") from None
            self.stdout.write(f"ready after {waited:.1f}s.\n")
        sales_api = SalesApi(api_key=secrets.token_urlsafe(18))
        sales_api.start()
        self.set_up_etl(tenant, sales_api)
        self.apply_examples(tenant)
        for name in DEMO_RUNS:
            run_id = self.run_one(tenant, name)
        self.show_etl(tenant, run_id)
        self.show_dataset_run(tenant)
        receiver = WebhookReceiver()
        receiver.start()
        secret = self.set_up_alerts(tenant, receiver)
        self.show_alert(tenant, receiver, secret)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Try:",
                    f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/me",
                    f"  curl -H 'Authorization: Bearer {token}' {api}/runs/{run_id}/tasks/",
                    f"  curl -H 'Authorization: Bearer {token}' {api}/connections/",
                    f"  curl -H 'Authorization: Bearer {token}' {api}/events/?type=run.failed",
                    f"  curl -H 'Authorization: Bearer {token}' {api}/deliveries/",
                    f"  curl -H 'Authorization: Bearer {token}' "
                    f"{api}/workflows/etl-daily-sales/schedule/",
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

    def task_sandbox(self, tenant: Tenant) -> dict[str, str]:
        """Sandbox the demo's tasks where this machine can; where it cannot, this
        single-tenant demo runs them unsandboxed and says so, with the command that fixes
        it. (A real installation never falls back: its tasks fail, saying why.)"""
        if settings.TASK_SANDBOX == "off":
            self.stdout.write("Task sandbox: off (TASK_SANDBOX=off)\n")
            return {}
        problem = probe(settings.TASK_SANDBOX_BWRAP, uid_for(tenant.pk, settings.TASK_SANDBOX_UIDS))
        if problem is None:
            self.stdout.write("Task sandbox: on (bubblewrap)\n")
            return {}
        fix = (
            "sudo apt-get install -y bubblewrap"
            if "not installed" in problem
            else 'see docs/task-types.md, "What a task can reach"'
        )
        self.stdout.write(
            "Task sandbox: OFF. "
            f"{problem}.\n"
            "  This single-tenant demo runs shell and python tasks unsandboxed, as its own\n"
            "  processes. To sandbox them, run:\n"
            f"    {fix}\n"
            "  and start the demo again.\n"
        )
        settings.TASK_SANDBOX = "off"  # the embedded worker runs in this process
        return {"TASK_SANDBOX": "off"}

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

    @transaction.atomic
    def set_up_viewer(self, tenant: Tenant) -> str:
        """A member of the demo tenant with the lowest role; a fresh password each start."""
        user, _ = get_user_model().objects.get_or_create(username=VIEWER_USER)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        with tenant_scope([tenant]):
            if not Membership.objects.filter(tenant=tenant, user=user).exists():
                services.add_member(actor=Actor.cli(), tenant=tenant, user=user, role=Role.VIEWER)
        return password

    @transaction.atomic
    def set_up_other_team(self) -> str:
        """The second team: its own tenant, member and workflow; a fresh password each start."""
        from workflows.services import apply_workflow

        actor = Actor.cli()
        user, _ = get_user_model().objects.get_or_create(username=OTHER_USER)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        tenant = Tenant.objects.filter(slug=OTHER_TENANT).first()
        if tenant is None:
            tenant = services.create_tenant(
                actor=actor, slug=OTHER_TENANT, name="Other team", owner=user
            )
        with tenant_scope([tenant]):
            apply_workflow(actor=actor, tenant=tenant, data=OTHER_SPEC)
        return password

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

    def set_up_etl(self, tenant: Tenant, api: SalesApi) -> None:
        """What the ETL example needs: the demo's own sales API as the `sales-api` connection
        (allowed by the tenant's http policy: the SSRF guard blocks 127.0.0.1 otherwise), its
        API key as a secret, and a SQLite warehouse next to the demo's database."""
        from connections import selectors as found
        from connections import services as conns

        actor = Actor.cli()
        warehouse = Path(settings.VAR_DIR) / "demo-warehouse.sqlite3"
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        warehouse.touch()
        policy = {**tenant.policy, "http_allowed_hosts": ["127.0.0.1"]}
        with tenant_scope([tenant]):
            if tenant.policy != policy:
                services.update_tenant(actor=actor, tenant=tenant, policy=policy)
            wanted: dict[str, dict[str, Any]] = {
                "sales-api": {
                    "kind": "http",
                    "host": "127.0.0.1",
                    "port": api.port,
                    "extra": {"scheme": "http"},
                    "description": "the demo's own sales API",
                },
                "warehouse": {
                    "kind": "sqlite",
                    "database": str(warehouse),
                    "description": "the demo's SQLite warehouse",
                },
            }
            existing = {c.name: c for c in found.all_connections()}
            for name, fields in wanted.items():
                if name in existing:
                    conns.update_connection(actor=actor, connection=existing[name], **fields)
                else:
                    conns.create_connection(actor=actor, tenant=tenant, name=name, **fields)
            key = found.all_secrets().filter(name="sales_api_key").first()
            if key is None:
                conns.create_secret(
                    actor=actor, tenant=tenant, name="sales_api_key", value=api.api_key
                )
            else:
                conns.update_secret(actor=actor, secret=key, value=api.api_key)
        self.stdout.write(
            f"  sales API on 127.0.0.1:{api.port}; warehouse {warehouse}; "
            "secret sales_api_key (a new value each start)"
        )

    def show_etl(self, tenant: Tenant, run_id: int) -> None:
        """What the ETL run left: the report's rows, and the API key masked in what it used."""
        from runs.models import TaskAttempt, TaskInstance

        with tenant_scope([tenant]):
            report = TaskInstance.objects.filter(run_id=run_id, task_id="report").first()
            extract = (
                TaskAttempt.objects.filter(
                    task_instance__run_id=run_id, task_instance__task_id="extract"
                )
                .order_by("-try_number")
                .first()
            )
        if report is not None and report.result:
            self.stdout.write(f"  warehouse report: {report.result.get('rows')}")
        if extract is not None:
            headers = extract.rendered.get("headers", {})
            self.stdout.write(
                f"  extract sent X-Api-Key {headers.get('X-Api-Key')!r} (secret masked "
                f"in what is stored) and used {extract.uses}"
            )

    def show_dataset_run(self, tenant: Tenant) -> None:
        """The ETL's load updated warehouse.sales: the dataset-scheduled sales-forecast
        (examples/sales-forecast.yaml) runs by itself; wait for it and say so."""
        from runs.models import WorkflowRun

        deadline = time.monotonic() + 30
        with tenant_scope([tenant]):
            while time.monotonic() < deadline:
                run = (
                    WorkflowRun.objects.filter(workflow__name="sales-forecast")
                    .order_by("-id")
                    .first()
                )
                if run is not None and run.state in WorkflowRun.FINISHED:
                    self.stdout.write(
                        f"  sales-forecast run {run.pk} started by the warehouse.sales update "
                        f"(schedule: datasets): {run.state}"
                    )
                    return
                time.sleep(0.1)
        self.stdout.write("  sales-forecast did not run within 30 s of the warehouse.sales update")

    def set_up_alerts(self, tenant: Tenant, receiver: WebhookReceiver) -> str:
        """A webhook channel pointed at the demo's own receiver (a new URL and signing
        secret each start), and the failing workflow that names it in `notify`."""
        from notifications import services as notes
        from notifications.models import Channel
        from workflows.services import apply_workflow

        actor = Actor.cli()
        tenant.refresh_from_db()  # its policy (set_up_etl) lets channels reach 127.0.0.1
        with tenant_scope([tenant]):
            channel = Channel.objects.filter(name=ALERT_CHANNEL).first()
            if channel is None:
                _, secret = notes.create_channel(
                    actor=actor,
                    tenant=tenant,
                    name=ALERT_CHANNEL,
                    kind="webhook",
                    url=receiver.url,
                    description="the demo's local webhook receiver",
                )
            else:
                notes.update_channel(actor=actor, channel=channel, url=receiver.url)
                secret = notes.rotate_secret(actor=actor, channel=channel)
            apply_workflow(actor=actor, tenant=tenant, data=ALERT_SPEC)
        assert secret is not None
        self.stdout.write(f"  alert channel {ALERT_CHANNEL}: webhook to {receiver.url}")
        return secret

    def show_alert(self, tenant: Tenant, receiver: WebhookReceiver, secret: str) -> None:
        """Run the failing workflow and print the alert the receiver got for it."""
        from notifications.transports import verify

        before = len(receiver.received)  # the alert may arrive before the run is seen ending
        run_id = self.run_one(tenant, str(ALERT_SPEC["name"]))
        for post in receiver.wait(before + 1, timeout=30)[before:]:
            event = post.json()
            failed = event["data"].get("failed_tasks") or [{}]
            self.stdout.write(
                f"\nAlert delivered to {receiver.url} (a signed CloudEvent):\n"
                f"  type {event['type']}, run {event['data']['run']['id']}, "
                f"task {failed[0].get('task_id')}: "
                f"{(failed[0].get('log_tail') or '').splitlines()[-1:]}\n"
                f"  signature {post.headers.get('webhook-signature', '')[:20]}... "
                f"verifies: {verify(secret, post.headers, post.body)}\n"
                f"  link {event['data']['url']}"
            )
            return
        self.stdout.write(f"\nNo alert arrived for run {run_id} within 30 s (see the deliveries).")

    def run_one(self, tenant: Tenant, name: str) -> int:
        """Trigger a demo workflow and print its task states as they change."""
        from runs.models import TaskInstance, WorkflowRun
        from runs.services import trigger_run
        from workflows.selectors import get_workflow

        with tenant_scope([tenant]):
            run = trigger_run(actor=Actor.cli(), workflow=get_workflow(name)).run
            self.stdout.write(f"\nTriggered {name} run {run.pk}; task states as they change:")
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
