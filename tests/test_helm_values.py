"""deploy/helm/values.yaml: what the official Dagster chart renders from it into the instance
(K8sRunLauncher, QueuedRunCoordinator, run monitoring and retries) is valid for dagster and
dagster-k8s 1.13.27 / 0.29.27, carries the same lanes as the ECS instance, and a shard's size
reaches its run pod. Helm itself is not installed here; the chart's camelCase values map to the
instance's snake_case keys one to one (the chart's `_run-launcher.tpl` and `_daemon.tpl`)."""

import re

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

from pipelines.run_sizes import run_size_tags
from resources.settings import REPO_ROOT
from resources.shards import RunSize

VALUES = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
ECS = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.ecs.yaml").read_text())


def _snake(value):
    """The chart's camelCase keys as the instance's snake_case ones, recursively."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(item) for item in value]
    return value


def _ok(schema, value) -> None:
    result = validate_config(schema, value)
    assert result.success, [error.message for error in result.errors]


def test_the_run_launcher_values_are_a_valid_k8s_run_launcher_config() -> None:
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    chart = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        **_snake({k: v for k, v in chart.items() if k not in {"envConfigMaps", "envSecrets"}}),
        # The chart renders ConfigMap and Secret sources as their names.
        "env_config_maps": [source["name"] for source in chart["envConfigMaps"]],
        "env_secrets": [source["name"] for source in chart["envSecrets"]],
        # What the chart adds from the release itself (release `minato`).
        "instance_config_map": "minato-dagster-instance",
        "service_account_name": "minato-dagster",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "dagster-postgresql-secret",
    }
    _ok(K8sRunLauncher.config_type(), config)
    # A typo is caught: the check can fail.
    assert not validate_config(
        K8sRunLauncher.config_type(), {**config, "jobnamespace": "x"}
    ).success


def test_the_daemon_values_are_valid_and_carry_the_ecs_instances_lanes() -> None:
    daemon = VALUES["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queued = _snake(daemon["runCoordinator"]["config"]["queuedRunCoordinator"])
    queued["tag_concurrency_limits"] = daemon["runCoordinator"]["config"]["queuedRunCoordinator"][
        "tagConcurrencyLimits"
    ]  # tag values are not keys: `applyLimitPerUniqueValue` stays as it is
    _ok(QueuedRunCoordinator.config_type(), queued)
    ecs_runs = ECS["concurrency"]["runs"]
    assert queued["max_concurrent_runs"] == ecs_runs["max_concurrent_runs"]
    assert queued["tag_concurrency_limits"] == ecs_runs["tag_concurrency_limits"]

    schema = dagster_instance_config_schema()
    monitoring, retries = _snake(daemon["runMonitoring"]), _snake(daemon["runRetries"])
    _ok(schema["run_monitoring"].config_type, monitoring)
    _ok(schema["run_retries"].config_type, retries)
    assert monitoring == ECS["run_monitoring"]
    assert retries == ECS["run_retries"]


def test_a_sized_shard_gets_a_larger_pod_than_the_default() -> None:
    chart = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    default = UserDefinedDagsterK8sConfig.from_dict(_snake(chart))
    shard = get_user_defined_k8s_config(run_size_tags(RunSize(cpu=2048, memory=8192)))
    merged = K8sContainerContext(run_k8s_config=default).merge(
        K8sContainerContext(run_k8s_config=shard)
    )
    assert merged.run_k8s_config.container_config["resources"] == {
        "requests": {"cpu": "2000m", "memory": "8192Mi"},
        "limits": {"memory": "8192Mi"},
    }
    unsized = K8sContainerContext(run_k8s_config=default).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(run_size_tags(None)))
    )
    assert unsized.run_k8s_config.container_config["resources"]["requests"]["cpu"] == "1000m"
