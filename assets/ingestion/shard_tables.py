"""Shard ingestion: one asset per logical lake table, partitioned by business day × shard.

A run handles one or more (day, shard) partitions (see `shard_load`); a backfill from the UI
runs a bounded number of partitions per run, so a crash loses at most the run in flight and the
backfill resumes from there.
"""

import datetime as dt
import functools
from typing import Any

import dagster as dg

from assets.constants import LAKE_SCHEMA
from assets.ingestion.lake_tables import SHARD_LAKE_TABLES, LakeTable
from assets.ingestion.reconciliation import reconciliation_check, reconciliation_check_spec
from assets.ingestion.shard_load import LoadReport, load_partitions
from assets.partitions import day_shard_partitions
from resources import settings
from resources.shards import ShardSource
from resources.warehouse import Warehouse

# Transient source errors (dropped connections, lock timeouts, restarts) that outlast the
# per-batch retries fail the step; the whole partition is then retried with backoff.
INGESTION_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# A backfill from the UI runs this many (day, shard) partitions per run, each run one
# transaction: a crash loses one run, and "re-execute failed" resumes from there.
BACKFILL_PARTITIONS_PER_RUN = 64
UNRECONCILED_METADATA = "unreconciled_partitions"
DISCOVERY_METADATA = "discovery"


def load_metadata(report: LoadReport) -> dict[str, Any]:
    """What a materialization of shard-ingested lake partitions records."""
    total = report.total()
    return {
        "partitions": len(report.partitions),
        "tables_read": total.tables_read,
        "source_rows": total.source_rows,
        "loaded_rows": total.loaded_rows,
        "quarantined_rows": total.quarantined_rows,
        "batch_restarts": report.restarts,
        # Per partition, for the warehouse sensor (a run may cover many partitions).
        UNRECONCILED_METADATA: dg.MetadataValue.json(
            [
                f"{day}|{shard}"
                for (day, shard), tally in report.tallies.items()
                if not tally.reconciled
            ]
        ),
        "schema_drift": dg.MetadataValue.json(report.drift),
        # Per shard: client tables matched and ignored (with why), columns renamed.
        DISCOVERY_METADATA: dg.MetadataValue.json(report.discovery),
        "dagster/row_count": total.loaded_rows,
    }


def build_shard_table_asset(table: LakeTable) -> dg.AssetsDefinition:
    @dg.asset(
        key=[LAKE_SCHEMA, table.name],
        group_name=LAKE_SCHEMA,
        description=table.description,
        partitions_def=day_shard_partitions(),
        backfill_policy=dg.BackfillPolicy.multi_run(BACKFILL_PARTITIONS_PER_RUN),
        retry_policy=INGESTION_RETRY_POLICY,
        pool="warehouse",
        kinds={"sql", settings.warehouse_kind()},
        metadata={"primary_key": list(table.primary_key)},
        # A load that does not reconcile with the source stops everything downstream.
        check_specs=[reconciliation_check_spec(dg.AssetKey([LAKE_SCHEMA, table.name]))],
    )
    def _ingest(
        context: dg.AssetExecutionContext, shards: ShardSource, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        report = load_partitions(
            table,
            shards,
            warehouse,
            list(context.partition_keys),
            dt.datetime.now(dt.UTC),
            log=context.log.warning,
        )
        total = report.total()
        if total.quarantined_rows:
            context.log.warning(
                f"lake/{table.name}: {total.quarantined_rows} row(s) quarantined in lake.quarantine"
            )
        return dg.MaterializeResult(
            metadata=load_metadata(report),
            check_results=[reconciliation_check(report.reconciliation)],
        )

    return _ingest


@functools.cache
def shard_table_assets() -> tuple[dg.AssetsDefinition, ...]:
    """One asset per logical lake table of the shards."""
    return tuple(build_shard_table_asset(table) for table in SHARD_LAKE_TABLES)
