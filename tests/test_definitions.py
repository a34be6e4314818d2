"""The code location loads, has the documented shape, and imports point one way."""

import ast
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs
from resources.settings import REPO_ROOT


def test_definitions_load_and_validate() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_shape() -> None:
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    expected = {
        "lake/orders",
        "lake/order_items",
        "lake/products",
        "lake/search_console_pages",
        "lake/crm_contacts",
        "cleansing/cleansing_orders",
        "cleansing_secret/cleansing_secret_orders",
        "snapshot/snapshot_products",
        "fact/fact_orders",
        "widetable/widetable_orders",
        "role_sales/role_sales_daily_gmv",
        "service_crm/service_crm_contacts",
        "monitoring/monitoring_daily_metrics",
        "monitoring/anomalies",
        "sync/crm_contacts",
    }
    assert expected <= keys
    graph = defs.resolve_asset_graph()
    # dbt sources resolve to the ingestion assets: the graph is continuous.
    cleansing = graph.get(dg.AssetKey(["cleansing", "cleansing_orders"]))
    assert dg.AssetKey(["lake", "orders"]) in cleansing.parent_keys
    sync = graph.get(dg.AssetKey(["sync", "crm_contacts"]))
    assert dg.AssetKey(["service_crm", "service_crm_contacts"]) in sync.parent_keys
    # Dagster groups are the warehouse schemas.
    for spec in defs.resolve_all_asset_specs():
        assert spec.group_name == spec.key.path[0], spec.key


def test_partitioning() -> None:
    graph = defs.resolve_asset_graph()
    lake = graph.get(dg.AssetKey(["lake", "orders"])).partitions_def
    assert isinstance(lake, dg.MultiPartitionsDefinition)
    assert {d.name for d in lake.partitions_defs} == {"business_day", "shard"}
    fact = graph.get(dg.AssetKey(["fact", "fact_orders"])).partitions_def
    assert isinstance(fact, dg.DailyPartitionsDefinition)
    assert fact.timezone == "Asia/Tokyo"


def test_ingestion_retries_with_backoff() -> None:
    from assets.ingestion.shard_tables import shard_table_assets

    policy = shard_table_assets()[0].op.retry_policy
    assert policy is not None and policy.max_retries >= 1
    assert policy.backoff == dg.Backoff.EXPONENTIAL


def test_jobs_schedules_sensors() -> None:
    assert defs.resolve_job_def("ingest_shards")
    assert defs.resolve_job_def("warehouse_daily")
    schedule = defs.resolve_schedule_def("daily_ingestion_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.execution_timezone == "Asia/Tokyo"
    for name in ("landing_sensor", "warehouse_after_ingestion_sensor", "run_failure_alert"):
        assert defs.resolve_sensor_def(name)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_imports_point_one_way() -> None:
    """pipelines -> assets -> resources; never back up."""
    forbidden = {"resources": {"assets", "pipelines"}, "assets": {"pipelines"}}
    for floor, banned in forbidden.items():
        for path in (REPO_ROOT / floor).rglob("*.py"):
            assert not (_imported_packages(path) & banned), f"{path} imports {banned}"
