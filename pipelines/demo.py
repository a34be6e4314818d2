"""`make demo`: seed the demo sources, run the whole graph, print what happened.

The run mirrors production in two steps, both through the real Dagster instance (so the UI shows
them afterwards): an initial load of the history, then the last 7 business days as the daily
increment on top of it, which is also the anomaly detection window and the second, diff-only
CRM sync.
"""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from assets.governance.partner_config import sharing_partners
from assets.governance.share_views import duckdb_ddl, withheld_sql
from assets.monitoring.anomalies import current_anomalies_sql
from assets.partitions import day_shard_key, partition_range_tags, shard_names
from pipelines import demo_data
from pipelines.definitions import defs
from pipelines.jobs import (
    ingest_crm_contacts_job,
    ingest_search_console_job,
    ingest_shards_job,
    warehouse_daily_job,
)
from resources.settings import REPO_ROOT
from resources.shards import ShardSource
from resources.warehouse import Warehouse

RECENT_DAYS = 7


def seed_demo(config: demo_data.DemoConfig, shard_source: ShardSource, landing_dir: Path) -> dict:
    """Write the demo shards (where shards.yaml points) and the landing files."""
    urls = {}
    for spec in shard_source.specs():
        url = sa.make_url(spec.url())
        if url.get_backend_name() == "sqlite" and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        urls[spec.name] = spec.url()
    return demo_data.seed(config, urls, landing_dir)


def _run_job(
    instance: dg.DagsterInstance, job_name: str, tags: dict[str, str]
) -> dg.ExecuteInProcessResult:
    """Run a named job of the code location, so the UI's history shows which job ran."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags=tags,
        # The demo prints a summary; the full event log is in the Dagster UI.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def run_window(instance: dg.DagsterInstance, first: dt.date, last: dt.date) -> dict[str, dict]:
    """Ingest every shard and landing file for [first, last], then the warehouse stage."""
    shards = shard_names()
    _run_job(
        instance,
        ingest_shards_job.name,
        partition_range_tags(
            str(day_shard_key(first, shards[0])), str(day_shard_key(last, shards[-1]))
        ),
    )
    days = partition_range_tags(str(first), str(last))
    _run_job(instance, ingest_search_console_job.name, days)
    _run_job(instance, ingest_crm_contacts_job.name, {})
    result = _run_job(instance, warehouse_daily_job.name, days)
    return {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


def summarize(warehouse: Warehouse, last_run: dict[str, dict]) -> str:
    def count(schema: str, table: str) -> int:
        return warehouse.query_arrow(f"SELECT count(*) AS n FROM {schema}.{table}")["n"][0].as_py()

    layers = {
        "lake": ["orders", "order_items", "products", "search_console_pages", "crm_contacts"],
        "cleansing": ["cleansing_orders", "cleansing_order_items", "cleansing_products"],
        "fact": ["fact_orders"],
        "snapshot": ["snapshot_products"],
        "widetable": ["widetable_orders"],
        "monitoring": ["monitoring_daily_metrics"],
        "service_crm": ["service_crm_contacts"],
    }
    lines = ["", "Minato demo: rows per layer"]
    for schema, tables in layers.items():
        counts = ", ".join(f"{t}={count(schema, t):,}" for t in tables)
        lines.append(f"  {schema:<12} {counts}")
    lines.append(f"  quarantined  {count('lake', 'quarantine'):,} row(s) in lake.quarantine")
    anomalies = warehouse.query_arrow(current_anomalies_sql("monitoring.anomalies")).to_pylist()
    lines.append(f"Anomalies found in the last {RECENT_DAYS} days: {len(anomalies)}")
    for a in anomalies:
        lines.append(
            f"  {a['metric_day']} {a['metric']}[{a['series_id']}] = {a['value']:,.0f} "
            f"(expected {a['lower_bound']:,.0f} .. {a['upper_bound']:,.0f})"
        )
    sync = last_run.get("sync/crm_contacts", {})
    lines.append(
        "CRM sync (last run, diff only): "
        + ", ".join(
            f"{k}={sync.get(k)}"
            for k in ("rows_added", "rows_changed", "rows_removed", "rows_sent", "rows_failed")
        )
    )
    lines.extend(partner_shares(warehouse))
    return "\n".join(lines)


def partner_shares(warehouse: Warehouse) -> list[str]:
    """Create each sharing partner's thresholded views and say what they show and withhold."""
    lines = []
    for config in sharing_partners(REPO_ROOT / "metadata"):
        assert config.sharing is not None
        for statement in duckdb_ddl(config):
            warehouse.execute(statement)
        privacy = config.sharing.privacy
        for view in config.sharing.views:
            shown = warehouse.query_arrow(
                f"SELECT count(*) AS n FROM {config.share_dataset}.{view.name}"
            )["n"][0].as_py()
            withheld = warehouse.query_arrow(withheld_sql(config, view))["n"][0].as_py()
            lines.append(
                f"Partner {config.company_id} share {config.share_dataset}.{view.name}: "
                f"{shown} row(s) of >= {privacy.threshold} distinct {privacy.privacy_unit}, "
                f"{withheld} group(s) withheld"
            )
    return lines


def run_demo(config: demo_data.DemoConfig, instance: dg.DagsterInstance) -> str:
    started = time.monotonic()
    history_end = config.last_day - dt.timedelta(days=RECENT_DAYS)
    run_window(instance, config.first_day, history_end)
    last_run = run_window(instance, history_end + dt.timedelta(days=1), config.last_day)
    with dg.build_resources({"warehouse": defs.resources["warehouse"]}) as built:
        report = summarize(built.warehouse, last_run)
    return report + f"\nGraph materialized in {time.monotonic() - started:.0f} s."
