"""deploy/kubernetes/ (and the Dockerfile's GPU target), checked offline; no cluster here.

- Every manifest validates strictly (an unknown field is an error) against the Kubernetes
  schemas ``kubernetes-validate`` ships, for each of ``KUBERNETES_VERSIONS``; the KEDA objects
  against ``KEDA_SCHEMA``, written from KEDA's documentation (ScaledObject specification, the
  ``redis`` scaler's metadata, TriggerAuthentication's ``secretTargetRef``).
- ``kubectl kustomize`` renders the kustomization as an operator's ``kubectl apply -k`` would,
  with and without the GPU component, and every rendered object validates too. kubectl comes
  from the CI tool venv (``.ci/install-tools.sh``), as does Docker's own Dockerfile parser (the
  ``dockerfile`` package); those tests skip on a machine without the venv and fail under CI.
- The manifests agree with the code: every variable they set is a setting; every queue a
  ScaledObject watches is one the code enqueues to and its worker listens to, by RQ's own key
  (all derived from ``removal/queue.py`` under the ConfigMap's settings, in a subprocess that
  reads them as a pod would); grace period and cooldown outlast the job timeout.
- A real worker, started with the Deployment's own command and the real model on a read-only
  root (a private mount namespace), is sent SIGTERM mid-job the way the kubelet sends it (to
  the process, not a group): the job completes, nothing is retried, the job waiting behind it
  stays queued for another worker.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.conf import settings
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from removal import storage
from removal.models import Task
from removal.queue import get_queue
from removal.services.tasks import task_enqueue
from tests.e2e.test_deploy_files import GUNICORN_VARS, dockerignored, settings_env_names
from tests.factories import make_task, make_upload
from tests.helpers import readme_block, reap, subprocess_env
from tests.images import fixture_bytes

ROOT = Path(settings.BASE_DIR)
K8S = ROOT / "deploy" / "kubernetes"
GPU = K8S / "gpu"
# The oldest Kubernetes these manifests are written for, and the newest kubernetes-validate
# ships. Nothing here needs a newer API than 1.30's.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
TOOLS = Path(os.environ.get("QUICKBG_CI_TOOLS",
                            Path.home() / ".cache" / "quickbg" / "ci-tools"))
WORKER_DEPLOYMENTS = {"quickbg-worker", "quickbg-worker-gpu"}
# Variables a manifest may set that a library reads, not the settings.
LIBRARY_VARS = {"NUMBA_CACHE_DIR": "numba: where it caches compiled code (alpha matting)"}


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def manifests() -> list[tuple[Path, dict]]:
    """Every object of the base and of the GPU component, with the file it is in."""
    out = []
    for directory in (K8S, GPU):
        for name in kustomization(directory)["resources"]:
            out += [(directory / name, doc) for doc in load(directory / name)]
    return out


def objects(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def config_map() -> dict[str, str]:
    return objects("ConfigMap")["quickbg-config"]["data"]


def pod_specs() -> dict[str, dict]:
    """Every pod template: Deployments' and Jobs'."""
    return {name: doc["spec"]["template"]["spec"]
            for kind in ("Deployment", "Job") for name, doc in objects(kind).items()}


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def env_example() -> dict[str, str]:
    text = (K8S / "secrets.env.example").read_text()
    return dict(line.split("=", 1) for line in text.splitlines()
                if line.strip() and not line.startswith("#"))


def tool(name: str) -> Path:
    """A program of the CI tool venv; skipped without it, except under CI where it must be."""
    path = TOOLS / "bin" / name
    if not path.exists():
        message = f"{path} is missing: bash .ci/install-tools.sh installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- Kubernetes schemas ----------------------------------------------------------------------


def test_kustomizations_list_every_manifest_in_their_folder():
    for directory in (K8S, GPU):
        listed = set(kustomization(directory)["resources"])
        on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk, directory
    assert kustomization(GPU)["kind"] == "Component"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    checked = 0
    for path, doc in manifests():
        if doc["kind"] in KEDA_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(map(str, exc.path))}")
        checked += 1
    assert checked >= 15


def test_schema_validation_catches_a_misspelt_field():
    worker = copy.deepcopy(objects("Deployment")["quickbg-worker"])
    spec = worker["spec"]["template"]["spec"]
    spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSIONS[0], strict=True)


# --- KEDA ----------------------------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}


def _obj(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


_METADATA = {"type": "object", "required": ["name"]}
_HPA_RULES = _obj({
    "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
    "policies": {"type": "array", "items": _obj({
        "type": {"enum": ["Pods", "Percent"]}, "value": {"type": "integer", "minimum": 1},
        "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
    }, ("type", "value", "periodSeconds"))},
})
# The redis (lists) scaler's metadata, as KEDA documents it; the values are strings.
REDIS_METADATA = _obj({name: {"type": "string"} for name in (
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "username",
    "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "databaseIndex", "enableTLS", "unsafeSsl")}, ("listName",))
KEDA_SCHEMA = {
    "ScaledObject": _obj({
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": _obj({
            "scaleTargetRef": _obj({"apiVersion": _STR, "kind": _STR, "name": _STR,
                                    "envSourceContainerName": _STR}, ("name",)),
            "pollingInterval": _INT, "cooldownPeriod": _INT, "initialCooldownPeriod": _INT,
            "idleReplicaCount": _INT, "minReplicaCount": _INT, "maxReplicaCount": _INT,
            "fallback": _obj({"failureThreshold": _INT, "replicas": _INT,
                              "behavior": _STR}, ("failureThreshold", "replicas")),
            "advanced": _obj({
                "restoreToOriginalReplicaCount": {"type": "boolean"},
                "horizontalPodAutoscalerConfig": _obj({
                    "name": _STR,
                    "behavior": _obj({"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES}),
                }),
                "scalingModifiers": {"type": "object"},
            }),
            "triggers": {"type": "array", "minItems": 1, "items": {
                **_obj({
                    "type": _STR, "name": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                    "metadata": {"type": "object", "additionalProperties": _STR},
                    "authenticationRef": _obj({"name": _STR, "kind": {
                        "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
                        ("name",)),
                    "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                    "useCachedMetrics": {"type": "boolean"},
                }, ("type", "metadata")),
                "if": {"properties": {"type": {"const": "redis"}}},
                "then": {"properties": {"metadata": REDIS_METADATA}},
            }},
        }, ("scaleTargetRef", "triggers")),
    }, ("apiVersion", "kind", "metadata", "spec")),
    "TriggerAuthentication": _obj({
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": _obj({"secretTargetRef": {"type": "array", "items": _obj({
            # The redis scaler's authentication parameters.
            "parameter": {"enum": ["address", "host", "port", "username", "password", "tls",
                                   "ca", "cert", "key", "keyPassword"]},
            "name": _STR, "key": _STR}, ("parameter", "name", "key"))}}),
    }, ("apiVersion", "kind", "metadata", "spec")),
}


def keda_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(KEDA_SCHEMA[doc["kind"]])
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_keda_objects_use_only_the_fields_keda_documents():
    docs = [doc for _, doc in manifests() if doc["kind"] in KEDA_KINDS]
    assert {doc["kind"] for doc in docs} == KEDA_KINDS
    for doc in docs:
        assert keda_errors(doc) == [], doc["metadata"]["name"]
    for scaled in objects("ScaledObject").values():
        spec = scaled["spec"]
        assert spec["maxReplicaCount"] >= max(spec["minReplicaCount"], 1)
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            assert int(trigger["metadata"]["listLength"]) >= 1
            assert trigger["authenticationRef"]["name"] in objects("TriggerAuthentication")


def test_keda_check_catches_a_misspelt_scaler_field():
    scaled = copy.deepcopy(objects("ScaledObject")["quickbg-worker"])
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    metadata["listname"] = metadata.pop("listName")
    assert any("listname" in error for error in keda_errors(scaled))
    scaled = copy.deepcopy(objects("ScaledObject")["quickbg-worker"])
    scaled["spec"]["cooldownPeriods"] = 600
    assert keda_errors(scaled)


def test_scaledobjects_target_the_worker_deployments():
    deployments = objects("Deployment")
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in objects("ScaledObject").values()}
    assert targets == WORKER_DEPLOYMENTS
    for name in WORKER_DEPLOYMENTS:
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"
    assert "replicas" not in deployments["quickbg-web"]["spec"], "the HPA owns it"


# --- Rendered by kustomize, as `kubectl apply -k` would ------------------------------------------


def render(tmp_path: Path, *, gpu: bool) -> list[dict]:
    """``kubectl kustomize`` on a copy of deploy/kubernetes with secrets.env filled in from the
    example, as the README says; with ``gpu`` the component is switched on as it says too."""
    kubectl = tool("kubectl")
    work = tmp_path / "kubernetes"
    shutil.copytree(K8S, work)
    shutil.copy(work / "secrets.env.example", work / "secrets.env")
    if gpu:
        text = (work / "kustomization.yaml").read_text()
        enabled = text.replace("# components:\n#   - gpu\n", "components:\n  - gpu\n")
        assert enabled != text, "kustomization.yaml no longer has the commented GPU lines"
        (work / "kustomization.yaml").write_text(enabled)
    result = subprocess.run([str(kubectl), "kustomize", str(work)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("gpu", [False, True], ids=["base", "with-gpu"])
def test_rendered_kustomization_validates_and_wires_up(tmp_path, gpu):
    docs = render(tmp_path, gpu=gpu)
    kinds = [doc["kind"] for doc in docs]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    for doc in docs:
        if doc["kind"] in KEDA_KINDS:
            assert keda_errors(doc) == []
        else:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "quickbg", doc["metadata"]["name"]
    assert ("Deployment", "quickbg-worker-gpu") in names if gpu else (
        ("Deployment", "quickbg-worker-gpu") not in names)
    assert kinds.count("Secret") == 1
    secret = next(doc for doc in docs if doc["kind"] == "Secret")
    assert secret["metadata"]["name"] == "quickbg-secrets"  # what every reference names
    assert set(secret["data"]) == set(env_example())
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc["spec"]["template"]["spec"]):
                assert container["image"].startswith("registry.example.com/quickbg:"), (
                    "the `images:` entries must rewrite every image")


# The cluster is outside the project: a stand-in `kubectl` that records each call, renders
# `apply -k DIR` with the real `kubectl kustomize DIR` (what apply would send), and names in
# its log the objects the other calls refer to, for the test to look up.
KUBECTL_SHIM = """#!{python}
import json, subprocess, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["apply", "-k"]:
    result = subprocess.run([{kubectl!r}, "kustomize", args[2]], capture_output=True, text=True)
    with open({rendered!r}, "w") as out:
        out.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
"""


def run_readme_block(tmp_path: Path, block: str) -> tuple[list[list[str]], list[dict]]:
    """The README block, run verbatim by bash in a copy of the project's deploy/ folder, with
    the stand-in kubectl first on PATH; its calls and what `apply -k` rendered."""
    kubectl = tool("kubectl")
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    shutil.copytree(K8S, work / "deploy" / "kubernetes",
                    ignore=shutil.ignore_patterns("secrets.env"))
    bin_dir.mkdir()
    log, rendered = tmp_path / "kubectl.log", tmp_path / "rendered.yaml"
    (bin_dir / "kubectl").write_text(KUBECTL_SHIM.format(
        python=sys.executable, log=str(log), kubectl=str(kubectl), rendered=str(rendered)))
    (bin_dir / "kubectl").chmod(0o755)
    result = subprocess.run(["bash", "-e", "-c", block], cwd=work, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return calls, [doc for doc in yaml.safe_load_all(rendered.read_text()) if doc]


def test_readme_first_deploy_block_renders_with_its_secrets_file(tmp_path):
    calls, docs = run_readme_block(tmp_path, readme_block("k8s-start", "k8s-end"))
    assert ["apply", "-k", "deploy/kubernetes/"] in calls
    assert (tmp_path / "work" / "deploy" / "kubernetes" / "secrets.env").exists()
    assert {doc["kind"] for doc in docs} >= {"Deployment", "ScaledObject", "Secret", "Job"}
    assert ["-n", "quickbg", "get", "pods"] in calls


def test_readme_rollout_block_names_what_the_manifests_define(tmp_path):
    block = readme_block("k8s-rollout-start", "k8s-rollout-end")
    first = readme_block("k8s-start", "k8s-end").splitlines()[0]  # secrets.env, as before
    calls, docs = run_readme_block(tmp_path, f"{first}\n{block}")
    defined = {(doc["kind"].lower(), doc["metadata"]["name"]) for doc in docs}
    assert calls[0][:4] == ["-n", "quickbg", "delete", "job"]
    for name in calls[0][4:]:
        if not name.startswith("--"):
            assert ("job", name) in defined, name
    assert calls[1] == ["apply", "-k", "deploy/kubernetes/"]  # after the delete: Jobs rerun
    referred = [arg for call in calls[2:] for arg in call if "/" in arg and "=" not in arg]
    assert referred == ["job/quickbg-migrate", "deployment/quickbg-web",
                        "deployment/quickbg-worker"]
    for ref in referred:
        assert tuple(ref.split("/")) in defined, ref
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    assert namespaces == {"quickbg"} and all(call[:2] == ["-n", "quickbg"]
                                             for call in calls if call[0] != "apply")


# --- The manifests agree with the code ----------------------------------------------------------


def pod_settings(extra_env: dict[str, str] | None = None, *, command: list[str] | None = None):
    key = (tuple(sorted((extra_env or {}).items())), tuple(command) if command else None)
    if key not in _POD_SETTINGS:
        _POD_SETTINGS[key] = _pod_settings(extra_env, command=command)
    return _POD_SETTINGS[key]


_POD_SETTINGS: dict = {}


def _pod_settings(extra_env: dict[str, str] | None, *, command: list[str] | None) -> dict:
    """What a pod with the ConfigMap's environment (plus ``extra_env``) computes from the code:
    the queues the code enqueues to, the queues ``command`` (a run_worker command line) makes
    the worker listen to, RQ's list key of each, and the job timeout. Run in a subprocess so
    the settings module reads that environment, exactly as in the pod."""
    code = r"""
import json, sys, uuid
import django
django.setup()
from django.conf import settings
from removal import queue
from removal.management.commands.run_worker import Command
args = json.loads(sys.argv[1])
listened = None
if args is not None:
    options = vars(Command().create_parser("manage.py", "run_worker").parse_args(args))
    known = {"burst", "max_jobs", "name", "no_warmup", "webhooks_only", "models", "verbosity",
             "settings",
             "pythonpath", "traceback", "no_color", "force_color", "skip_checks"}
    if set(options) - known:
        sys.exit("run_worker has options this test does not map to queues: "
                 f"{sorted(set(options) - known)}; teach tests/e2e/test_kubernetes.py which queues "
                 "they select, and update the ScaledObjects")
    models = [name for name in options["models"].split(",") if name]
    if not options["webhooks_only"] and not models:
        sys.exit("a manifest's run_worker must name its --models (the default, every installed "
                 "model, is not known before the pod starts, so no ScaledObject could match it)")
    listened = ([queue.webhooks_queue_name()] if options["webhooks_only"]
                else queue.worker_queue_names(models))
enqueued = set(queue.all_task_queue_names()) | {queue.webhooks_queue_name()}
assert queue.queue_name_for(batch_id=uuid.uuid4()) in enqueued
key = lambda name: queue.get_queue(name).key
print(json.dumps({
    "enqueued": sorted(key(n) for n in enqueued),
    "listened": None if listened is None else [key(n) for n in listened],
    "job_timeout": settings.QUICKBG_JOB_TIMEOUT,
}))
"""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **config_map(), **(extra_env or {}),
           "SECRET_KEY": "test-only", "DJANGO_SETTINGS_MODULE": "quickbg.settings"}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(command)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def worker_container(name: str) -> dict:
    return objects("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]


def literal_env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def run_worker_args(container: dict) -> list[str]:
    command = container["command"] + container.get("args", [])
    assert command[:3] == ["python", "manage.py", "run_worker"], command
    return command[3:]


def worker_settings(container: dict) -> dict:
    """``pod_settings`` for a worker container: its environment and its run_worker options."""
    return pod_settings(literal_env(container), command=run_worker_args(container))


def test_every_queue_a_scaledobject_watches_is_one_the_code_uses():
    watched_anywhere = set()
    enqueued = None
    for scaled in objects("ScaledObject").values():
        code = worker_settings(worker_container(scaled["spec"]["scaleTargetRef"]["name"]))
        enqueued = set(code["enqueued"])
        watched = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
        name = scaled["metadata"]["name"]
        assert watched <= enqueued, f"{name} watches lists no code enqueues to"
        assert watched <= set(code["listened"]), f"{name} scales workers on queues they skip"
        watched_anywhere |= watched
    # Every queue some worker Deployment listens to makes it grow (a model no Deployment
    # serves is refused by the API with a 503, never left queued).
    listened_anywhere = set()
    for scaled in objects("ScaledObject").values():
        container = worker_container(scaled["spec"]["scaleTargetRef"]["name"])
        listened_anywhere |= set(worker_settings(container)["listened"])
    assert watched_anywhere == listened_anywhere
    # RQ's key: rq:queue:<name>, the names from QUICKBG_QUEUE (default quickbg) and the model.
    assert "rq:queue:quickbg:isnet-general-use" in enqueued


def test_cpu_workers_scale_on_every_queue_they_listen_to():
    code = worker_settings(worker_container("quickbg-worker"))
    scaled = objects("ScaledObject")["quickbg-worker"]
    assert {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]} == set(
        code["listened"])


def test_grace_period_and_cooldown_outlast_the_job_timeout():
    for name in WORKER_DEPLOYMENTS:
        container = worker_container(name)
        timeout = worker_settings(container)["job_timeout"]
        spec = objects("Deployment")[name]["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > timeout, name
        # SIGTERM alone is RQ's warm shutdown: a preStop would only delay it.
        assert "lifecycle" not in container, name
    for scaled in objects("ScaledObject").values():
        spec = scaled["spec"]
        target = worker_container(spec["scaleTargetRef"]["name"])
        timeout = worker_settings(target)["job_timeout"]
        assert spec["cooldownPeriod"] > timeout
        window = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert window["stabilizationWindowSeconds"] > timeout


def documented_names() -> set[str]:
    """Names in the first column of the README's tables (the configuration table, and the
    feature sections' own tables of settings) and in .env.example."""
    names = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0]))
    example = (ROOT / ".env.example").read_text()
    return names | set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))


def test_every_variable_a_manifest_sets_is_a_documented_setting():
    from removal.pipeline import providers

    read = settings_env_names() | GUNICORN_VARS | {providers.ENV_VAR} | set(LIBRARY_VARS)
    documented = documented_names()
    names = set(config_map())
    for spec in pod_specs().values():
        for container in containers(spec):
            names |= {item["name"] for item in container.get("env", [])}
            for source in container.get("envFrom", []):
                assert source == {"configMapRef": {"name": "quickbg-config"}}
    assert names - read == set(), "set by a manifest, read by no setting"
    assert names - documented - set(LIBRARY_VARS) == set(), (
        "in no settings table of the README nor .env.example")
    kubernetes_section = (ROOT / "README.md").read_text().split("\n### Kubernetes\n", 1)[1]
    for name in LIBRARY_VARS:
        assert f"`{name}`" in kubernetes_section.split("\n### ", 1)[0], name
    assert len(names) >= 15


def test_secrets_are_referenced_by_name_and_never_written_in_a_manifest():
    keys = set(env_example())
    for path, doc in manifests():
        assert doc["kind"] != "Secret", f"{path.name}: Secrets come from secrets.env"
    for spec in pod_specs().values():
        for container in containers(spec):
            for item in container.get("env", []):
                if "valueFrom" in item:
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "quickbg-secrets" and ref["key"] in keys
                else:
                    assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY", item["name"]), item
    for auth in objects("TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "quickbg-secrets" and ref["key"] in keys
    for key in set(config_map()):
        assert not re.search(r"SECRET|PASSWORD|TOKEN|_KEY", key), key
    example = env_example()
    for key in ("SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "KEDA_REDIS_PASSWORD"):
        assert example[key] == "", f"secrets.env.example must not hold a value for {key}"
    assert re.search(r"^deploy/kubernetes/secrets\.env$", (ROOT / ".gitignore").read_text(),
                     re.M)
    assert dockerignored("deploy/kubernetes/secrets.env")


def test_worker_threads_match_its_cpu_and_the_models_volume_is_read_only():
    threads = int(config_map()["QUICKBG_ORT_THREADS"])
    worker = worker_container("quickbg-worker")
    assert int(worker["resources"]["requests"]["cpu"]) == threads  # workers x threads <= cores
    for name in WORKER_DEPLOYMENTS:
        spec = objects("Deployment")[name]["spec"]["template"]["spec"]
        mount = next(m for m in worker_container(name)["volumeMounts"] if m["name"] == "models")
        assert mount["mountPath"] == config_map()["QUICKBG_MODELS_DIR"] and mount["readOnly"]
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["persistentVolumeClaim"]["readOnly"] is True
    fetch = pod_specs()["quickbg-fetch-model"]["containers"][0]
    assert fetch["command"][-1] == "fetch_model"
    assert "readOnly" not in next(m for m in fetch["volumeMounts"] if m["name"] == "models")


def test_workers_get_a_writable_copy_of_the_images_numba_cache():
    baked = re.search(r"^ENV NUMBA_CACHE_DIR=(\S+)$", (ROOT / "Dockerfile").read_text(),
                      re.M).group(1)
    for name in WORKER_DEPLOYMENTS:
        spec = objects("Deployment")[name]["spec"]["template"]["spec"]
        copy_step = next(c for c in spec["initContainers"] if c["name"] == "numba-cache")
        target = literal_env(spec["containers"][0])["NUMBA_CACHE_DIR"]
        assert copy_step["command"] == ["cp", "-r", baked, target], name
        for container in (copy_step, spec["containers"][0]):
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert Path(target).parent.as_posix() in mounts, (name, container["name"])


def test_gpu_workers_ask_for_a_gpu_and_put_cuda_first():
    spec = objects("Deployment")["quickbg-worker-gpu"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "quickbg-gpu"
    assert literal_env(container)["QUICKBG_ORT_PROVIDERS"].split(",")[0] == (
        "CUDAExecutionProvider")
    assert spec["nodeSelector"] and spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert kustomization(GPU)["images"][0]["name"] == "quickbg-gpu"


def test_every_pod_is_hardened():
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile).group(1))
    for name, spec in pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == "quickbg", name
        context = spec["securityContext"]
        assert context["runAsNonRoot"] and context["runAsUser"] == uid, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert container["resources"]["requests"]["memory"], (name, container["name"])
    account = objects("ServiceAccount")["quickbg"]
    assert account["automountServiceAccountToken"] is False
    namespace = objects("Namespace")["quickbg"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_network_policies_deny_by_default_and_open_only_web():
    policies = objects("NetworkPolicy")
    deny = policies["quickbg-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    opened = [p["spec"] for p in policies.values() if p["spec"].get("ingress")]
    assert len(opened) == 1
    assert opened[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
    assert [port["port"] for rule in opened[0]["ingress"] for port in rule["ports"]] == [8000]
    egress_ports = {port["port"] for p in policies.values() for rule in p["spec"].get("egress", [])
                    for port in rule.get("ports", [])}
    assert egress_ports == {53, 5432, 6379, 80, 443}
    public = next(rule for p in policies.values() for rule in p["spec"].get("egress", [])
                  if any(port["port"] == 443 for port in rule["ports"]))
    assert "169.254.0.0/16" in public["to"][0]["ipBlock"]["except"]  # no metadata service


def test_web_is_budgeted_scaled_and_sized_for_batches():
    web = objects("Deployment")["quickbg-web"]
    labels = web["spec"]["selector"]["matchLabels"]
    assert objects("PodDisruptionBudget")["quickbg-web"]["spec"]["selector"]["matchLabels"] == (
        labels)
    hpa = objects("HorizontalPodAutoscaler")["quickbg-web"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "quickbg-web" and hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert objects("Service")["quickbg-web"]["spec"]["selector"] == labels
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["gunicorn", "quickbg.wsgi", "--config",
                                    "deploy/gunicorn.conf.py"]
    annotations = objects("Ingress")["quickbg-web"]["metadata"]["annotations"]
    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.removesuffix("m")) >= float(config_map()["QUICKBG_MAX_BATCH_MB"]) + 5
    # Liveness never depends on the database or on a free thread: a TCP check.
    assert set(container["livenessProbe"]) >= {"tcpSocket"}
    # Needed for web (endpoints lag SIGTERM); gunicorn's graceful_timeout fits in the grace.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 5 + 30


@pytest.mark.django_db
def test_readiness_probe_is_the_cheap_health_check(client, settings, tmp_path):
    probe = objects("Deployment")["quickbg-web"]["spec"]["template"]["spec"]["containers"][0][
        "readinessProbe"]["httpGet"]
    host = {h["name"]: h["value"] for h in probe["httpHeaders"]}["Host"]
    assert host in config_map()["ALLOWED_HOSTS"].split(",")
    # Storage that cannot be written: a folder below a regular file.
    (tmp_path / "file").write_text("")
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path / "file" / "x")}}}
    full = client.get("/api/v1/health", HTTP_HOST=host)
    assert full.status_code == 503 and full.json()["checks"]["storage"] == "error"
    ready = client.get(probe["path"], HTTP_HOST=host)
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"] == {"api": "ok", "database": "ok", "redis": "ok",
                                      "storage": "skipped", "s3": "skipped"}
    assert not (tmp_path / "file" / "x").exists()
    bad = client.get("/api/v1/health?skip=disk", HTTP_HOST=host)
    assert bad.status_code == 400
    assert bad.json() == {"detail": "Unknown health check to skip: disk (the checks are "
                                    "database, redis, storage)"}


def test_one_shots_run_migrations_and_fetch_model_before_serving():
    jobs = objects("Job")
    assert jobs["quickbg-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "migrate", "--noinput"]
    for name in ("quickbg-web", *WORKER_DEPLOYMENTS):
        init = objects("Deployment")[name]["spec"]["template"]["spec"]["initContainers"][0]
        assert "manage.py migrate --check" in init["command"][-1], name
    # The worker's own start-up check refuses to run without the weights (run_worker).
    assert "modelstore.verify" in (ROOT / "removal/management/commands/run_worker.py").read_text()


# --- The Dockerfile's GPU target --------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL"}


def test_dockerfile_parses_and_has_a_gpu_target_with_cpu_as_default():
    python = tool("python")
    result = subprocess.run(
        [str(python), "-c", "import dockerfile, json, sys; print(json.dumps([c._asdict() "
         "for c in dockerfile.parse_file(sys.argv[1])]))", str(ROOT / "Dockerfile")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = json.loads(result.stdout)
    assert {c["cmd"] for c in commands} <= INSTRUCTIONS
    stages = [c["value"] for c in commands if c["cmd"] == "FROM"]
    names = [value[2] for value in stages]
    assert names == ["app", "gpu", "cpu"]
    assert all(value[1].upper() == "AS" for value in stages)
    assert stages[1][0] == "app" and stages[2][0] == "app"  # last stage: the CPU image
    froms = [c["start_line"] for c in commands if c["cmd"] == "FROM"]
    gpu = [c for c in commands if froms[1] < c["start_line"] < froms[2]]
    runs = " ".join(" ".join(c["value"]) for c in gpu if c["cmd"] == "RUN")
    assert "pip uninstall -y onnxruntime" in runs
    assert re.search(r'"onnxruntime-gpu\[cuda,cudnn\]==\d+\.\d+\.\d+"', runs)
    env = [c["value"] for c in gpu if c["cmd"] == "ENV"]
    assert ["QUICKBG_ORT_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider"] in [
        list(value) for value in env]
    assert [c["value"] for c in gpu if c["cmd"] == "USER"][-1] == ["quickbg"]
    cmd = next(c for c in commands if c["cmd"] == "CMD")
    assert cmd["json"] is True


# --- SIGTERM, as the kubelet sends it, to a real worker mid-job -----------------------------------

READ_ONLY_ROOT = r"""
set -e
IFS=:
for dir in $QUICKBG_RO_DIRS; do
  mount --bind "$dir" "$dir"
  mount -o remount,ro,bind "$dir" "$dir"
done
unset IFS
mount --bind "$QUICKBG_RW_SOURCE" "$QUICKBG_RW_TARGET"
if touch "$QUICKBG_RO_PROBE" 2>/dev/null; then echo "the root is still writable" >&2; exit 97; fi
exec "$@"
"""


def read_only_root(command: list[str], env: dict, logs: Path) -> tuple[list[str], dict]:
    """``command`` in a mount namespace of its own (``unshare -m``, private: nothing outside
    sees it) where the project, the venv, the Python installation and $HOME are read-only, and
    only /tmp and the project's logs/ folder (the worker pod's emptyDirs, with ``logs`` mounted
    there) are writable: the pod's ``readOnlyRootFilesystem``, as near as one machine gets."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        message = "unshare -m is not permitted here (needs root): no read-only root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    read_only = {ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path.home()}
    env = env | {"QUICKBG_RO_DIRS": ":".join(sorted(map(str, read_only))),
                 "QUICKBG_RW_SOURCE": str(logs), "QUICKBG_RW_TARGET": str(ROOT / "logs"),
                 "QUICKBG_RO_PROBE": str(ROOT / ".read-only-probe")}
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_ROOT, "sh",
            *command], env


@pytest.mark.model
@pytest.mark.django_db(transaction=True)
def test_sigterm_mid_job_finishes_the_job_retries_nothing_and_takes_no_new_one(
        user, empty_queue, tmp_path):
    container = worker_container("quickbg-worker")
    grace = objects("Deployment")["quickbg-worker"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    running, waiting = (make_task(upload=make_upload(owner=user)) for _ in range(2))
    for task in (running, waiting):
        storage.write(task.upload.original_key, fixture_bytes("car-1.jpg"))
    task_enqueue(task=running)
    # The Deployment's command, as the pod runs it (the test's database, queue and media), on
    # a read-only root. `unshare` and `sh` exec it: the pid is the worker's.
    (tmp_path / "logs").mkdir()
    command, env = read_only_root([sys.executable, *container["command"][1:],
                                   *container.get("args", [])], subprocess_env(), tmp_path / "logs")
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while Task.objects.get(pk=running.pk).status != Task.Status.PROCESSING:
            assert time.monotonic() < deadline, "the worker never started the task"
            assert worker.poll() is None, f"the worker exited: {worker.stderr.read()[-2000:]}"
            time.sleep(0.05)
        task_enqueue(task=waiting)
        time.sleep(0.5)  # inside the model run
        # The kubelet signals the container's process, not a process group.
        os.kill(worker.pid, signal.SIGTERM)
        sent = time.monotonic()
        assert worker.wait(timeout=grace) == 0
        assert time.monotonic() - sent < grace
    finally:
        reap(worker, timeout=60)
        worker.stderr.close()
    running.refresh_from_db()
    waiting.refresh_from_db()
    queue = get_queue()
    assert running.status == Task.Status.COMPLETED and running.attempts == 1
    assert storage.exists(f"results/{running.pk}.png")
    job = Job.fetch(running.rq_job_id, connection=queue.connection, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.retries_left == settings.QUICKBG_MAX_RETRIES  # no retry was spent
    assert FailedJobRegistry(queue=queue).get_job_ids() == []
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == []
    # The job behind it was not taken: it waits for the next worker.
    assert waiting.status == Task.Status.QUEUED and waiting.attempts == 0
    assert queue.job_ids == [waiting.rq_job_id]
    # It deregistered (other tests' SIGKILLed workers on this queue stay listed for minutes).
    assert [w.name for w in Worker.all(queue=queue) if w.pid == worker.pid] == []
