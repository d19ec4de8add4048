"""deploy/kubernetes: the kustomize base and its example overlay run what docker/compose.yml
runs, as compose runs it (commands, users, capabilities, profiles), with probes and
resources on every container, config only from the base's ConfigMap and Secret (keys the
settings read), the RBAC the `container` executor calls, PDBs on existing pods and one
beat. Pure Python: the kustomizations are resolved here as far as they use kustomize
(resources, images, replicas, a replacing secretGenerator, patches); where kubectl is
installed, its own rendering must agree."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_settings_documented import read_by_settings

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
COMPOSE = ROOT / "docker" / "compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
EXECUTOR = ROOT / "runs" / "tasktypes" / "container.py"
GAUGES = ROOT / "runs" / "gauges.py"  # the metrics read at scrape time

# Each workload and the compose service it stands for.
COMPOSE_SERVICE = {
    "orchestrator-web": "web",
    "orchestrator-worker": "worker",
    "orchestrator-housekeeper": "housekeeper",
    "orchestrator-notifier": "notifier",
    "orchestrator-beat": "beat",
    "orchestrator-migrate": "migrate",
}
CELERY_WORKERS = ("orchestrator-worker", "orchestrator-housekeeper", "orchestrator-notifier")
SECRET_KEYS = {
    "SECRET_KEY",
    "ENCRYPTION_KEYS",
    "AUDIT_HMAC_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "METRICS_TOKEN",
}


# --- resolving a kustomization (as far as these use kustomize) --------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _merge(into[name], value)
        else:
            into[name] = copy.deepcopy(value)


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; a file not committed (secrets.env) is read from its .example."""
    if not path.exists():
        path = path.with_name(path.name + ".example")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    pairs = [line.split("=", 1) for line in lines if not line.lstrip().startswith("#")]
    return {name.strip(): value for name, value in pairs}


def _json6902(obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        assert operation["op"] == "remove", operation  # the only one used here
        *parents, last = operation["path"].strip("/").split("/")
        target = obj
        for part in parents:
            target = target[part]
        del target[last]


def build(directory: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory}: resource {entry} does not exist"
        found = build(path).values() if path.is_dir() else _documents(path)
        for obj in found:
            assert _key(obj) not in objects, f"{entry}: {_key(obj)} twice"
            objects[_key(obj)] = obj
    for generator in kustomization.get("secretGenerator", []):
        key = ("Secret", generator.get("namespace", ""), generator["name"])
        assert generator.get("behavior") == "replace", generator
        assert key in objects, generator
        data: dict[str, str] = {}
        for name in generator.get("envs", []):
            data |= _env_file(directory / name)
        objects[key] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": objects[key]["metadata"],
            "type": "Opaque",
            "stringData": data,
        }
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            path = directory / patch["path"]
            assert path.exists(), f"{directory}: patch {patch['path']} does not exist"
            for doc in _documents(path):
                assert _key(doc) in objects, f"{path}: patches no resource {_key(doc)}"
                _merge(objects[_key(doc)], doc)
        else:
            target = patch["target"]
            matches = [
                o for k, o in objects.items() if k[0] == target["kind"] and k[2] == target["name"]
            ]
            assert len(matches) == 1, target
            _json6902(matches[0], yaml.safe_load(patch["patch"]))
    for change in kustomization.get("replicas", []):
        (workload,) = [
            o for k, o in objects.items() if k[0] == "Deployment" and k[2] == change["name"]
        ]
        workload["spec"]["replicas"] = change["count"]
    for image in kustomization.get("images", []):
        for container in all_containers(objects):
            if container["image"] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


def of_kind(objects: dict[tuple[str, str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    return {name: obj for (k, _, name), obj in objects.items() if k == kind}


def workloads(objects: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    return of_kind(objects, "Deployment") | of_kind(objects, "Job")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return dict(container)


def all_containers(objects: dict[tuple[str, str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        container
        for workload in workloads(objects).values()
        for part in ("initContainers", "containers")
        for container in pod_spec(workload).get(part, [])
    ]


@pytest.fixture(scope="module")
def base() -> dict[tuple[str, str, str], dict[str, Any]]:
    return build(BASE)


@pytest.fixture(scope="module")
def overlay() -> dict[tuple[str, str, str], dict[str, Any]]:
    return build(OVERLAY)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


# --- the tests ---------------------------------------------------------------------------


def test_it_builds_base_and_overlay_from_files_that_exist(base: Any, overlay: Any) -> None:
    assert set(COMPOSE_SERVICE) == set(workloads(base)) == set(workloads(overlay))
    assert {k for k in base} <= {k for k in overlay}
    assert of_kind(overlay, "HorizontalPodAutoscaler")
    assert not of_kind(base, "HorizontalPodAutoscaler")


def test_it_runs_one_image_everywhere(base: Any, overlay: Any) -> None:
    assert {c["image"] for c in all_containers(base)} == {"orchestrator"}
    (image,) = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["images"]
    assert {c["image"] for c in all_containers(overlay)} == {
        f"{image['newName']}:{image['newTag']}"
    }


def test_it_gives_every_container_resources_and_every_process_probes(base: Any) -> None:
    for container in all_containers(base):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert {"cpu", "memory"} <= set(resources["limits"]), container["name"]
    for name, workload in of_kind(base, "Deployment").items():
        container = main_container(workload)
        assert "livenessProbe" in container, name
        assert "readinessProbe" in container, name


def test_it_probes_the_web_as_the_docs_say(base: Any) -> None:
    web = main_container(of_kind(base, "Deployment")["orchestrator-web"])
    allowed = of_kind(base, "ConfigMap")["orchestrator"]["data"]["ALLOWED_HOSTS"].split(",")
    (port,) = web["ports"]
    assert port["containerPort"] == 8000
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = web[probe]["httpGet"]
        assert (http["path"], http["port"]) == (path, port["name"])
        (header,) = http["httpHeaders"]
        assert header["name"] == "Host"
        assert header["value"] in allowed


def test_it_runs_the_commands_compose_runs(base: Any, compose: Any) -> None:
    for name, workload in workloads(base).items():
        # `args` keep the image's entrypoint, as compose's `command` does.
        container = main_container(workload)
        assert "command" not in container, name
        assert container["args"] == compose[COMPOSE_SERVICE[name]]["command"], name


def _compose_uid(service: dict[str, Any]) -> int:
    user = service.get("user") or re.findall(r"^USER (\S+)", DOCKERFILE.read_text(), re.M)[-1]
    return int(str(user).split(":")[0])


def _seconds(duration: str) -> int:
    amount, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()  # type: ignore[union-attr]
    return int(amount) * {"s": 1, "m": 60}[unit]


def test_it_runs_each_process_with_compose_s_privileges(base: Any, compose: Any) -> None:
    for name, workload in workloads(base).items():
        service, pod = compose[COMPOSE_SERVICE[name]], pod_spec(workload)
        container = main_container(workload)
        context = pod["securityContext"] | container["securityContext"]
        uid = _compose_uid(service)
        assert context["runAsUser"] == uid, name
        assert context["runAsNonRoot"] is (uid != 0), name
        assert context["allowPrivilegeEscalation"] is False  # no-new-privileges
        assert "no-new-privileges:true" in service["security_opt"]
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities["drop"] == service["cap_drop"] == ["ALL"], name
        assert set(capabilities.get("add", [])) == set(service.get("cap_add", [])), name
        lifted = "seccomp=unconfined" in service["security_opt"]
        assert context["seccompProfile"]["type"] == ("Unconfined" if lifted else "RuntimeDefault")
        apparmor = container["securityContext"].get("appArmorProfile", {}).get("type")
        assert (apparmor == "Unconfined") is ("apparmor=unconfined" in service["security_opt"])
        assert pod["shareProcessNamespace"] is service["init"]  # a PID 1 that reaps
        if "stop_grace_period" in service:
            grace = _seconds(service["stop_grace_period"])
            assert pod["terminationGracePeriodSeconds"] == grace, name
        for init in pod.get("initContainers", []):  # waiting for migrations needs nothing
            init_context = pod["securityContext"] | init["securityContext"]
            assert init_context["runAsUser"] == 10001
            assert init_context["runAsNonRoot"] is True
            assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def _exec(probe: dict[str, Any]) -> str:
    return " ".join(probe["exec"]["command"])


def test_it_probes_each_worker_by_pinging_its_own_node(base: Any, compose: Any) -> None:
    for name in CELERY_WORKERS:
        container = main_container(of_kind(base, "Deployment")[name])
        args = container["args"]
        node = args[args.index("-n") + 1].split("@")[0] if "-n" in args else "celery"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = _exec(container[probe])
            assert "celery -A orchestrator inspect ping" in command, (name, probe)
            assert f'-d "{node}@$(uname -n)"' in command, (name, probe)
            assert container[probe]["timeoutSeconds"] > 10  # the ping's own --timeout
        healthcheck = compose[COMPOSE_SERVICE[name]].get("healthcheck", {})
        if not healthcheck.get("disable"):  # compose probes it too: the same command
            assert healthcheck["test"][-1] in _exec(container["livenessProbe"]), name


def test_it_probes_beat_on_the_tick_it_sends(base: Any, compose: Any) -> None:
    beat = of_kind(base, "Deployment")["orchestrator-beat"]
    container = main_container(beat)
    liveness = _exec(container["livenessProbe"])
    assert 'name="workflows.schedule_tick"' in liveness
    assert "last_run_at" in liveness
    assert "workflows.schedule_tick" in (ROOT / "runs" / "periodic.py").read_text()
    healthcheck = compose["beat"].get("healthcheck", {})
    if not healthcheck.get("disable"):
        assert healthcheck["test"][-1] in liveness


def test_it_reads_config_only_from_the_base_s_configmap_and_secret(base: Any, overlay: Any) -> None:
    configmaps, secrets = of_kind(base, "ConfigMap"), of_kind(base, "Secret")
    for container in all_containers(base):
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps
            else:
                assert source["secretRef"]["name"] in secrets
        assert "env" not in container, container["name"]
    settings = read_by_settings()
    data = configmaps["orchestrator"]["data"]
    assert sorted(set(data) - settings) == []
    assert not set(data) & SECRET_KEYS
    assert set(secrets["orchestrator"]["stringData"]) == SECRET_KEYS <= settings
    assert set(of_kind(overlay, "Secret")["orchestrator"]["stringData"]) == SECRET_KEYS
    assert sorted(set(of_kind(overlay, "ConfigMap")["orchestrator"]["data"]) - settings) == []
    assert data["KUBERNETES_CONFIG"] == "in-cluster"


def _executor_calls() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of each call the executor makes on its clients."""
    verbs = {
        "create": "create",
        "read": "get",
        "patch": "patch",
        "delete": "delete",
        "list": "list",
    }
    resources = {"job": ("batch", "jobs"), "pod": ("", "pods"), "secret": ("", "secrets")}
    calls = set()
    text = EXECUTOR.read_text()
    for verb, resource in re.findall(r"\.(?:core|batch)\.(\w+?)_namespaced_(\w+)", text):
        if resource == "pod_log":
            calls.add(("", "pods/log", verbs[verb]))
        else:
            calls.add((*resources[resource], verbs[verb]))
    return calls


def test_it_grants_the_container_executor_exactly_what_it_calls(base: Any) -> None:
    calls = _executor_calls()
    assert ("batch", "jobs", "create") in calls
    assert ("", "pods/log", "get") in calls
    (role,) = of_kind(base, "Role").values()
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == calls
    config = of_kind(base, "ConfigMap")["orchestrator"]["data"]
    assert role["metadata"]["namespace"] == config["KUBERNETES_NAMESPACE"]
    (binding,) = of_kind(base, "RoleBinding").values()
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    worker = of_kind(base, "Deployment")["orchestrator-worker"]
    assert subject["kind"] == "ServiceAccount"
    assert subject["name"] == pod_spec(worker)["serviceAccountName"]
    assert subject["namespace"] == worker["metadata"]["namespace"]
    accounts = {(k[1], k[2]): o for k, o in base.items() if k[0] == "ServiceAccount"}
    assert (subject["namespace"], subject["name"]) in accounts
    for name, workload in workloads(base).items():  # no one else holds an API token
        mounted = pod_spec(workload)["automountServiceAccountToken"]
        assert mounted is (name == "orchestrator-worker"), name


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_it_budgets_disruptions_of_pods_that_exist(base: Any) -> None:
    deployments = of_kind(base, "Deployment")
    budgets = of_kind(base, "PodDisruptionBudget")
    assert {"orchestrator-web", *CELERY_WORKERS} <= set(budgets)
    for name, budget in budgets.items():
        selector = budget["spec"]["selector"]["matchLabels"]
        chosen = [
            d
            for d in deployments.values()
            if _selects(selector, d["spec"]["template"]["metadata"]["labels"])
            and d["metadata"]["namespace"] == budget["metadata"]["namespace"]
        ]
        assert len(chosen) == 1, name
    for name, deployment in deployments.items():  # and each Deployment selects its pods
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels), name


def test_it_runs_exactly_one_beat(base: Any, overlay: Any) -> None:
    for objects in (base, overlay):
        beat = of_kind(objects, "Deployment")["orchestrator-beat"]
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_it_serves_the_web_and_its_metrics_through_the_service(base: Any) -> None:
    service = of_kind(base, "Service")["orchestrator-web"]
    web = of_kind(base, "Deployment")["orchestrator-web"]
    assert _selects(service["spec"]["selector"], web["spec"]["template"]["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == main_container(web)["ports"][0]["name"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(port["port"])
    allowed = of_kind(base, "ConfigMap")["orchestrator"]["data"]["ALLOWED_HOSTS"].split(",")
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" in allowed


def test_it_scales_the_task_workers_on_queue_depth_in_the_overlay(overlay: Any) -> None:
    (hpa,) = of_kind(overlay, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "orchestrator-worker"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "orc_queue_depth"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": "tasks"}
    assert re.search(r'"orc_queue_depth",.*labels=\("queue",\)', GAUGES.read_text())
    worker = of_kind(overlay, "Deployment")["orchestrator-worker"]
    assert "replicas" not in worker["spec"]  # the HPA's to set
    assert of_kind(overlay, "Deployment")["orchestrator-web"]["spec"]["replicas"] == 3


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_what_this_test_resolves(
    tmp_path: Path, base: Any, overlay: Any
) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBE, tree)
    example = tree / "overlays" / "example"
    if not (example / "secrets.env").exists():
        shutil.copy(example / "secrets.env.example", example / "secrets.env")
    for directory, resolved in ((tree / "base", base), (example, overlay)):
        done = subprocess.run(
            ["kubectl", "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        rendered = {_key(o): o for o in yaml.safe_load_all(done.stdout) if o}
        assert set(rendered) == set(resolved)
        for key, obj in resolved.items():
            if key[0] in ("Deployment", "Job"):
                assert rendered[key]["spec"] == obj["spec"], key
            elif key[0] == "ConfigMap":
                assert rendered[key]["data"] == obj["data"], key
