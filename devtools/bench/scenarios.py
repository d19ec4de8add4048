"""The engine's benchmark scenarios. Every figure is read back from PostgreSQL: a task or a
run counts only once its state is durably recorded there (the timestamps the workers
wrote), never from what a client saw go by."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from devtools.bench.stats import Client, percentile
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditChainHead, AuditEvent, Tenant
from runs.models import Event, TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from workflows.models import Workflow
from workflows.services import apply_workflow

__all__ = ["Engine"]

FINISHED = set(WorkflowRun.FINISHED)


@contextmanager
def answering() -> Iterator[str]:
    """An HTTP URL on 127.0.0.1 whose server answers every POST with 200 at once."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def blackhole() -> Iterator[str]:
    """An HTTP URL on 127.0.0.1 whose server takes connections and never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)  # the kernel completes the handshakes; nobody reads
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        server.close()


def _expect(ok: bool, status: int, body: Any) -> None:
    if not ok:
        raise RuntimeError(f"unexpected API answer {status}: {str(body)[:500]}")


def _seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()


class Engine:
    """Scenarios against the running service: a tenant, its owner and an API token."""

    def __init__(
        self, tenant: Tenant, actor: Actor, api: str, token: str, workers: list[str]
    ) -> None:
        self.tenant, self.actor, self.api, self.token = tenant, actor, api, token
        self.workers = workers  # the engine's worker node names

    # --- helpers ---------------------------------------------------------------------

    def apply(self, spec: dict[str, Any]) -> Workflow:
        with tenant_scope([self.tenant]):
            return apply_workflow(actor=self.actor, tenant=self.tenant, data=spec).workflow

    def trigger(self, workflow: Workflow) -> tuple[WorkflowRun, dt.datetime]:
        """Trigger in this process; returns the run and the moment just before."""
        started = timezone.now()
        with tenant_scope([self.tenant]):
            run = trigger_run(actor=self.actor, workflow=workflow).run
        return run, started

    def wait(self, run_ids: list[int], timeout: float = 600) -> list[WorkflowRun]:
        """Poll the database until every run is finished; they must all succeed."""
        deadline = time.monotonic() + timeout
        with tenant_scope([self.tenant]):
            while True:
                runs = list(WorkflowRun.objects.filter(pk__in=run_ids))
                if len(runs) == len(run_ids) and all(r.state in FINISHED for r in runs):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runs {run_ids[:5]}... did not finish in {timeout}s")
                time.sleep(0.01)
        failed = [r.pk for r in runs if r.state != WorkflowRun.State.SUCCESS]
        if failed:
            raise RuntimeError(f"benchmark runs did not succeed: {failed[:10]}")
        return runs

    def instances(self, run: WorkflowRun) -> list[TaskInstance]:
        with tenant_scope([self.tenant]):
            return list(TaskInstance.objects.filter(run=run).order_by("task_id"))

    # --- scenarios -------------------------------------------------------------------

    def chain(self, length: int = 100) -> dict[str, float]:
        """A chain of no-op tasks: wall time, and the median handoff between tasks."""
        names = [f"t{i:04d}" for i in range(length)]
        workflow = self.apply(
            {
                "name": f"bench-chain-{length}",
                "tasks": {
                    name: {"type": "noop", **({"depends_on": [names[i - 1]]} if i else {})}
                    for i, name in enumerate(names)
                },
            }
        )
        run, started = self.trigger(workflow)
        (run,) = self.wait([run.pk])
        tis = self.instances(run)
        gaps = [
            _seconds(b.started_at - a.ended_at)  # type: ignore[operator]
            for a, b in itertools.pairwise(tis)
        ]
        return {
            "wall_s": _seconds(run.ended_at - started),  # type: ignore[operator]
            "handoff_ms": statistics.median(gaps) * 1000,
        }

    def fanout(self, width: int = 1000) -> dict[str, float]:
        """root -> `width` parallel no-op tasks -> join: tasks per second, recorded."""
        leaves = [f"l{i:04d}" for i in range(width)]
        tasks: dict[str, Any] = {"root": {"type": "noop"}}
        tasks.update({leaf: {"type": "noop", "depends_on": ["root"]} for leaf in leaves})
        tasks["join"] = {"type": "noop", "depends_on": leaves}
        workflow = self.apply(
            {"name": f"bench-fanout-{width}", "max_active_tasks": min(width, 1000), "tasks": tasks}
        )
        run, started = self.trigger(workflow)
        (run,) = self.wait([run.pk])
        wall = _seconds(run.ended_at - started)  # type: ignore[operator]
        return {"wall_s": wall, "tasks_per_s": (width + 2) / wall}

    def alerting(self, runs: int = 20) -> dict[str, float]:
        """`runs` runs of a 5-task chain started at once, four ways: their events routed
        to no channel; to a webhook that answers 200 at once; to a mail server that is not
        there; to a webhook whose receiver never answers (each try waits
        NOTIFY_TIMEOUT_SECONDS). A failing channel must cost the runs no more than a
        working one (alerts are routed and sent by the notifier, after the engine's
        commit)."""
        figures = {"quiet_wall_s": self._chain_burst("bench-alert-quiet", runs)[0]}
        variants = (("working", answering, "hook"), ("dead_mail", answering, "mail"))
        for name, receiver, kind in (*variants, ("hanging", blackhole, "hook")):
            with receiver() as url:
                rule = self._alert_everything(url, kind)
                try:
                    wall, ids = self._chain_burst(f"bench-alert-{name}", runs)
                    lags = self._routing_lags(ids)
                finally:
                    with tenant_scope([self.tenant]):
                        rule.delete()  # later scenarios run without it
            figures[f"{name}_wall_s"] = wall
            figures[f"{name}_routing_p50_ms"] = percentile(lags, 50)
        return figures

    def _routing_lags(self, run_ids: list[int], timeout: float = 120) -> list[float]:
        """Event written -> routed (its deliveries made), for the runs' events."""
        deadline = time.monotonic() + timeout
        with tenant_scope([self.tenant]):
            events = Event.objects.filter(run_id__in=run_ids)
            while events.filter(routed_at__isnull=True).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"events of runs {run_ids[:5]}... not routed in {timeout}s")
                time.sleep(0.05)
            return [
                (routed - written).total_seconds() * 1000
                for written, routed in events.values_list("time", "routed_at")
                if routed is not None
            ]

    def _chain_burst(self, name: str, runs: int) -> tuple[float, list[int]]:
        names = [f"t{i}" for i in range(5)]
        workflow = self.apply(
            {
                "name": name,
                "max_active_runs": runs,
                "tasks": {
                    n: {"type": "noop", **({"depends_on": [names[i - 1]]} if i else {})}
                    for i, n in enumerate(names)
                },
            }
        )
        started = timezone.now()
        ids = [self.trigger(workflow)[0].pk for _ in range(runs)]
        done = self.wait(ids)
        return _seconds(max(r.ended_at for r in done) - started), ids  # type: ignore[type-var,operator]

    def _alert_everything(self, url: str, kind: str) -> Any:
        """A rule sending every event to a webhook channel to `url` (kind "hook") or to an
        email channel to the workers' mail server, which the bench does not run ("mail")."""
        from notifications import services as notes
        from notifications.models import Channel, Rule

        actor = self.actor
        self.tenant.refresh_from_db()  # its policy lets channels reach 127.0.0.1
        with tenant_scope([self.tenant]):
            hook = Channel.objects.filter(name="bench-hook").first()
            if hook is None:
                hook, _ = notes.create_channel(
                    actor=actor, tenant=self.tenant, name="bench-hook", kind="webhook", url=url
                )
            else:
                notes.update_channel(actor=actor, channel=hook, url=url)
            mailbox = Channel.objects.filter(name="bench-mail").first()
            if mailbox is None:
                mailbox, _ = notes.create_channel(
                    actor=actor,
                    tenant=self.tenant,
                    name="bench-mail",
                    kind="email",
                    recipients=["oncall@example.com"],
                )
            rule = Rule.objects.create(tenant=self.tenant, name="bench-everything")
            rule.channels.set([hook] if kind == "hook" else [mailbox])
            return rule

    def trigger_latency(self, samples: int = 20) -> dict[str, float]:
        """Through the API: the trigger call returned -> its first task started (as the
        worker recorded it), and the request sent -> first task started."""
        workflow = self.apply({"name": "bench-one", "tasks": {"only": {"type": "noop"}}})
        client = Client(self.api, self.token)
        after_return, after_send = [], []
        try:
            for _ in range(samples):
                sent = time.time()
                status, body, _ = client.call("POST", f"/workflows/{workflow.name}/runs/", {})
                returned = time.time()
                _expect(status == 201, status, body)
                (run,) = self.wait([body["id"]])
                (ti,) = self.instances(run)
                first = ti.started_at.timestamp()  # type: ignore[union-attr]
                after_return.append((first - returned) * 1000)
                after_send.append((first - sent) * 1000)
        finally:
            client.close()
        return {
            "after_return_ms": statistics.median(after_return),
            "after_send_ms": statistics.median(after_send),
        }

    def api_latency(self, clients: int = 10, rounds: int = 30) -> dict[str, float]:
        """`clients` concurrent clients, each alternating a trigger POST and a run GET:
        first while the workers are idle (they stop taking task messages, so the API is
        measured alone, as the issue asks), then while they run the triggered runs. Either
        way every run must then go through and succeed."""
        workflow = self.apply(
            {
                "name": "bench-api",
                "max_active_runs": 1000,
                "tasks": {"only": {"type": "noop"}},
            }
        )
        figures: dict[str, float] = {}
        # Not measured: every web process serves this path once before the clock starts.
        self.wait(self._api_round(workflow, clients, 2)[1])
        with self.workers_idle():
            idle, ids = self._api_round(workflow, clients, rounds)
        self.wait(ids)
        busy, ids = self._api_round(workflow, clients, rounds)
        self.wait(ids)
        for phase, (posts, gets) in (("", idle), ("busy_", busy)):
            figures[f"{phase}post_p50_ms"] = percentile(posts, 50)
            figures[f"{phase}post_p99_ms"] = percentile(posts, 99)
            figures[f"{phase}get_p50_ms"] = percentile(gets, 50)
            figures[f"{phase}get_p99_ms"] = percentile(gets, 99)
        return figures

    def _api_round(
        self, workflow: Workflow, clients: int, rounds: int
    ) -> tuple[tuple[list[float], list[float]], list[int]]:
        posts: list[float] = []
        gets: list[float] = []
        ids: list[int] = []
        lock = threading.Lock()

        def client_loop() -> None:
            client = Client(self.api, self.token)
            try:
                for _ in range(rounds):
                    status, body, took = client.call(
                        "POST", f"/workflows/{workflow.name}/runs/", {}
                    )
                    _expect(status == 201, status, body)
                    status, _, took_get = client.call("GET", f"/runs/{body['id']}/")
                    _expect(status == 200, status, None)
                    with lock:
                        posts.append(took * 1000)
                        gets.append(took_get * 1000)
                        ids.append(body["id"])
            finally:
                client.close()
                connection.close()

        self._concurrently(clients, client_loop)
        return (posts, gets), ids

    @contextmanager
    def workers_idle(self) -> Iterator[None]:
        """The engine's workers stop consuming task messages (Celery's remote control) and
        resume afterwards: what the API queues meanwhile waits in the broker."""
        from orchestrator.celery import app

        self._control(app.control.cancel_consumer)
        try:
            yield
        finally:
            self._control(app.control.add_consumer)

    def _control(self, command: Callable[..., list[Any] | None]) -> None:
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        replies = command(queue, destination=self.workers, reply=True, timeout=10)
        if len(replies or []) != len(self.workers):
            raise RuntimeError(f"{len(replies or [])} of the workers {self.workers} answered")

    def burst(self, count: int = 200) -> dict[str, float]:
        """`count` triggers of a 3-task workflow at once: runs completed per second."""
        workflow = self.apply(
            {
                "name": "bench-burst",
                "max_active_runs": 1000,
                "tasks": {
                    "a": {"type": "noop"},
                    "b": {"type": "noop", "depends_on": ["a"]},
                    "c": {"type": "noop", "depends_on": ["b"]},
                },
            }
        )
        barrier = threading.Barrier(count + 1)
        ids: list[int] = []
        lock = threading.Lock()

        def one() -> None:
            client = Client(self.api, self.token)
            try:
                barrier.wait()
                status, body, _ = client.call("POST", f"/workflows/{workflow.name}/runs/", {})
                _expect(status == 201, status, body)
                with lock:
                    ids.append(body["id"])
            finally:
                client.close()

        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(one) for _ in range(count)]
            barrier.wait()
            started = timezone.now()
            for future in futures:
                future.result()
        runs = self.wait(ids)
        wall = _seconds(max(r.ended_at for r in runs) - started)  # type: ignore[type-var,operator]
        return {"wall_s": wall, "runs_per_s": count / wall}

    def list_queries(self, requests: int = 200) -> dict[str, float]:
        """Listing runs, and one run's task instances, with the table at its seeded size."""
        with tenant_scope([self.tenant]):
            run_ids = list(
                WorkflowRun.objects.filter(workflow__name="bench-seeded")
                .order_by("?")
                .values_list("id", flat=True)[:requests]
            )
        client = Client(self.api, self.token)
        runs, tasks = [], []
        try:
            for index in range(requests):
                status, body, took = client.call("GET", "/runs/?limit=50")
                _expect(status == 200 and len(body["results"]) == 50, status, body)
                runs.append(took * 1000)
                status, body, took = client.call(
                    "GET", f"/runs/{run_ids[index % len(run_ids)]}/tasks/?limit=100"
                )
                _expect(status == 200 and len(body["results"]) == 100, status, body)
                tasks.append(took * 1000)
        finally:
            client.close()
        return {
            "runs_p50_ms": percentile(runs, 50),
            "runs_p99_ms": percentile(runs, 99),
            "tasks_p50_ms": percentile(tasks, 50),
            "tasks_p99_ms": percentile(tasks, 99),
        }

    def seed(self, task_instances: int = 1_000_000, per_run: int = 100) -> int:
        """Grow the task instance table to `task_instances` rows (finished runs of a
        100-task workflow), with one INSERT ... SELECT per table. Kept between runs."""
        names = [f"s{i:03d}" for i in range(per_run)]
        workflow = self.apply(
            {"name": "bench-seeded", "tasks": {name: {"type": "noop"} for name in names}}
        )
        with tenant_scope([self.tenant]):
            have = TaskInstance.objects.count()
        missing_runs = max(0, task_instances - have) // per_run
        if not missing_runs:
            return have
        run_table = WorkflowRun._meta.db_table
        ti_table = TaskInstance._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {run_table} (tenant_id, workflow_id, version_id, state, params, "  # noqa: S608
                "logical_date, trigger_source, created_at, queued_at, started_at, ended_at) "
                "SELECT %s, %s, %s, 'success', '{}', now() - g * interval '1 minute', 'api', "
                "now() - g * interval '1 minute', now() - g * interval '1 minute', "
                "now() - g * interval '1 minute', now() - g * interval '1 minute' "
                "FROM generate_series(1, %s) g RETURNING id",
                [self.tenant.pk, workflow.pk, workflow.current_version_id, missing_runs],
            )
            new_runs = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                f"INSERT INTO {ti_table} (tenant_id, run_id, task_id, map_index, task_type, "  # noqa: S608
                "state, try_number, max_tries, lost_tries, priority, pending_upstreams, "
                "queued_at, started_at, ended_at) "
                "SELECT %s, r, 's' || lpad(t::text, 3, '0'), -1, 'noop', 'success', 1, 1, 0, "
                "0, 0, now(), now(), now() "
                "FROM unnest(%s::bigint[]) r, generate_series(0, %s) t",
                [self.tenant.pk, new_runs, per_run - 1],
            )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {run_table}; ANALYZE {ti_table}")
        with tenant_scope([self.tenant]):
            return TaskInstance.objects.count()

    def vacuum(self) -> None:
        """VACUUM ANALYZE the tables the scenarios write, as pgbench does before it
        measures. Every run leaves dead row versions behind (queued, running, success),
        and with autovacuum off, as on CI machines, they pile up over invocations: the
        counts a trigger makes then walk thousands of dead index entries (1.4 ms instead
        of 0.02 ms here) and the figures drift from run to run."""
        tables = [
            model._meta.db_table
            for model in (WorkflowRun, TaskInstance, TaskAttempt, AuditEvent, AuditChainHead)
        ]
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")

    @staticmethod
    def _concurrently(count: int, target: Callable[[], None]) -> None:
        errors: list[BaseException] = []

        def wrapped() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wrapped) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
