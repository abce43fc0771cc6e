"""The files under deploy/ are checked without Docker or a cluster: the alert rules with promtool
(syntax and unit tests), the Kubernetes manifests against the API schemas (kubernetes-validate),
and every metric the dashboard or the rules name exists in `Metrics`; the wheel holds the product only.

promtool missing: skipped, or a failure when REQUIRE_KAFKA=1 or CI=true (CI must not pass by skipping).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from worker.runtime.metrics import Metrics
from worker.runtime.settings import ENV_PREFIX, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "experiment-worker.json"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes the manifests must apply to.
KUBERNETES_VERSION = "1.30.0"
METRIC = re.compile(r"\bexperiment_worker_[a-z_]+")
# What a wheel build must not see: environments, caches (the Kafka jars), runs, old builds.
NOT_SOURCES = (".git", ".venv*", ".cache", ".run", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
               ".hypothesis", ".benchmarks", "out", ".build", "*.so")
# Development tools that once lived in the package: none may be shipped again.
TOOL_MODULES = {"chaos", "verify", "demo", "loadgen", "local_broker", "prometheus_local", "prometheus", "kafka"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: install it (Debian/Ubuntu: `apt-get install prometheus`)"
        if os.environ.get("REQUIRE_KAFKA") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def run_promtool(*args: str) -> None:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=ALERTS.parent, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def series_names() -> frozenset[str]:
    return Metrics(CollectorRegistry()).series_names()


def known_names() -> frozenset[str]:
    """What a query or a runbook text may name: a sample, or a family (`..._commit_seconds`)."""
    metrics = Metrics(CollectorRegistry())
    return metrics.series_names() | metrics.catalog.keys()


# ---- Prometheus alert rules --------------------------------------------------------------------

def test_promtool_check_rules() -> None:
    run_promtool("check", "rules", ALERTS.name)


def test_promtool_test_rules() -> None:
    run_promtool("test", "rules", "alerts.test.yml")


def test_alert_rules_cover_the_operations_runbook() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
             if "alert" in rule]  # recording rules have neither severity nor annotations
    names = {rule["alert"] for rule in rules}
    assert names >= {"ExperimentWorkerDown", "ExperimentWorkerConsumerLagGrowing", "ExperimentWorkerDlqRatioHigh",
                     "ExperimentWorkerRestoreStuck", "ExperimentWorkerRestoreStalled", "ExperimentWorkerNoCommits",
                     "ExperimentWorkerHungCalls", "ExperimentSampleRatioMismatch",
                     "ExperimentCustomExposuresBeforeProperty"}
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alert_rules_name_only_defined_metrics() -> None:
    assert set(METRIC.findall(ALERTS.read_text())) <= known_names()


# ---- Grafana dashboard ---------------------------------------------------------------------------

def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_names_only_defined_metrics() -> None:
    used = {name for expression in dashboard_expressions() for name in METRIC.findall(expression)}
    assert used, "the dashboard queries no experiment_worker_ metric"
    unknown = used - series_names()
    assert not unknown, f"the dashboard names metrics that Metrics does not define: {sorted(unknown)}"


def test_dashboard_shows_the_operations_view() -> None:
    used = {name for expression in dashboard_expressions() for name in METRIC.findall(expression)}
    assert used >= {
        "experiment_worker_messages_in_total", "experiment_worker_records_out_total",
        "experiment_worker_dlq_records_total", "experiment_worker_consumer_lag",
        "experiment_worker_commit_seconds_bucket", "experiment_worker_restoring_partitions",
        "experiment_worker_users_in_state", "experiment_worker_billable_events_total",
        "experiment_worker_monthly_tracked_users", "experiment_worker_exposures_total",
        "experiment_worker_experiment_users", "experiment_worker_srm_critical_chi_square",
        "experiment_worker_srm_p_value", "experiment_worker_exposure_before_property_total",
        "experiment_worker_custom_exposures_total", "experiment_worker_variant_switches_total",
    }


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


# ---- Kubernetes manifests ------------------------------------------------------------------------

def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def by_kind(kind: str) -> dict[str, Any]:
    [found] = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kinds = set()
    for document in manifests():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        kinds.add(document["kind"])
    assert kinds == {"ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget", "Job"}


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_configmap_holds_only_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = by_kind("ConfigMap")["data"]
    assert all(key.startswith(ENV_PREFIX) for key in data)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = WorkerSettings()  # a bad name or value raises
    assert settings.metrics_port == 9108


def worker_container() -> dict[str, Any]:
    [container] = by_kind("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_probes_and_shutdown() -> None:
    deployment = by_kind("StatefulSet")
    pod = deployment["spec"]["template"]["spec"]
    container = worker_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    shutdown_s = float(by_kind("ConfigMap")["data"]["EXPERIMENT_WORKER_SHUTDOWN_TIMEOUT_S"])
    restore_s = float(by_kind("ConfigMap")["data"]["EXPERIMENT_WORKER_RESTORE_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > shutdown_s + 10
    assert startup["periodSeconds"] * startup["failureThreshold"] > restore_s
    assert container["args"] == ["run"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_state_dir_lives_on_the_pods_own_volume() -> None:
    statefulset = by_kind("StatefulSet")
    state_dir = by_kind("ConfigMap")["data"][f"{ENV_PREFIX}STATE_DIR"]
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    [mount] = [m for m in worker_container()["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert Path(mount["mountPath"]) in Path(state_dir).parents
    assert by_kind("ConfigMap")["data"][f"{ENV_PREFIX}STATE_STORE"] == "disk"
    assert statefulset["spec"]["serviceName"] == by_kind("Service")["metadata"]["name"]


def test_deployment_takes_settings_from_the_configmap_and_the_pod_name() -> None:
    container = worker_container()
    sources = [source["configMapRef"]["name"] for source in container["envFrom"] if "configMapRef" in source]
    assert sources == [by_kind("ConfigMap")["metadata"]["name"]]
    instance = {env["name"]: env for env in container["env"]}[f"{ENV_PREFIX}INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_service_pdb_and_deployment_select_the_worker_pods() -> None:
    labels = by_kind("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (("Service", by_kind("Service")["spec"]["selector"]),
                           ("PodDisruptionBudget", by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]),
                           ("StatefulSet", by_kind("StatefulSet")["spec"]["selector"]["matchLabels"])):
        assert selector.items() <= labels.items(), kind
    port = int(by_kind("ConfigMap")["data"]["EXPERIMENT_WORKER_METRICS_PORT"])
    assert [p["containerPort"] for p in worker_container()["ports"] if p["name"] == "metrics"] == [port]
    assert [p["port"] for p in by_kind("Service")["spec"]["ports"]] == [port]


def test_topic_job_creates_the_topics() -> None:
    job = by_kind("Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    assert container["image"] == worker_container()["image"]


# ---- Docker --------------------------------------------------------------------------------------

def test_compose_stack_wires_kafka_worker_prometheus_and_grafana(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "topics", "worker", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for service in services.values():  # every mounted file of this repository exists
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    for key, value in services["worker"]["environment"].items():
        assert key.startswith(ENV_PREFIX), key
        monkeypatch.setenv(key, value)
    WorkerSettings()
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert [job["job_name"] for job in prometheus["scrape_configs"]] == ["experiment-worker"]


def test_dockerfile_runs_the_worker_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    first: dict[str, str] = {}  # each instruction's first use
    for line in dockerfile.splitlines():
        word, _, rest = line.partition(" ")
        if word.isupper():
            first.setdefault(word, rest.strip())
    assert first["FROM"] == "python:3.11-slim"
    assert first["USER"].split(":")[0] not in ("0", "root")
    assert json.loads(first["ENTRYPOINT"]) == ["experiment-worker"]
    assert json.loads(first["CMD"]) == ["run"]
    assert re.search(r"pip install\b.*\s\.(\s|$)", dockerfile)


def schema_files() -> list[str]:
    """Every file under schemas/, relative to the root (`schemas/history/x.avsc`)."""
    return sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "schemas").rglob("*") if path.is_file())


def test_every_schema_file_ships_as_package_data() -> None:
    """An installed worker (the Docker image) reads schemas/ through worker/schemas: the link must
    point at schemas/, and pyproject's package-data globs must take every file in it."""
    import fnmatch
    import tomllib

    from worker.serde.avro_schemas import SCHEMA_DIR

    assert SCHEMA_DIR.resolve() == (ROOT / "schemas").resolve()
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["worker"]
    files = schema_files()
    assert files
    unshipped = [name for name in files if not any(fnmatch.fnmatch(name, pattern) for pattern in globs)]
    assert unshipped == []


def build_wheel(workdir: Path) -> list[str]:
    """The file list of the wheel `pip wheel` builds from a clean copy of the checkout (a build
    in place could pick up a stale build/ directory)."""
    import shutil
    import sys
    import zipfile

    source = workdir / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(workdir), str(source)]
    # Pure Python: what the wheel holds is the question here, not what mypyc makes of it (which
    # setup.py limits to modules of worker/ anyway).
    env = {**os.environ, "EXPERIMENT_WORKER_COMPILE": "0"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = workdir.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_wheel_holds_the_product_and_no_development_tool(tmp_path: Path) -> None:
    """What `pip install` ships is `worker/` (its modules and schemas) and nothing else: not dev/,
    tests/ or benchmarks/, and no tool that crept back into the package."""
    names = build_wheel(tmp_path)
    shipped = {name for name in names if not name.split("/")[0].endswith(".dist-info")}
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "worker").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert shipped == modules | {name.replace("schemas/", "worker/schemas/", 1) for name in schema_files()}
    tools = [name for name in shipped if Path(name).stem in TOOL_MODULES]
    assert tools == []
