"""Jobs: ingestion per (business day, shard), and the warehouse stage per business day.

Downstream of ingestion runs an explicit job rather than declarative automation: it starts only
when every shard of a business day has landed (pipelines/sensors.py), so marts never aggregate
half the shards, and a late shard re-triggers it instead of being silently left out.
"""

import dagster as dg

from assets.dbt_models.layers import dbt_model_assets
from assets.ingestion.landing_files import CRM_CONTACTS_KEY, SEARCH_CONSOLE_PAGES_KEY
from assets.ingestion.shard_tables import shard_table_assets
from assets.monitoring.anomalies import anomaly_assets
from assets.monitoring.slo_report import SLO_REPORT_KEY
from assets.run_lanes import ADHOC_LANE, CORE_LANE, lane_tags
from assets.sync.assets import sync_assets

ingest_shards_job = dg.define_asset_job(
    "ingest_shards",
    selection=dg.AssetSelection.assets(*shard_table_assets()),
    description="Extract one business day of every client table of a shard into the lake.",
    # Launched by hand unless a schedule, sensor or backfill says otherwise (run-queue lanes).
    tags=lane_tags(ADHOC_LANE),
)

# The SaaS exports, one job each (one is partitioned by business day, the other is not).
ingest_search_console_job = dg.define_asset_job(
    "ingest_search_console",
    selection=dg.AssetSelection.assets(SEARCH_CONSOLE_PAGES_KEY),
    description="Load the Search Console export of a business day from the landing zone.",
    tags=lane_tags(ADHOC_LANE),
)

ingest_crm_contacts_job = dg.define_asset_job(
    "ingest_crm_contacts",
    selection=dg.AssetSelection.assets(CRM_CONTACTS_KEY),
    description="Load the newest CRM contacts export from the landing zone.",
    tags=lane_tags(ADHOC_LANE),
)

warehouse_daily_job = dg.define_asset_job(
    "warehouse_daily",
    selection=dg.AssetSelection.assets(*dbt_model_assets(), *anomaly_assets(), *sync_assets()),
    description="dbt warehouse + marts for a business day, then anomaly detection and syncs.",
    tags=lane_tags(ADHOC_LANE),
)

slo_report_job = dg.define_asset_job(
    "slo_report",
    selection=dg.AssetSelection.assets(SLO_REPORT_KEY),
    description="Score every freshness SLO (metadata/slos.yml) over the last 30 business days.",
    tags=lane_tags(CORE_LANE),
)
