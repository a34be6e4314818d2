"""Snapshot-restore ingestion: per snapshot source, one step restores the latest snapshot, copies
each table through the shard reader and lake write, and deletes the instance.

The restored instance is read exactly like a shard (one catalog query, batched windowed reads,
checks, quarantine, reconciliation, one transaction per table); its name is the `_shard` value.
"""

import datetime as dt
import functools

import dagster as dg

from assets.constants import LAKE_SCHEMA
from assets.ingestion.reconciliation import reconciliation_check, reconciliation_check_spec
from assets.ingestion.shard_load import business_day_bounds, load_partitions
from assets.ingestion.shard_tables import partition_event_metadata, table_metadata
from assets.partitions import business_days, day_shard_key
from assets.snapshot_restore.restore import latest_snapshot, restored_instance
from assets.snapshot_restore.restored_shard import RestoredShard
from assets.snapshot_restore.sources import SnapshotSource, load_snapshot_sources
from resources import settings
from resources.rds import RdsApi
from resources.warehouse import Warehouse

SOURCES_FILE_VARIABLE = "MINATO_SNAPSHOT_SOURCES_FILE"


def build_snapshot_asset(source: SnapshotSource) -> dg.AssetsDefinition:
    tables = source.lake_tables()
    keys = [dg.AssetKey([LAKE_SCHEMA, table.name]) for table in tables]

    @dg.multi_asset(
        name=f"snapshot_{source.name}",
        specs=[
            dg.AssetSpec(
                key,
                group_name=LAKE_SCHEMA,
                description=table.description,
                partitions_def=business_days(),
                kinds={"rds", settings.warehouse_kind()},
                metadata={"primary_key": list(table.primary_key), "snapshot_of": source.instance},
            )
            for key, table in zip(keys, tables, strict=True)
        ],
        check_specs=[reconciliation_check_spec(key) for key in keys],
        pool="warehouse",
        # One restore serves every table: a run copies all of them (each in its own transaction).
        can_subset=False,
    )
    def _copy(context: dg.AssetExecutionContext, rds: RdsApi, warehouse: Warehouse):
        day = dt.date.fromisoformat(context.partition_key)
        now = dt.datetime.now(dt.UTC)
        client = rds.client()
        snapshot = latest_snapshot(client, source, business_day_bounds(day)[1], now)
        run_id, attempt = context.run.run_id, context.retry_number
        with restored_instance(
            rds, client, source, snapshot, run_id, attempt, context.log.info
        ) as instance:
            address = rds.address(instance["Endpoint"])
            restored = RestoredShard(source.shard_spec(address))
            partition = str(day_shard_key(day, source.name))
            for key, table in zip(keys, tables, strict=True):
                report = load_partitions(
                    table, restored, warehouse, [partition], now, log=context.log.warning
                )
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={
                        # One partition per copy: its own counts are the event's.
                        **partition_event_metadata(report).get(partition, {}),
                        **table_metadata(warehouse, table.name, report),
                        "snapshot": snapshot["DBSnapshotIdentifier"],
                        "snapshot_time": snapshot["SnapshotCreateTime"].isoformat(),
                        "restored_instance": instance["DBInstanceIdentifier"],
                        "restored_endpoint": instance["Endpoint"]["Address"],
                        "connected_to": address,
                    },
                    check_results=[reconciliation_check(report.reconciliation, key)],
                )

    return _copy


@functools.cache
def _snapshot_assets(path: str | None) -> tuple[dg.AssetsDefinition, ...]:
    if path is None:
        return ()
    return tuple(build_snapshot_asset(source) for source in load_snapshot_sources(path))


def snapshot_restore_assets() -> tuple[dg.AssetsDefinition, ...]:
    """One multi-asset per source of `MINATO_SNAPSHOT_SOURCES_FILE`; none when it is unset."""
    return _snapshot_assets(settings.setting(SOURCES_FILE_VARIABLE))
