"""`manage.py bench [--json] [--only NAME] [--repeat N]` (what `make bench` runs).

Starts the distributed mode against PostgreSQL and Redis (gunicorn, 2 worker processes, a
housekeeper and a beat) plus 2 raw-Celery worker processes on the same broker, runs each
scenario --repeat times (default 5), interleaving the engine with the raw-Celery baseline,
and prints the medians (min, max) with every engine figure also as a ratio to the
baseline. The python scenarios upload a package to the bench tenant and call its function
beside raw Celery calling the same one (devtools/bench/python_tasks.py). See
docs/performance.md."""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.bench import baseline
from devtools.bench.embedded import Embedded
from devtools.bench.portal import PAGES, page_times
from devtools.bench.python_tasks import PythonTasks, reset_environments, worker_env
from devtools.bench.retention import figures_of as retention_figures
from devtools.bench.retention import retention_while_chaining
from devtools.bench.scale import SCALE_SCENARIOS, Scale, scale_figures
from devtools.bench.scenarios import Engine
from devtools.bench.stats import Client, Figure, Figures
from devtools.bench.task_start import task_start
from devtools.processes import WEB_LAYOUT, Distributed, ensure_database
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Role, Tenant

SCENARIOS = [
    "chain-100",
    "chain-100-shell",
    "embedded-chain-30",
    "fanout-1000",
    "chain-100-python",
    "fanout-1000-python",
    "python-cold-start",
    "trigger-latency",
    "api",
    "burst-200",
    "list-1m",
    "task-start",
    "alerting",
    "portal",
    "retention",
    *SCALE_SCENARIOS,  # opt-in: minutes each (docs/performance.md)
]
BENCH_TENANT = "bench"
PYTHON_SCENARIOS = {"chain-100-python", "fanout-1000-python", "python-cold-start"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Command(BaseCommand):
    help = "Benchmark the engine in its distributed mode next to raw Celery (docs/performance.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print only the JSON")
        parser.add_argument(
            "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
        )
        parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
        parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
        parser.add_argument(
            "--concurrency", type=int, default=1, help="slots per worker process (default 1)"
        )
        parser.add_argument(
            "--rows",
            type=int,
            default=1_000_000,
            help="task instance rows for list-1m, and those retention deletes",
        )

    def say(self, text: str) -> None:
        (sys.stderr if self.quiet else sys.stdout).write(text + "\n")
        (sys.stderr if self.quiet else sys.stdout).flush()

    def handle(self, *args: Any, **options: Any) -> None:
        self.quiet = options["json"]
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            raise CommandError(
                "bench measures the distributed mode: set DATABASE_URL to PostgreSQL"
            )
        if settings.EMBEDDED_BROKER:
            raise CommandError("bench measures the distributed mode: set CELERY_BROKER_URL")
        only = options["only"] or [s for s in SCENARIOS if s not in SCALE_SCENARIOS]
        repeat = options["repeat"]
        if ensure_database():
            self.say(f"created database {settings.DATABASES['default']['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        self._purge_broker()
        tenant, user, token = self._set_up()
        port = _free_port()
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        baseline_env = {
            "BENCH_BROKER_URL": settings.CELERY_BROKER_URL,
            "BENCH_KEY_PREFIX": f"{prefix}baseline:",
        }
        baseline.configure(baseline_env["BENCH_BROKER_URL"], baseline_env["BENCH_KEY_PREFIX"])
        raw = [sys.executable, "-m", "celery", "-A", "devtools.bench.baseline", "worker"]
        processes = Distributed(
            host="127.0.0.1",
            port=port,
            workers=options["workers"],
            concurrency=options["concurrency"],
            logs="bench-logs",
            env={**baseline_env, **worker_env()},
            extra={
                f"baseline{i}": [
                    *raw,
                    "-l",
                    "WARNING",
                    "-c",
                    str(options["concurrency"]),
                    "-n",
                    f"baseline{i}@%h",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ]
                for i in range(1, options["workers"] + 1)
            },
        )
        self.say(
            f"bench: PostgreSQL database {settings.DATABASES['default']['NAME']}, broker "
            f"{settings.CELERY_BROKER_URL}; starting gunicorn ({' '.join(WEB_LAYOUT)}), "
            f"{options['workers']} engine worker processes (concurrency {options['concurrency']}), "
            f"a housekeeper, a notifier, a beat, and {options['workers']} raw-Celery worker "
            f"processes (concurrency {options['concurrency']}); logs in {processes.logs}"
        )
        reset_environments()  # before the workers start: their first runs must be first
        processes.start()
        try:
            engine = Engine(
                tenant,
                Actor(user=user, source="api"),
                f"http://127.0.0.1:{port}/api/v1/tenants/{BENCH_TENANT}",
                token,
                [f"worker{i}@{socket.gethostname()}" for i in range(1, options["workers"] + 1)],
            )
            self._warm_up(engine, processes)
            pool = options["workers"] * options["concurrency"]  # the engine's task processes
            figures = self._run(engine, only, repeat, options["rows"], user, pool)
        finally:
            processes.stop()
        report = {
            "machine": self._machine(),
            "settings": {
                "repeat": repeat,
                "workers": options["workers"],
                "concurrency": options["concurrency"],
            },
            "figures": [f.as_dict() for f in figures],
        }
        out = Path(settings.VAR_DIR) / "bench" / "last.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        if not self.quiet:
            self.stdout.write(self._table(figures))
            self.stdout.write(f"\nJSON (also in {out}):")
        self.stdout.write(json.dumps(report, indent=2))

    # --- set-up ----------------------------------------------------------------------

    def _purge_broker(self) -> None:
        """Leftover messages of an interrupted earlier bench would skew this one."""
        import redis

        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        if not prefix:
            raise CommandError("set CELERY_KEY_PREFIX so bench can clear only its own keys")
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)

    def _set_up(self) -> tuple[Tenant, Any, str]:
        actor = Actor.cli()
        user, _ = get_user_model().objects.get_or_create(username="bench-owner")
        tenant = Tenant.objects.filter(slug=BENCH_TENANT).first()
        if tenant is None:
            tenant = services.create_tenant(
                actor=actor,
                slug=BENCH_TENANT,
                name="Benchmarks",
                owner=user,
                quotas={"max_concurrent_runs": 500, "max_tasks_per_workflow": 1100},
            )
        # The bench measures the engine, not the API's rate limits (0: no limit); its
        # alert channels reach receivers on 127.0.0.1.
        unlimited = {"per_token": 0, "per_tenant": 0}
        policy = {
            **tenant.policy,
            "rate_limits": {"triggers": unlimited, "reads": unlimited},
            "http_allowed_hosts": ["127.0.0.1"],
        }
        with tenant_scope([tenant]):
            services.update_tenant(actor=actor, tenant=tenant, policy=policy)
        _, token = services.create_token(
            actor=actor,
            tenant=tenant,
            name=f"bench-{secrets.token_hex(3)}",
            role=Role.OWNER,
            user=user,
        )
        return tenant, user, token

    def _warm_up(self, engine: Engine, processes: Distributed) -> None:
        """Until the web server answers and a run goes through the workers."""
        deadline = time.monotonic() + 60
        while True:
            gone = processes.exited()
            if gone:
                raise CommandError(f"{', '.join(gone)} exited; see the logs in {processes.logs}")
            try:
                client = Client(engine.api, engine.token)
                status, _, _ = client.call("GET", "/runs/?limit=1")
                client.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"gunicorn did not answer; see {processes.logs}")
            time.sleep(0.2)
        for _ in range(3):
            engine.chain(5)
        baseline.chain_seconds(5)

    # --- measuring -------------------------------------------------------------------

    def _run(
        self, engine: Engine, only: list[str], repeat: int, rows: int, user: Any, processes: int
    ) -> list[Figure]:
        values: dict[str, list[float]] = {}
        if "list-1m" in only or "portal" in only:
            self.say(f"seeding {rows:,} task instance rows (once; kept in the bench database)")
            have = engine.seed(rows)
            self.say(f"  {have:,} task instance rows")
        if "portal" in only:
            engine.chain(100)  # a run the workers executed, for the run and task pages
        python = PythonTasks(engine)
        scale = Scale(engine)
        embedded = Embedded()
        if "embedded-chain-30" in only:
            self.say("starting `manage.py standalone` on a SQLite file of its own (embedded mode)")
            embedded.start()
        try:
            self._repeat(
                engine, only, repeat, rows, user, processes, values, python, scale, embedded
            )
        finally:
            embedded.stop()
        return self._figures(values)

    def _repeat(
        self,
        engine: Engine,
        only: list[str],
        repeat: int,
        rows: int,
        user: Any,
        processes: int,
        values: dict[str, list[float]],
        python: PythonTasks,
        scale: Scale,
        embedded: Embedded,
    ) -> None:
        def record(name: str, measure: Callable[[], dict[str, float]]) -> None:
            self.say(f"  {name} ...")
            for key, value in measure().items():
                values.setdefault(f"{name}.{key}", []).append(value)

        if PYTHON_SCENARIOS & set(only):
            self.say("uploading the python benchmarks' package; warming every worker's zygote")
            python.prepare(processes)
            baseline.step_chain_seconds(5)
        for index in range(repeat):
            self.say(f"repetition {index + 1}/{repeat}")
            engine.vacuum()
            if "chain-100" in only:
                record("raw-chain-100", lambda: {"wall_s": baseline.chain_seconds(100)})
                record("chain-100", lambda: engine.chain(100))
            if "chain-100-shell" in only:
                record("chain-100-shell", lambda: scale.chain_shell(100))
            if "embedded-chain-30" in only:
                record("embedded-chain-30", embedded.chains)
            if "fanout-1000" in only:
                record("raw-chord-1000", lambda: {"wall_s": baseline.chord_seconds(1000)})
                record("fanout-1000", lambda: engine.fanout(1000))
            if "chain-100-python" in only:
                record("raw-chain-100-python", lambda: {"wall_s": baseline.step_chain_seconds(100)})
                record("chain-100-python", lambda: python.chain(100))
            if "fanout-1000-python" in only:
                record(
                    "raw-chord-1000-python", lambda: {"wall_s": baseline.step_chord_seconds(1000)}
                )
                record("fanout-1000-python", lambda: python.fanout(1000))
            if "python-cold-start" in only:
                record("python-cold-start", python.cold_start)
            if "trigger-latency" in only:
                record("trigger-latency", engine.trigger_latency)
            if "api" in only:
                record("api", engine.api_latency)
            if "burst-200" in only:
                record("burst-200", engine.burst)
            if "list-1m" in only:
                record("list-1m", engine.list_queries)
            if "task-start" in only:
                record("task-start", task_start)
            if "alerting" in only:
                record("alerting", engine.alerting)
            if "portal" in only:
                record("portal", lambda: page_times(engine.api, engine.tenant, user))
            if "retention" in only:
                record("retention", lambda: retention_while_chaining(engine, rows))
            if "fanout-10000" in only:
                record("fanout-10000", scale.fanout)
            if "concurrent-100x100" in only:
                record("concurrent-100x100", scale.concurrent)
            if "fair-share" in only:
                record("fair-share", scale.fair_share)

    @staticmethod
    def _figures(values: dict[str, list[float]]) -> list[Figure]:
        figures: list[Figure] = []

        def add(key: str, name: str, unit: str, better: str, scale: float = 1.0, **kw: Any) -> None:
            if key in values:
                figures.append(Figure(name, unit, [v * scale for v in values[key]], better, **kw))

        raw_step = raw_rate = raw_chain = None
        if "raw-chain-100.wall_s" in values:
            raw_chain = statistics.median(values["raw-chain-100.wall_s"])
            raw_step = raw_chain / 100 * 1000
            raw_best = min(values["raw-chain-100.wall_s"]) / 100 * 1000
            add("raw-chain-100.wall_s", "raw Celery: chain-100 wall", "s", "lower")
            figures.append(
                Figure(
                    "raw Celery: chain-100 step",
                    "ms",
                    [v / 100 * 1000 for v in values["raw-chain-100.wall_s"]],
                    "lower",
                )
            )
        if "raw-chord-1000.wall_s" in values:
            rates = [1001 / v for v in values["raw-chord-1000.wall_s"]]
            raw_rate = statistics.median(rates)
            figures.append(Figure("raw Celery: chord-1000 rate", "tasks/s", rates, "higher"))
        add(
            "chain-100.wall_s",
            "chain-100 wall (trigger -> run success)",
            "s",
            "lower",
            note=f"{statistics.median(values['chain-100.wall_s']) / raw_chain:.2f}x raw chain"
            if raw_chain and "chain-100.wall_s" in values
            else "",
        )
        add(
            "chain-100.handoff_ms",
            "chain-100 handoff (task end -> next start)",
            "ms",
            "lower",
            target=2 * raw_step if raw_step else None,
            note=f"{statistics.median(values['chain-100.handoff_ms']) / raw_step:.2f}x raw step"
            f" ({statistics.median(values['chain-100.handoff_ms']) / raw_best:.2f}x its fastest"
            " repetition; target <= 2x, stretch 1.2x)"
            if raw_step and "chain-100.handoff_ms" in values
            else "",
        )
        add(
            "fanout-1000.tasks_per_s",
            "fanout-1000 rate (recorded)",
            "tasks/s",
            "higher",
            target=raw_rate,
            note=f"{statistics.median(values['fanout-1000.tasks_per_s']) / raw_rate:.2f}x raw chord"
            " (target >= 1x, stretch 400 tasks/s)"
            if raw_rate and "fanout-1000.tasks_per_s" in values
            else "",
        )
        add("fanout-1000.wall_s", "fanout-1000 wall", "s", "lower")
        figures.extend(scale_figures(values))
        figures.extend(Command._python_figures(values))
        figures.extend(retention_figures(values))
        add(
            "trigger-latency.after_return_ms",
            "trigger latency (API returned -> first task started)",
            "ms",
            "lower",
            target=30,
        )
        add(
            "trigger-latency.after_send_ms",
            "trigger latency (API request sent -> first task started)",
            "ms",
            "lower",
        )
        for verb, path in (("post", "trigger POST"), ("get", "run GET")):
            add(f"api.{verb}_p50_ms", f"API {path} p50 (10 clients, workers idle)", "ms", "lower")
            add(
                f"api.{verb}_p99_ms",
                f"API {path} p99 (10 clients, workers idle)",
                "ms",
                "lower",
                target=50,
            )
        for verb, path in (("post", "trigger POST"), ("get", "run GET")):
            for p in ("50", "99"):
                add(
                    f"api.busy_{verb}_p{p}_ms",
                    f"API {path} p{p} (10 clients, workers running the runs)",
                    "ms",
                    "lower",
                )
        add(
            "burst-200.runs_per_s",
            "200 concurrent triggers (3 tasks): runs done",
            "runs/s",
            "higher",
        )
        for what, path in (("runs", "list runs"), ("tasks", "list a run's task instances")):
            add(f"list-1m.{what}_p50_ms", f"{path} p50 (1M task rows)", "ms", "lower")
            add(f"list-1m.{what}_p99_ms", f"{path} p99 (1M task rows)", "ms", "lower", target=50)
        for page in PAGES:
            add(f"portal.{page}_p50_ms", f"portal page {page} p50 (1M task rows)", "ms", "lower")
            add(
                f"portal.{page}_p99_ms",
                f"portal page {page} p99 (1M task rows)",
                "ms",
                "lower",
                target=100,
            )
        add("task-start.plain_ms", "shell task start, TASK_SANDBOX=off", "ms", "lower")
        add("task-start.sandboxed_ms", "shell task start, sandboxed", "ms", "lower")
        add("task-start.cost_ms", "the sandbox's cost per task start", "ms", "lower")
        alerting = {
            "quiet": "no alert channel",
            "working": "every event to a webhook answering 200",
            "dead_mail": "every event to a mail server that is not there",
            "hanging": "every event to a webhook that never answers",
        }
        for name, what in alerting.items():
            add(f"alerting.{name}_wall_s", f"20 chain-5 runs at once, {what}", "s", "lower")
        for name in ("working", "dead_mail", "hanging"):
            add(
                f"alerting.{name}_routing_p50_ms",
                f"alerting ({alerting[name]}): event -> routed p50",
                "ms",
                "lower",
            )
        return figures

    @staticmethod
    def _python_figures(values: dict[str, list[float]]) -> list[Figure]:
        """The python scenarios, each against raw Celery calling the same function."""
        figures = Figures(values)
        median, add = figures.median, figures.add
        raw_chain = median("raw-chain-100-python.wall_s")
        add(
            "raw-chain-100-python.wall_s",
            "raw Celery: chain-100 calling the function",
            "s",
            "lower",
        )
        raw_rate = None
        if "raw-chord-1000-python.wall_s" in values:
            rates = [1001 / v for v in values["raw-chord-1000-python.wall_s"]]
            raw_rate = statistics.median(rates)
            figures.append(
                Figure("raw Celery: chord-1000 calling the function", "tasks/s", rates, "higher")
            )
        chain = median("chain-100-python.wall_s")
        add(
            "chain-100-python.wall_s",
            "chain-100-python wall (trigger -> run success)",
            "s",
            "lower",
            target=3 * raw_chain if raw_chain else None,
            # Raw Celery's chain is bimodal here (docs/performance.md): its fastest
            # repetition shows what a median slowed by the machine's load hides.
            note=f"{chain / raw_chain:.2f}x raw chain ("
            f"{chain / min(values['raw-chain-100-python.wall_s']):.2f}x its fastest "
            "repetition; target <= 3x)"
            if chain and raw_chain
            else "",
        )
        add(
            "chain-100-python.handoff_ms",
            "chain-100-python handoff (end -> next start)",
            "ms",
            "lower",
        )
        add("chain-100-python.task_ms", "chain-100-python task (start -> end)", "ms", "lower")
        rate = median("fanout-1000-python.tasks_per_s")
        add(
            "fanout-1000-python.tasks_per_s",
            "fanout-1000-python rate (recorded)",
            "tasks/s",
            "higher",
            target=0.5 * raw_rate if raw_rate else None,
            note=f"{rate / raw_rate:.2f}x raw chord rate (target >= 0.5x)"
            if rate and raw_rate
            else "",
        )
        add("fanout-1000-python.wall_s", "fanout-1000-python wall", "s", "lower")
        add("fanout-1000-python.task_ms", "fanout-1000-python task (start -> end)", "ms", "lower")
        warm = median("python-cold-start.warm_ms")
        for key, what in (
            ("cold_ms", "new package, env built on the worker"),
            ("prebuilt_ms", "new package, env built at upload"),
            ("warm_ms", "warm package"),
        ):
            value = median(f"python-cold-start.{key}")
            add(
                f"python-cold-start.{key}",
                f"python one-task run: {what}",
                "ms",
                "lower",
                note=f"{value / warm:.1f}x the warm run"
                if value and warm and key != "warm_ms"
                else "",
            )
        return figures

    @staticmethod
    def _table(figures: list[Figure]) -> str:
        lines = [
            "",
            f"{'figure':<58} {'median':>9} {'min':>9} {'max':>9}  {'unit':<8} {'target':<10} note",
        ]
        for f in figures:
            target = ""
            if f.target is not None:
                sign = "<=" if f.better == "lower" else ">="
                verdict = "met" if f.meets_target() else "MISSED"
                target = f"{sign}{f.target:.1f} {verdict}"
            lines.append(
                f"{f.name:<58} {f.median:>9.2f} {min(f.values):>9.2f} {max(f.values):>9.2f}  "
                f"{f.unit:<8} {target:<10} {f.note}"
            )
        return "\n".join(lines) + "\n"

    @staticmethod
    def _machine() -> dict[str, Any]:
        import os
        import platform

        return {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
