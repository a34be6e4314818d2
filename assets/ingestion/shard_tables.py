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
from assets.ingestion.reconciliation import Tally, reconciliation_check, reconciliation_check_spec
from assets.ingestion.shard_load import LoadReport, load_partitions
from assets.partitions import day_shard_key, day_shard_partitions
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


def partition_event_metadata(report: LoadReport) -> dict[str, dict[str, Any]]:
    """Per (day, shard) partition key, what its own materialization event records: its counts
    and reconciliation, never the run's totals (a run may cover many partitions)."""
    return {
        str(day_shard_key(day, shard)): {
            **partition_metadata(tally),
            # Read by the warehouse sensor: the partition's own verdict.
            UNRECONCILED_METADATA: dg.MetadataValue.json(
                [] if tally.reconciled else [str(day_shard_key(day, shard))]
            ),
            # Client tables matched and ignored (with why), columns renamed.
            DISCOVERY_METADATA: dg.MetadataValue.json({shard: report.discovery.get(shard, {})}),
            "schema_drift": dg.MetadataValue.json({shard: report.drift.get(shard, {})}),
        }
        for (day, shard), tally in report.tallies.items()
    }


def table_metadata(warehouse: Warehouse, table: str, report: LoadReport) -> dict[str, Any]:
    """What the materialization as a whole records: the whole lake table's rows (the asset
    overview's "Row count"), not this run's."""
    return {
        "dagster/row_count": warehouse.row_count(LAKE_SCHEMA, table),
        "batch_restarts": report.restarts,
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
        # Each partition's event carries its own counts and reconciliation, never the run's.
        for key, metadata in partition_event_metadata(report).items():
            context.add_asset_metadata(metadata, partition_key=key)
        return dg.MaterializeResult(
            metadata=table_metadata(warehouse, table.name, report),
            check_results=[reconciliation_check(report.reconciliation)],
        )

    return _ingest


def partition_metadata(tally: Tally) -> dict[str, object]:
    """One (day, shard) partition's own counts and reconciliation, readable without JSON."""
    if tally.reconciled:
        verdict = "ok"
    else:
        verdict = (
            f"MISMATCH: the source counted {tally.source_rows} row(s), "
            f"{tally.loaded_rows} loaded + {tally.quarantined_rows} quarantined"
        )
        if tally.source_key_sum != tally.received_key_sum:
            verdict += "; key checksums differ"
    return {
        "dagster/partition_row_count": tally.loaded_rows,
        "tables_read": tally.tables_read,
        "source_rows": tally.source_rows,
        "loaded_rows": tally.loaded_rows,
        "quarantined_rows": tally.quarantined_rows,
        "reconciliation": verdict,
    }


@functools.cache
def shard_table_assets() -> tuple[dg.AssetsDefinition, ...]:
    """One asset per logical lake table of the shards."""
    return tuple(build_shard_table_asset(table) for table in SHARD_LAKE_TABLES)
