"""The container task: the Job manifest built from a spec task, and its life against a
fake Kubernetes API server (fake_kube.py beside this file, on 127.0.0.1), because Kubernetes
cannot run here. The official client talks to it through a kubeconfig the test writes,
so the kubeconfig path of the client configuration is exercised too."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runs.tasktypes.container import build_env_secret, build_job, job_name, run_container
from runs.tasktypes.contract import Attempt, TaskFailed
from runs.tasktypes.process import OutputSink
from tests.runs.tasktypes.fake_kube import TOKEN, FakeKube, Scenario, fake_kube
from workflows.spec import ContainerTask


def _attempt(
    task: dict[str, Any],
    *,
    task_id: str = "extract",
    try_number: int = 1,
    should_stop: Callable[[], bool] = lambda: False,
) -> Attempt:
    ti = SimpleNamespace(run_id=42, task_id=task_id, try_number=try_number, tenant_id=7)
    context = {"logical_date": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}
    return Attempt(1, ti, task, context, OutputSink(1 << 20), should_stop)


def _spec(**fields: Any) -> dict[str, Any]:
    """A task as the executor gets it: validated by the spec model, dumped as JSON, with
    the effective timeout in seconds (as runs.worker puts it)."""
    model = ContainerTask.model_validate({"type": "container", "image": "busybox:1", **fields})
    task = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    if model.timeout is not None:
        task["timeout"] = model.timeout
    return task


WHERE = {"namespace": "jobs", "name": "orc-42-extract-1"}


@pytest.fixture
def kube(tmp_path: Path, settings: Any) -> Iterator[FakeKube]:
    with fake_kube() as server:
        settings.KUBERNETES_CONFIG = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        settings.KUBERNETES_NAMESPACE = "jobs"
        settings.KUBERNETES_POLL_SECONDS = 0.05
        settings.KUBERNETES_START_GRACE_SECONDS = 0.3
        yield server


# --- the manifest --------------------------------------------------------------------------


def test_it_builds_the_job_from_every_field_of_the_spec(settings: Any) -> None:
    settings.KUBERNETES_JOB_TTL_SECONDS = 600
    task = _spec(
        command=["python", "-c"],
        args=["print(1)"],
        env={"REGION": "eu"},
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
        namespace="etl",
        service_account="loader",
        image_pull_policy="IfNotPresent",
        timeout="10m",
    )
    job = build_job(_attempt(task), namespace="etl")

    labels = {
        "app.kubernetes.io/managed-by": "orchestrator",
        "orchestrator/run-id": "42",
        "orchestrator/task-id": "extract",
        "orchestrator/tenant-id": "7",
        "orchestrator/try-number": "1",
    }
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"] == {
        "name": "orc-42-extract-1",
        "namespace": "etl",
        "labels": labels,
        "annotations": {"orchestrator/task-id": "extract"},
    }
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["template"]["metadata"]["labels"] == labels
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "loader"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"] == [
        {
            "name": "task",
            "image": "busybox:1",
            "command": ["python", "-c"],
            "args": ["print(1)"],
            "env": [
                {"name": "ORCHESTRATOR_RUN_ID", "value": "42"},
                {"name": "ORCHESTRATOR_TASK_ID", "value": "extract"},
                {"name": "ORCHESTRATOR_TRY_NUMBER", "value": "1"},
                {"name": "ORCHESTRATOR_LOGICAL_DATE", "value": "2026-01-02T00:00:00+00:00"},
            ],
            "envFrom": [{"secretRef": {"name": "orc-42-extract-1"}}],
            "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"memory": "1Gi"},
            },
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"allowPrivilegeEscalation": False},
        }
    ]


def test_it_leaves_out_what_the_spec_does_not_give() -> None:
    job = build_job(_attempt(_spec()), namespace="default")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert "activeDeadlineSeconds" not in spec
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    container = pod["containers"][0]
    assert {"command", "args", "resources", "imagePullPolicy", "envFrom"}.isdisjoint(container)


def test_it_builds_the_env_secret_the_job_reads() -> None:
    a = _attempt(_spec(env={"REGION": "eu", "TOKEN": "s3cr=t ü"}))
    job = build_job(a, namespace="etl")

    secret = build_env_secret(a, namespace="etl", name=job["metadata"]["name"])

    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "orc-42-extract-1",
            "namespace": "etl",
            "labels": job["metadata"]["labels"],
            "annotations": {"orchestrator/task-id": "extract"},
        },
        "data": {
            "REGION": base64.b64encode(b"eu").decode(),
            "TOKEN": base64.b64encode("s3cr=t ü".encode()).decode(),
        },
    }
    assert "s3cr=t" not in json.dumps(job)


def test_it_lets_the_task_env_override_an_orchestrator_variable() -> None:
    a = _attempt(_spec(env={"ORCHESTRATOR_TASK_ID": "mine"}))
    container = build_job(a, namespace="default")["spec"]["template"]["spec"]["containers"][0]
    # An `env` entry would win over envFrom: the overridden one is left to the Secret.
    assert [e["name"] for e in container["env"]] == [
        "ORCHESTRATOR_RUN_ID",
        "ORCHESTRATOR_TRY_NUMBER",
        "ORCHESTRATOR_LOGICAL_DATE",
    ]
    secret = build_env_secret(a, namespace="default", name="orc-42-extract-1")
    assert secret["data"] == {"ORCHESTRATOR_TASK_ID": base64.b64encode(b"mine").decode()}


def test_it_restricts_pods_when_the_platform_asks(settings: Any) -> None:
    settings.KUBERNETES_RESTRICTED_PODS = True
    job = build_job(_attempt(_spec()), namespace="default")
    assert job["spec"]["template"]["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_it_sanitises_task_ids_into_distinct_dns_labels() -> None:
    assert job_name(42, "extract", 3) == "orc-42-extract-3"
    under, dash = job_name(42, "Load_Sales", 1), job_name(42, "load-sales", 1)
    assert under.startswith("orc-42-load-sales-")
    assert under.endswith("-1")
    assert dash == "orc-42-load-sales-1"
    assert under != dash  # cleaned alike, told apart by the hash
    long = job_name(123456789, "t" * 100, 12)
    assert len(long) == 63
    assert long.startswith("orc-123456789-ttt")
    assert long.endswith("-12")
    assert long != job_name(123456789, "t" * 99, 12)
    for name in (under, long, job_name(1, "_", 1)):
        assert len(name) <= 63
        assert name == name.lower()
        assert name.replace("-", "").isalnum()
        assert "--" not in name


def test_it_labels_the_job_with_the_sanitised_task_id() -> None:
    job = build_job(_attempt(_spec(), task_id="Load_Sales"), namespace="default")
    label = job["metadata"]["labels"]["orchestrator/task-id"]
    assert label.startswith("load-sales-")
    assert len(label) == len("load-sales-") + 6
    assert job["metadata"]["annotations"] == {"orchestrator/task-id": "Load_Sales"}


# --- against the fake API server -------------------------------------------------------------


def test_it_runs_the_job_streams_its_log_and_takes_the_last_line(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["loading", "done", '{"rows": 3}'])
    a = _attempt(_spec(command=["load"]))

    outcome = run_container(a)

    assert (outcome.state, outcome.exit_code, outcome.result) == ("success", 0, {"rows": 3})
    log = a.sink.drain().decode()
    assert "created Job orc-42-extract-1 in namespace jobs" in log
    assert 'loading\ndone\n{"rows": 3}\n' in log
    created = kube.jobs[("jobs", "orc-42-extract-1")].manifest
    assert created["spec"]["template"]["spec"]["containers"][0]["command"] == ["load"]
    assert kube.tokens == {f"Bearer {TOKEN}"}  # from the kubeconfig
    assert kube.deletes == []  # kept for ttlSecondsAfterFinished
    # No env, no Secret: none made, none read by the container.
    assert kube.secrets == {}
    assert not [p for m, p, q in kube.requests if "/secrets" in p]
    assert "envFrom" not in created["spec"]["template"]["spec"]["containers"][0]
    logs = [q for m, p, q in kube.requests if p.endswith("/log")]
    assert logs
    assert logs[0]["follow"].lower() == "true"
    assert logs[0]["container"] == "task"


SECRET = "pa55-w0rd-from-the-vault"


def test_it_keeps_the_env_out_of_the_job_in_a_secret_the_job_owns(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["ok"])
    a = _attempt(_spec(env={"API_KEY": SECRET, "REGION": "eu"}))

    outcome = run_container(a)

    assert outcome.state == "success"
    name = "orc-42-extract-1"
    job = kube.jobs[("jobs", name)]
    stored = json.dumps(job.manifest)
    assert SECRET not in stored
    assert base64.b64encode(SECRET.encode()).decode() not in stored
    assert kube.secret_env("jobs", name) == {"API_KEY": SECRET, "REGION": "eu"}
    secret = kube.secrets[("jobs", name)]
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == job.manifest["metadata"]["labels"]
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": job.uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    container = job.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": name}}]
    assert "API_KEY" not in {e["name"] for e in container["env"]}
    # The Secret before the Job that reads it, the owner once the Job has its uid.
    calls = [(m, p) for m, p, q in kube.requests if m != "GET"]
    assert calls == [
        ("POST", "/api/v1/namespaces/jobs/secrets"),
        ("POST", "/apis/batch/v1/namespaces/jobs/jobs"),
        ("PATCH", f"/api/v1/namespaces/jobs/secrets/{name}"),
    ]
    assert [kind for _, kind, _ in kube.secret_patches] == ["application/json-patch+json"]
    assert kube.secret_deletes == []  # goes with the Job, by the garbage collector
    log = a.sink.drain().decode()
    assert f"stored the task's env in Secret {name}" in log
    assert SECRET not in log


def test_it_deletes_the_secret_when_the_job_is_refused(kube: FakeKube) -> None:
    message = 'jobs.batch is forbidden: User "worker" cannot create resource "jobs"'
    kube.job_create_error = (403, "Forbidden", message)

    with pytest.raises(TaskFailed, match=r"refused Job orc-42-extract-1 .* 403") as caught:
        run_container(_attempt(_spec(env={"API_KEY": SECRET})))

    assert caught.value.retryable is False
    assert kube.secret_creates == [201]
    assert kube.secret_deletes == [("jobs", "orc-42-extract-1")]
    assert kube.secrets == {}
    assert kube.jobs == {}


def test_it_deletes_the_job_and_the_secret_when_the_secret_cannot_be_owned(
    kube: FakeKube,
) -> None:
    kube.next_scenario = Scenario(exit_code=None)
    message = 'secrets "orc-42-extract-1" is forbidden: User "worker" cannot patch'
    kube.secret_patch_error = (403, "Forbidden", message)

    with pytest.raises(TaskFailed, match="cannot make Job orc-42-extract-1 the owner") as caught:
        run_container(_attempt(_spec(env={"API_KEY": SECRET})))

    assert caught.value.retryable is False
    assert message in str(caught.value)
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]
    assert kube.secret_deletes == [("jobs", "orc-42-extract-1")]
    assert kube.secrets == {}


def test_it_adopts_the_secret_of_a_repeated_delivery_with_the_new_env(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["ok"])
    a = _attempt(_spec(env={"API_KEY": "rotated"}))
    earlier = build_env_secret(_attempt(_spec(env={"API_KEY": "old", "GONE": "x"})), **WHERE)
    kube.add_secret(earlier)

    outcome = run_container(a)

    assert outcome.state == "success"
    assert kube.secret_creates == [409]
    assert kube.create_statuses == [201]
    assert kube.secret_env("jobs", "orc-42-extract-1") == {"API_KEY": "rotated"}
    owners = kube.secrets[("jobs", "orc-42-extract-1")]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [kube.jobs[("jobs", "orc-42-extract-1")].uid]
    assert "adopted the existing Secret orc-42-extract-1" in a.sink.drain().decode()


def test_it_refuses_a_secret_of_the_same_name_that_is_not_its_own(kube: FakeKube) -> None:
    foreign = build_env_secret(_attempt(_spec(env={"THEIRS": "keep"})), **WHERE)
    foreign["metadata"]["labels"] = {"app": "someone-else"}
    kube.add_secret(foreign)

    with pytest.raises(TaskFailed, match="Secret named orc-42-extract-1 already exists") as caught:
        run_container(_attempt(_spec(env={"API_KEY": SECRET})))

    assert caught.value.retryable is False
    assert kube.secret_env("jobs", "orc-42-extract-1") == {"THEIRS": "keep"}
    assert kube.secret_patches == []
    assert kube.secret_deletes == []
    assert kube.jobs == {}


def test_it_uses_the_task_namespace_over_the_setting(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["hi"])
    outcome = run_container(_attempt(_spec(namespace="etl")))
    assert outcome.state == "success"
    assert outcome.result == "hi"
    assert list(kube.jobs) == [("etl", "orc-42-extract-1")]


def test_it_fails_with_the_exit_code(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["boom"], exit_code=3)
    a = _attempt(_spec())
    outcome = run_container(a)
    assert (outcome.state, outcome.exit_code, outcome.error) == ("failed", 3, "exit code 3")
    assert outcome.retryable is True
    assert "boom\n" in a.sink.drain().decode()


def test_it_names_the_reason_of_a_killed_container(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(exit_code=137, terminated_reason="OOMKilled")
    outcome = run_container(_attempt(_spec()))
    assert (outcome.state, outcome.error) == ("failed", "exit code 137 (OOMKilled)")


def test_it_skips_on_exit_code_99(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["nothing to do"], exit_code=99)
    outcome = run_container(_attempt(_spec()))
    assert (outcome.state, outcome.exit_code, outcome.error) == ("skipped", 99, "")


def test_it_deletes_the_job_and_its_secret_when_the_attempt_is_cancelled(
    kube: FakeKube,
) -> None:
    kube.next_scenario = Scenario(lines=["working"], exit_code=None)
    stop_at = time.monotonic() + 0.6
    a = _attempt(_spec(env={"API_KEY": SECRET}), should_stop=lambda: time.monotonic() >= stop_at)

    outcome = run_container(a)

    assert outcome.state == "failed"
    assert outcome.error.startswith("stopped: the attempt was cancelled or lost its lease")
    assert time.monotonic() - stop_at < 1.5  # acted on within about a poll
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]
    assert kube.secret_deletes == [("jobs", "orc-42-extract-1")]
    assert kube.secrets == {}
    log = a.sink.drain().decode()
    assert "working\n" in log
    assert "deleted Secret orc-42-extract-1" in log


def test_it_deletes_the_job_and_its_secret_at_the_timeout(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["slow"], exit_code=None)
    task = _spec(timeout=1, env={"API_KEY": SECRET})
    started = time.monotonic()

    outcome = run_container(_attempt(task))

    assert (outcome.state, outcome.error) == ("failed", "timed out after 1s; its Job was deleted")
    assert 1.0 <= time.monotonic() - started < 2.5
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]
    assert kube.secret_deletes == [("jobs", "orc-42-extract-1")]
    assert kube.jobs[("jobs", "orc-42-extract-1")].manifest["spec"]["activeDeadlineSeconds"] == 1


def test_it_reports_a_deadline_kubernetes_enforced(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["slow"], exit_code=None, deadline_after=0.3)
    outcome = run_container(_attempt(_spec(timeout=30)))
    assert (outcome.state, outcome.error) == (
        "failed",
        "timed out after 30s; Kubernetes stopped the Job",
    )
    assert kube.deletes == []


def test_it_adopts_the_job_of_a_repeated_delivery(kube: FakeKube) -> None:
    a = _attempt(_spec())
    kube.add_job(build_job(a, namespace="jobs"), Scenario(lines=['"from before"']))

    outcome = run_container(a)

    assert kube.create_statuses == [409]
    assert (outcome.state, outcome.result) == ("success", "from before")
    assert "adopted the existing Job orc-42-extract-1 in namespace jobs" in a.sink.drain().decode()


def test_it_refuses_a_job_of_the_same_name_that_is_not_its_own(kube: FakeKube) -> None:
    a = _attempt(_spec())
    foreign = build_job(a, namespace="jobs")
    foreign["metadata"]["labels"] = {"app": "someone-else"}
    kube.add_job(foreign, Scenario(lines=["not ours"]))

    with pytest.raises(TaskFailed, match="already exists in namespace jobs") as caught:
        run_container(a)

    assert caught.value.retryable is False
    assert kube.deletes == []


def test_it_fails_on_an_image_pull_error_after_the_grace_period(kube: FakeKube) -> None:
    message = 'Back-off pulling image "busybox:nope"'
    kube.next_scenario = Scenario(waiting_reason="ImagePullBackOff", waiting_message=message)
    a = _attempt(_spec())
    started = time.monotonic()

    outcome = run_container(a)

    assert time.monotonic() - started >= 0.3  # the grace period
    assert outcome.state == "failed"
    assert outcome.error == f"the container could not start: ImagePullBackOff: {message}"
    assert outcome.retryable is True
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]
    assert f"ImagePullBackOff: {message}" in a.sink.drain().decode()


def test_it_fails_at_once_and_for_good_on_an_invalid_image_name(
    kube: FakeKube, settings: Any
) -> None:
    settings.KUBERNETES_START_GRACE_SECONDS = 60
    message = 'Failed to apply default image tag "Bad Image": invalid reference format'
    kube.next_scenario = Scenario(waiting_reason="InvalidImageName", waiting_message=message)
    started = time.monotonic()

    outcome = run_container(_attempt(_spec()))

    assert time.monotonic() - started < 5
    assert outcome.error == f"the container could not start: InvalidImageName: {message}"
    assert outcome.retryable is False
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]


def test_it_fails_for_good_when_the_cluster_refuses_the_job(
    kube: FakeKube, settings: Any, tmp_path: Path
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(config.read_text().replace(TOKEN, "wrong-token"))
    with pytest.raises(TaskFailed, match=r"refused Job orc-42-extract-1 .* 401") as caught:
        run_container(_attempt(_spec()))
    assert caught.value.retryable is False
    assert kube.jobs == {}


def test_it_fails_for_good_without_a_usable_kubeconfig(settings: Any, tmp_path: Path) -> None:
    settings.KUBERNETES_CONFIG = str(tmp_path / "missing")
    with pytest.raises(TaskFailed, match="KUBERNETES_CONFIG") as caught:
        run_container(_attempt(_spec()))
    assert caught.value.retryable is False
    assert str(tmp_path / "missing") in str(caught.value)


def test_it_fails_for_good_in_cluster_outside_a_cluster(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings.KUBERNETES_CONFIG = "in-cluster"
    with pytest.raises(TaskFailed, match="Service host/port is not set") as caught:
        run_container(_attempt(_spec()))
    assert caught.value.retryable is False


def test_it_rides_out_a_passing_api_outage(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["still here"], line_delay=0.3)
    kube.failing_reads = 3
    a = _attempt(_spec())

    outcome = run_container(a)

    assert (outcome.state, outcome.result) == ("success", "still here")
    assert kube.failing_reads == 0
    log = a.sink.drain().decode()
    assert (
        "the Kubernetes API failed (500 Internal Server Error: etcdserver: leader changed)" in log
    )
    assert kube.deletes == []


def test_it_fails_when_the_api_stays_away(kube: FakeKube, settings: Any) -> None:
    settings.KUBERNETES_API_GRACE_SECONDS = 0.3
    kube.next_scenario = Scenario(exit_code=None)
    kube.failing_reads = 1000

    outcome = run_container(_attempt(_spec()))

    assert outcome.state == "failed"
    assert outcome.error == (
        "lost track of Job orc-42-extract-1: 500 Internal Server Error: etcdserver: leader changed"
    )
    assert outcome.retryable is True
    assert kube.deletes == [("jobs", "orc-42-extract-1", "Background")]


def test_it_fails_when_someone_else_deletes_the_job(kube: FakeKube) -> None:
    kube.next_scenario = Scenario(lines=["working"], exit_code=None)

    def delete_it() -> None:
        kube.jobs[("jobs", "orc-42-extract-1")].deleted = True

    timer = threading.Timer(0.4, delete_it)
    timer.start()
    try:
        with pytest.raises(TaskFailed, match="was deleted while it ran") as caught:
            run_container(_attempt(_spec()))
    finally:
        timer.cancel()
    assert caught.value.retryable is True
    assert kube.deletes == []
