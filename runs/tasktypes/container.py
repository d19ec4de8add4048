"""The `container` task: one Kubernetes Job per try, through the official client. The Job
runs a single pod (backoffLimit 0: retries are the engine's), its log is streamed into
the attempt's log, its exit code decides the outcome as a shell task's does.

The task's own env (rendered, so it may hold `{{ secrets.X }}`) never goes into the Job:
whoever may read Jobs in the namespace would read it there. It goes into a Secret of the
Job's name, created before the Job and read by the container through `envFrom`; only the
ORCHESTRATOR_* variables, which are no secret, stay plain `env` entries. Once the Job
exists, the Secret gets the Job as its owner, so Kubernetes collects it with the Job.

A finished Job is not deleted: Kubernetes removes it (and so its Secret)
ttlSecondsAfterFinished later, so its pod and log stay readable in the cluster
meanwhile. A cancelled, lost or timed-out attempt deletes its Job at once (propagation
Background, so the pod goes too) and its Secret with it, without waiting for the
garbage collector.

The worker needs, in each namespace it uses: create/get/delete on jobs, list on pods, get
on pods/log, and create/get/patch/delete on secrets."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from django.conf import settings
from kubernetes.client.exceptions import ApiException

from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.process import OutputSink, last_line_result
from runs.tasktypes.skip import SKIP_EXIT_CODE

__all__ = ["build_env_secret", "build_job", "job_name", "run_container"]

CONTAINER = "task"
MANAGED_BY = "orchestrator"
NAME_MAX = 63  # a DNS label; the Job's name also becomes its pods' `job-name` label
# Waiting reasons that mean the container will not start by itself soon. Past the grace
# period the attempt fails with the reason; an invalid image name cannot heal at all.
START_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
}
HOPELESS = {"InvalidImageName"}
REQUEST_TIMEOUT = (5.0, 15.0)  # (connect, read): a hung API server must not hide a cancel
LOG_DRAIN_SECONDS = 10.0  # after the container ended, how long its log may take to arrive


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- the manifest ------------------------------------------------------------------------


def _label(task_id: str, room: int) -> str:
    """`task_id` as a DNS label of at most `room` characters. When it had to change
    (case, underscores, length), a short hash of the original keeps two task ids that
    clean up alike ("a_b", "a-b") from sharing a Job name."""
    clean = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", task_id.lower())).strip("-")
    if clean == task_id and len(clean) <= room:
        return clean
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:6]
    return f"{clean[: room - len(digest) - 1].rstrip('-')}-{digest}".lstrip("-")


def job_name(run_id: int, task_id: str, try_number: int) -> str:
    """`orc-<run>-<task>-<try>`: one Job per try, the same name for a repeated delivery."""
    prefix, suffix = f"orc-{run_id}-", f"-{try_number}"
    return prefix + _label(task_id, NAME_MAX - len(prefix) - len(suffix)) + suffix


def _labels(a: Attempt) -> dict[str, str]:
    ti = a.ti
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "orchestrator/run-id": str(ti.run_id),
        "orchestrator/task-id": _label(ti.task_id, NAME_MAX),
        "orchestrator/tenant-id": str(ti.tenant_id),
        "orchestrator/try-number": str(ti.try_number),
    }


def _task_env(a: Attempt) -> dict[str, str]:
    """The task's own env: the Secret's content, never the Job's."""
    return {name: str(value) for name, value in (a.task.get("env") or {}).items()}


def _env(a: Attempt) -> list[dict[str, str]]:
    """The plain env entries: the orchestrator's variables, no secret."""
    ti = a.ti
    env = {
        "ORCHESTRATOR_RUN_ID": str(ti.run_id),
        "ORCHESTRATOR_TASK_ID": ti.task_id,
        "ORCHESTRATOR_TRY_NUMBER": str(ti.try_number),
    }
    logical = a.context.get("logical_date")
    if logical is not None:
        env["ORCHESTRATOR_LOGICAL_DATE"] = logical.isoformat()
    # As for shell tasks, the task's own env wins; but an `env` entry would beat the same
    # name from `envFrom`, so a name the task sets is left out here.
    own = _task_env(a)
    return [{"name": name, "value": value} for name, value in env.items() if name not in own]


def _resources(task: dict[str, Any]) -> dict[str, dict[str, str]]:
    given = task.get("resources") or {}
    return {
        kind: {k: v for k, v in amounts.items() if v}
        for kind in ("requests", "limits")
        if (amounts := given.get(kind))
    }


def _container(a: Attempt, name: str) -> dict[str, Any]:
    task = a.task
    # Many images run as root, so runAsNonRoot (with all capabilities dropped: the
    # "restricted" Pod Security Standard) is the platform's choice, not a default that
    # would make every such image fail with CreateContainerConfigError.
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if _setting("KUBERNETES_RESTRICTED_PODS", False):
        security.update(runAsNonRoot=True, capabilities={"drop": ["ALL"]})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": task["image"],
        "env": _env(a),
        "securityContext": security,
    }
    if _task_env(a):
        container["envFrom"] = [{"secretRef": {"name": name}}]  # see build_env_secret
    if task.get("command"):
        container["command"] = list(task["command"])
    if task.get("args"):
        container["args"] = list(task["args"])
    if resources := _resources(task):
        container["resources"] = resources
    if task.get("image_pull_policy"):
        container["imagePullPolicy"] = task["image_pull_policy"]
    return container


def build_job(a: Attempt, *, namespace: str) -> dict[str, Any]:
    """The batch/v1 Job manifest of this try (pure: no API call)."""
    task = a.task
    labels = _labels(a)
    name = job_name(a.ti.run_id, a.ti.task_id, a.ti.try_number)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [_container(a, name)],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        # The pod gets API credentials only when the task names the account it runs as.
        "automountServiceAccountToken": bool(task.get("service_account")),
    }
    if task.get("service_account"):
        pod["serviceAccountName"] = task["service_account"]
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # the engine does the retries, each try a Job of its own
        "ttlSecondsAfterFinished": int(_setting("KUBERNETES_JOB_TTL_SECONDS", 3600)),
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if task.get("timeout"):
        spec["activeDeadlineSeconds"] = int(task["timeout"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"orchestrator/task-id": a.ti.task_id},
        },
        "spec": spec,
    }


def build_env_secret(a: Attempt, *, namespace: str, name: str) -> dict[str, Any]:
    """The v1 Secret holding the task's env (pure: no API call). It bears the Job's
    `name` and labels: build_job's container reads it with `envFrom` when the task has
    an env at all (else there is no Secret)."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in _task_env(a).items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(a),
            "annotations": {"orchestrator/task-id": a.ti.task_id},
        },
        # `data` rather than `stringData`: it is what a read gives back, so the adoption of
        # an existing Secret can replace it as a whole.
        "data": data,
    }


# --- talking to the cluster ----------------------------------------------------------------


def _api_client() -> Any:
    """A client of its own (the library's global configuration is left alone)."""
    source = _setting("KUBERNETES_CONFIG", None) or None
    try:
        if source == "in-cluster":
            configuration = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            return kubernetes.client.ApiClient(configuration)
        return kubernetes.config.new_client_from_config(config_file=source, persist_config=False)
    except Exception as exc:  # any failure here is the platform's configuration, not the task's
        where = "the default kubeconfig" if source is None else repr(source)
        raise TaskFailed(
            f"cannot configure the Kubernetes client from {where} (platform setting "
            f"KUBERNETES_CONFIG: 'in-cluster', a kubeconfig path, or empty): {exc}",
            retryable=False,
        ) from exc


def _api_error(exc: ApiException) -> str:
    """The API server's own message (a Status object's `message`) when there is one."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    try:
        message = json.loads(body or "")["message"]
    except (ValueError, KeyError, TypeError):
        message = (body or "").strip()[:500]
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")


def _transient(exc: Exception) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (None, 0, 429) or int(exc.status) >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def _unreachable(exc: Exception) -> TaskFailed:
    return TaskFailed(f"cannot reach the Kubernetes API: {exc}")


def _ours(found: Any, manifest: dict[str, Any]) -> bool:
    """Whether an object found under our name bears this attempt's labels (a repeated
    delivery's) rather than being someone else's that happens to share the name."""
    theirs = (found.metadata.labels or {}) if found.metadata else {}
    return all(theirs.get(k) == v for k, v in manifest["metadata"]["labels"].items())


@dataclass
class _Kube:
    batch: Any
    core: Any
    namespace: str
    name: str  # the Job's, and its env Secret's
    has_secret: bool = False

    def create_secret(self, manifest: dict[str, Any], a: Attempt) -> None:
        """Store the task's env in the Job's Secret, before the Job that reads it."""
        self._create(
            f"Secret {self.name} (the task's env)",
            self.core.create_namespaced_secret,
            manifest,
            self._adopt_secret,
            a,
            done=f"stored the task's env in Secret {self.name}",
        )
        self.has_secret = True

    def _create(
        self,
        what: str,
        call: Any,
        manifest: dict[str, Any],
        adopt: Callable[[dict[str, Any], Attempt], Any],
        a: Attempt,
        *,
        done: str,
    ) -> Any:
        """Create an object; one already there (409: this try delivered again) is adopted."""
        try:
            made = call(self.namespace, manifest, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:
                raise TaskFailed(
                    f"Kubernetes refused {what} in namespace {self.namespace}: {_api_error(exc)}",
                    retryable=_transient(exc),
                ) from exc
            return adopt(manifest, a)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(exc) from exc
        a.log(done)
        return made

    def _adopt_secret(self, manifest: dict[str, Any], a: Attempt) -> None:
        """The Secret exists: this try was delivered again. Take it over with this
        delivery's env (rendered anew: a secret may have been rotated meanwhile)."""
        try:
            found = self.core.read_namespaced_secret(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
            if not _ours(found, manifest):
                raise TaskFailed(
                    f"a Secret named {self.name} already exists in namespace "
                    f"{self.namespace} and is not this attempt's (its orchestrator/* labels "
                    "differ)",
                    retryable=False,
                )
            # A list body makes the client send a JSON patch; `add` replaces the whole
            # map, so no key of an earlier rendering stays behind.
            patch = [{"op": "add", "path": "/data", "value": manifest["data"]}]
            self.core.patch_namespaced_secret(
                self.name, self.namespace, patch, _request_timeout=REQUEST_TIMEOUT
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            text = _api_error(exc) if isinstance(exc, ApiException) else str(exc)
            raise TaskFailed(
                f"Secret {self.name} exists but cannot be taken over: {text}",
                retryable=_transient(exc),
            ) from exc
        a.log(f"adopted the existing Secret {self.name} with the task's env")

    def own_secret(self, uid: str, a: Attempt) -> None:
        """Make the Job the Secret's owner, so Kubernetes deletes the Secret with it. Not
        blocking the owner's deletion needs no permission on the Job's finalizers."""
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": self.name,
            "uid": uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
        patch = [{"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}]
        try:
            self.core.patch_namespaced_secret(
                self.name, self.namespace, patch, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            raise TaskFailed(
                f"cannot make Job {self.name} the owner of its Secret: {_api_error(exc)}",
                retryable=_transient(exc),
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(exc) from exc

    def create(self, manifest: dict[str, Any], a: Attempt) -> str:
        """Create (or adopt) the Job; its uid."""
        job = self._create(
            f"Job {self.name}",
            self.batch.create_namespaced_job,
            manifest,
            self._adopt,
            a,
            done=f"created Job {self.name} in namespace {self.namespace}",
        )
        uid = job.metadata.uid if job.metadata else None
        if not uid:
            raise TaskFailed(f"Kubernetes gave no uid for Job {self.name}")
        return str(uid)

    def _adopt(self, manifest: dict[str, Any], a: Attempt) -> Any:
        """The Job exists: this try was delivered again (its worker died). Take it over,
        unless it is someone else's that happens to bear the name."""
        try:
            job = self.batch.read_namespaced_job(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            text = _api_error(exc) if isinstance(exc, ApiException) else str(exc)
            raise TaskFailed(f"Job {self.name} exists but cannot be read: {text}") from exc
        if not _ours(job, manifest):
            raise TaskFailed(
                f"a Job named {self.name} already exists in namespace {self.namespace} "
                "and is not this attempt's (its orchestrator/* labels differ)",
                retryable=False,
            )
        a.log(f"adopted the existing Job {self.name} in namespace {self.namespace}")
        return job

    def job(self) -> Any:
        try:
            return self.batch.read_namespaced_job(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise TaskFailed(
                    f"Job {self.name} in namespace {self.namespace} was deleted while it ran "
                    "(not by this attempt)"
                ) from exc
            raise

    def pod(self) -> Any:
        pods = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=f"job-name={self.name}",
            _request_timeout=REQUEST_TIMEOUT,
        ).items
        # backoffLimit 0 means one pod; should there be more, the newest tells.
        return max(pods, key=lambda p: str(p.metadata.creation_timestamp or ""), default=None)

    def delete(self, a: Attempt) -> None:
        """Delete the Job, then its Secret: the garbage collector would get to the Secret
        too, but at its own pace, and not at all had the Job no owner reference yet."""
        self._delete("Job", self.batch.delete_namespaced_job, a, "its pod goes with it")
        self.delete_secret(a)

    def delete_secret(self, a: Attempt) -> None:
        if self.has_secret:
            self._delete("Secret", self.core.delete_namespaced_secret, a, "the task's env")

    def _delete(self, kind: str, call: Any, a: Attempt, note: str) -> None:
        options = {"propagation_policy": "Background"} if kind == "Job" else {}
        try:
            call(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT, **options)
        except ApiException as exc:
            if exc.status != 404:
                a.log(f"could not delete {kind} {self.name}: {_api_error(exc)}")
                return
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            a.log(f"could not delete {kind} {self.name}: {exc}")
            return
        a.log(f"deleted {kind} {self.name} ({note})")


class _LogStream(threading.Thread):
    """Follows the container's log into the attempt's sink, keeping its tail for the
    result. Ends when the container does (the API server closes the stream)."""

    def __init__(self, kube: _Kube, pod: str, sink: OutputSink) -> None:
        super().__init__(name=f"log-{pod}", daemon=True)
        self.kube, self.pod, self.sink = kube, pod, sink
        self.tail = b""
        self.error = ""
        self.response: Any = None

    def run(self) -> None:
        cap = int(settings.TASK_RESULT_MAX_BYTES)
        try:
            self.response = self.kube.core.read_namespaced_pod_log(
                self.pod,
                self.kube.namespace,
                container=CONTAINER,
                follow=True,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT[0], None),  # a quiet task is no failure
            )
            try:
                # read1: whatever has arrived, instead of waiting for a full buffer
                while chunk := self.response.read1(65536):
                    self.sink.write(chunk)
                    self.tail = (self.tail + chunk)[-cap:]
            finally:
                self.response.release_conn()
        except Exception as exc:  # reported in the attempt's log; the outcome does not need it
            self.error = _api_error(exc) if isinstance(exc, ApiException) else str(exc)

    def stop(self) -> None:
        """Unblock a read that waits on a container that will never write again."""
        if self.is_alive() and self.response is not None:
            # A race with the stream's own end leaves nothing to unblock: ignore it.
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                self.response.shutdown()
        self.join(1.0)


# --- watching the Job ----------------------------------------------------------------------


@dataclass(frozen=True)
class _End:
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    deadline: bool = False


def _condition(job: Any, kind: str) -> Any:
    for condition in (job.status and job.status.conditions) or []:
        if condition.type == kind and condition.status == "True":
            return condition
    return None


def _state(pod: Any) -> Any:
    """The task container's state (waiting / running / terminated), if reported."""
    for status in (pod is not None and pod.status and pod.status.container_statuses) or []:
        if status.name == CONTAINER:
            return status.state
    return None


def _ended(job: Any, pod: Any) -> _End | None:
    failed = _condition(job, "Failed")
    if failed is not None and failed.reason == "DeadlineExceeded":
        return _End(deadline=True)
    state = _state(pod)
    if state is not None and state.terminated is not None:
        done = state.terminated
        return _End(done.exit_code, done.reason or "", done.message or "")
    if _condition(job, "Complete") is not None:
        return _End(0)
    if failed is not None:
        return _End(None, failed.reason or "Failed", failed.message or "")
    return None


def _started(pod: Any) -> bool:
    state = _state(pod)
    return state is not None and (state.running is not None or state.terminated is not None)


def _outcome(end: _End, tail: bytes, timeout: int | None) -> Outcome:

    if end.deadline:
        return Outcome("failed", error=f"timed out after {timeout}s; Kubernetes stopped the Job")
    if end.exit_code == 0:
        return Outcome("success", exit_code=0, result=last_line_result(tail))
    if end.exit_code == SKIP_EXIT_CODE:
        return Outcome("skipped", exit_code=end.exit_code)
    if end.exit_code is not None:
        why = f" ({end.reason})" if end.reason not in ("", "Error", "Completed") else ""
        return Outcome("failed", exit_code=end.exit_code, error=f"exit code {end.exit_code}{why}")
    detail = f": {end.message}" if end.message else ""
    return Outcome("failed", error=f"the Job failed: {end.reason}{detail}")


class _Watch:
    """One attempt's watch over its Job: polls at most a second apart, so a cancel, a lost
    lease or the timeout is acted on within a second."""

    def __init__(self, kube: _Kube, a: Attempt, timeout: int | None) -> None:
        self.kube, self.a, self.timeout = kube, a, timeout
        self.poll = min(1.0, float(_setting("KUBERNETES_POLL_SECONDS", 1.0)))
        self.stream: _LogStream | None = None
        self.waiting: dict[str, float] = {}  # start error reason -> when first seen
        self.api_down_since: float | None = None

    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            while True:
                if self.a.should_stop():
                    self.kube.delete(self.a)
                    return Outcome(
                        "failed",
                        error="stopped: the attempt was cancelled or lost its lease; "
                        "its Job was deleted",
                    )
                if self.timeout and time.monotonic() - started >= self.timeout:
                    self.kube.delete(self.a)
                    return Outcome(
                        "failed", error=f"timed out after {self.timeout}s; its Job was deleted"
                    )
                outcome = self._check()
                if outcome is not None:
                    return outcome
                time.sleep(self.poll)
        finally:
            if self.stream is not None:
                self.stream.stop()

    def _check(self) -> Outcome | None:
        try:
            job, pod = self.kube.job(), self.kube.pod()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            return self._api_trouble(exc)
        self.api_down_since = None
        if pod is not None and self.stream is None and _started(pod):
            self.a.log(f"pod {pod.metadata.name} started; following its log")
            self._follow(pod)
        end = _ended(job, pod)
        if end is not None:
            self._drain()
            return _outcome(end, self.stream.tail if self.stream else b"", self.timeout)
        return self._start_error(pod)

    def _follow(self, pod: Any) -> None:
        self.stream = _LogStream(self.kube, pod.metadata.name, self.a.sink)
        self.stream.start()

    def _drain(self) -> None:
        """The container has ended: let its log stream finish (it closes by itself)."""
        if self.stream is None:
            return
        deadline = time.monotonic() + LOG_DRAIN_SECONDS
        while self.stream.is_alive() and time.monotonic() < deadline:
            if self.a.should_stop():
                break
            self.stream.join(min(self.poll, 0.2))
        if self.stream.is_alive():
            self.a.log(f"the log stream did not end {LOG_DRAIN_SECONDS:.0f}s after the task")
        elif self.stream.error:
            self.a.log(f"the log stream failed: {self.stream.error}")

    def _start_error(self, pod: Any) -> Outcome | None:
        state = _state(pod)
        waiting = state.waiting if state is not None else None
        if waiting is None or waiting.reason not in START_ERRORS:
            return None
        reason, message = waiting.reason, waiting.message or ""
        now = time.monotonic()
        if reason not in self.waiting:
            self.waiting[reason] = now
            self.a.log(f"pod {pod.metadata.name}: {reason}: {message}")
        grace = float(_setting("KUBERNETES_START_GRACE_SECONDS", 60))
        if reason not in HOPELESS and now - self.waiting[reason] < grace:
            return None
        self.kube.delete(self.a)
        detail = f": {message}" if message else ""
        return Outcome(
            "failed",
            error=f"the container could not start: {reason}{detail}",
            retryable=reason not in HOPELESS,
        )

    def _api_trouble(self, exc: Exception) -> Outcome | None:
        """A passing API outage must not fail a long task; a lasting one (or a refusal,
        e.g. RBAC) does, and takes the Job down with it so no try runs unwatched."""
        text = _api_error(exc) if isinstance(exc, ApiException) else str(exc)
        now = time.monotonic()
        if _transient(exc):
            if self.api_down_since is None:
                self.api_down_since = now
                self.a.log(f"the Kubernetes API failed ({text}); still trying")
            if now - self.api_down_since < float(_setting("KUBERNETES_API_GRACE_SECONDS", 60)):
                return None
        self.kube.delete(self.a)
        return Outcome(
            "failed",
            error=f"lost track of Job {self.kube.name}: {text}",
            retryable=_transient(exc),
        )


def _start(kube: _Kube, a: Attempt, namespace: str) -> None:
    """The env Secret (if the task has an env), then the Job, then the Secret's owner.
    Whatever fails on the way takes down what was made, so no Secret outlives its try."""
    manifest = build_job(a, namespace=namespace)
    if _task_env(a):
        kube.create_secret(build_env_secret(a, namespace=namespace, name=kube.name), a)
    try:
        uid = kube.create(manifest, a)
    except Exception:
        kube.delete_secret(a)
        raise
    if kube.has_secret:
        try:
            kube.own_secret(uid, a)
        except Exception:
            kube.delete(a)  # an unowned Secret would outlive the Job: both go, the try fails
            raise


def run_container(a: Attempt) -> Outcome:
    namespace = a.task.get("namespace") or _setting("KUBERNETES_NAMESPACE", "default")
    name = job_name(a.ti.run_id, a.ti.task_id, a.ti.try_number)
    client = _api_client()
    try:
        kube = _Kube(
            kubernetes.client.BatchV1Api(client),
            kubernetes.client.CoreV1Api(client),
            namespace,
            name,
        )
        _start(kube, a, namespace)
        return _Watch(kube, a, a.task.get("timeout")).run()
    finally:
        client.close()
