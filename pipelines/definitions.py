"""The Minato code location: every asset, check, job, schedule and sensor, and the resources
chosen by environment variables (pipelines/resources_by_env.py).

Loading it reads configuration (the shards file, metric and sync YAML, the cached dbt specs) and
nothing else: no process, no write, no network. A deployment runs `make manifest` first; a
missing dbt manifest is one error that says so.
"""

import dagster as dg

from assets.dbt_models.layers import dbt_model_assets
from assets.ingestion.landing_files import landing_file_assets
from assets.ingestion.shard_tables import shard_table_assets
from assets.monitoring.anomalies import anomaly_assets, anomaly_checks
from assets.monitoring.query_costs import query_costs
from assets.monitoring.slo_report import slo_report_assets
from assets.snapshot_restore.assets import snapshot_restore_assets
from assets.snapshot_restore.janitor import ephemeral_instance_janitor
from assets.sync.assets import sync_assets, sync_checks
from pipelines.jobs import (
    ingest_crm_contacts_job,
    ingest_search_console_job,
    ingest_shards_job,
    slo_report_job,
    warehouse_daily_job,
)
from pipelines.resources_by_env import build_resources
from pipelines.schedules import daily_ingestion_schedule, slo_report_schedule
from pipelines.sensors import (
    alert_resolution_sensor,
    landing_sensor,
    run_failure_alert,
    warehouse_after_ingestion_sensor,
)
from pipelines.snapshot_restore_schedule import snapshot_restore_schedules

defs = dg.Definitions(
    assets=[
        *shard_table_assets(),
        *snapshot_restore_assets(),
        *landing_file_assets(),
        *dbt_model_assets(),
        *anomaly_assets(),
        *sync_assets(),
        query_costs,
        *slo_report_assets(),
    ],
    asset_checks=[*anomaly_checks(), *sync_checks()],
    jobs=[
        ingest_shards_job,
        ingest_search_console_job,
        ingest_crm_contacts_job,
        warehouse_daily_job,
        slo_report_job,
    ],
    schedules=[daily_ingestion_schedule, slo_report_schedule, *snapshot_restore_schedules()],
    sensors=[
        landing_sensor,
        warehouse_after_ingestion_sensor,
        run_failure_alert,
        alert_resolution_sensor,
        ephemeral_instance_janitor,
    ],
    resources=build_resources(),
)
