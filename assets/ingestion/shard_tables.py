"""Shard ingestion: one asset per logical lake table, partitioned by business day × shard.

A run handles one or more (day, shard) partitions. Per shard it opens one connection, discovers
the client tables from the catalog once, reads each client table's rows changed that business
day (by `updated_at`, bounds converted to the shard's timezone), tags them with their origin, and
replaces exactly those partitions of `lake.<table>` and `lake.quarantine` in one transaction.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.ingestion.lake_tables import SHARD_LAKE_TABLES, LakeTable
from assets.ingestion.origin import ORIGIN_SCHEMA, with_origin
from assets.ingestion.quarantine import (
    QUARANTINE_PARTITION_COLUMNS,
    QUARANTINE_TABLE,
    split_valid_rows,
)
from assets.partitions import (
    BUSINESS_TIMEZONE,
    DAY_DIMENSION,
    SHARD_DIMENSION,
    day_shard_partitions,
)
from resources.shard_catalog import SchemaDriftError, check_drift
from resources.shard_reader import ShardReadError
from resources.shards import ShardConfigError, ShardSource
from resources.warehouse import PartitionWrite, Warehouse

LAKE_SCHEMA = "lake"
LAKE_PARTITION_COLUMNS = ("_business_day", "_shard")

# Transient source errors (dropped connections, lock timeouts, restarts) are retried with
# backoff; configuration errors fail at once with allow_retries=False.
INGESTION_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def business_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[00:00, 24:00) of a business day in Asia/Tokyo, as aware instants."""
    start = dt.datetime.combine(day, dt.time(0), ZoneInfo(BUSINESS_TIMEZONE))
    return start, start + dt.timedelta(days=1)


def partitions_by_shard(keys: Sequence[str]) -> dict[str, list[dt.date]]:
    """Group a run's multi-partition keys (`<day>|<shard>`) by shard."""
    grouped: dict[str, list[dt.date]] = defaultdict(list)
    for key in keys:
        dims = day_shard_partitions.get_partition_key_from_str(key).keys_by_dimension
        grouped[dims[SHARD_DIMENSION]].append(dt.date.fromisoformat(dims[DAY_DIMENSION]))
    return dict(grouped)


def extract_partitions(
    table: LakeTable, shards: ShardSource, keys: Sequence[str], loaded_at: dt.datetime
) -> tuple[pa.Table, dict[str, Any]]:
    """Read every client table for the given (day, shard) partitions; nothing is written."""
    pieces: list[pa.Table] = []
    stats: dict[str, Any] = {
        "source_counts": defaultdict(int),  # (day, shard) -> rows counted by the source
        "tables_read": 0,
        "drift": {},
    }
    for shard, days in sorted(partitions_by_shard(keys).items()):
        try:
            with shards.connect(shard) as conn:
                physical = [t for t in conn.discover([table.name]) if t.logical == table.name]
                if not physical:
                    raise dg.Failure(
                        f"shard {shard}: no `{table.name}_<client_id>` tables found; "
                        "is the shard URL right?",
                        allow_retries=False,
                    )
                stats["drift"][shard] = check_drift(shard, physical)
                for day in sorted(days):
                    start, end = business_day_bounds(day)
                    for batch in conn.read_windows(physical, table.change_column, start, end):
                        stats["source_counts"][(day, shard)] += batch.source_rows
                        pieces.append(
                            # The reader already added _client_id and _source_table.
                            with_origin(
                                batch.data,
                                _business_day=day,
                                _shard=shard,
                                _source_tz=conn.timezone,
                                _loaded_at=loaded_at,
                            )
                        )
                    stats["tables_read"] += len(physical)
        except (ShardConfigError, SchemaDriftError) as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        except sa.exc.OperationalError as exc:
            if "unable to open database file" in str(exc):
                raise dg.Failure(
                    f"shard {shard}: cannot open the database ({exc.orig})", allow_retries=False
                ) from exc
            raise  # transient: the retry policy tries again
        except ShardReadError as exc:
            raise ShardReadError(f"shard {shard}: {exc}") from exc  # retried by the policy
    if not pieces:
        # Still a write: re-running a partition whose rows are gone must empty it.
        return ORIGIN_SCHEMA.empty_table(), stats
    return pa.concat_tables(pieces, promote_options="permissive"), stats


RECONCILIATION_SCHEMA = "monitoring"
RECONCILIATION_TABLE = "ingestion_reconciliation"
RECONCILIATION_CHECK = "reconciles_with_source"


def _rows_by_partition(data: pa.Table) -> dict[tuple[dt.date, str], int]:
    if data.num_rows == 0:
        return {}
    counts = data.group_by(["_business_day", "_shard"]).aggregate([("_shard", "count")])
    return {
        (row["_business_day"], row["_shard"]): row["_shard_count"] for row in counts.to_pylist()
    }


def reconcile(
    logical_table: str,
    partitions: Sequence[tuple[dt.date, str]],
    source_counts: dict[tuple[dt.date, str], int],
    received: pa.Table,
    loaded: pa.Table,
    checked_at: dt.datetime,
) -> pa.Table:
    """One row per (shard, day): the source's count against loaded + quarantined."""
    received_rows = _rows_by_partition(received)
    loaded_rows = _rows_by_partition(loaded)
    rows = []
    for day, shard in partitions:
        source = source_counts.get((day, shard), 0)
        loaded_n = loaded_rows.get((day, shard), 0)
        quarantined = received_rows.get((day, shard), 0) - loaded_n
        rows.append(
            {
                "logical_table": logical_table,
                "business_day": day,
                "shard": shard,
                "source_rows": source,
                "loaded_rows": loaded_n,
                "quarantined_rows": quarantined,
                "reconciled": source == loaded_n + quarantined,
                "checked_at": checked_at,
            }
        )
    return pa.Table.from_pylist(rows, schema=RECONCILIATION_SCHEMA_ARROW)


RECONCILIATION_SCHEMA_ARROW = pa.schema(
    [
        ("logical_table", pa.string()),
        ("business_day", pa.date32()),
        ("shard", pa.string()),
        ("source_rows", pa.int64()),
        ("loaded_rows", pa.int64()),
        ("quarantined_rows", pa.int64()),
        ("reconciled", pa.bool_()),
        ("checked_at", pa.timestamp("us", tz="UTC")),
    ]
)


def build_shard_table_asset(table: LakeTable) -> dg.AssetsDefinition:
    @dg.asset(
        key=[LAKE_SCHEMA, table.name],
        group_name=LAKE_SCHEMA,
        description=table.description,
        partitions_def=day_shard_partitions,
        # A range (e.g. a backfill) runs as one run: one connection per shard, one transaction.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=INGESTION_RETRY_POLICY,
        pool="warehouse",
        kinds={"sql", "duckdb"},
        metadata={"primary_key": list(table.primary_key)},
        # A load that does not reconcile with the source stops everything downstream.
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=dg.AssetKey([LAKE_SCHEMA, table.name]),
                blocking=True,
                description="Per (shard, business day): rows counted by the source equal rows "
                "loaded plus rows quarantined (monitoring.ingestion_reconciliation).",
            )
        ],
    )
    def _ingest(
        context: dg.AssetExecutionContext, shards: ShardSource, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        keys = list(context.partition_keys)
        loaded_at = dt.datetime.now(dt.UTC)
        data, stats = extract_partitions(table, shards, keys, loaded_at)
        partitions = tuple(
            (day, shard) for shard, days in partitions_by_shard(keys).items() for day in days
        )
        split = split_valid_rows(
            data,
            logical_table=table.name,
            key_columns=table.primary_key,
            checks=[(c, "not_null") for c in table.primary_key]
            + [(c, "datetime") for c in table.datetime_columns],
        )
        loaded_rows, quarantined_rows = split.loaded.num_rows, split.quarantined_rows
        reconciliation = reconcile(
            table.name, partitions, stats["source_counts"], data, split.loaded, loaded_at
        )
        writes = [
            PartitionWrite(
                LAKE_SCHEMA, table.name, split.loaded, LAKE_PARTITION_COLUMNS, partitions
            ),
            PartitionWrite(
                LAKE_SCHEMA,
                QUARANTINE_TABLE,
                split.quarantined,
                QUARANTINE_PARTITION_COLUMNS,
                tuple((table.name, day, shard) for day, shard in partitions),
            ),
            PartitionWrite(
                RECONCILIATION_SCHEMA,
                RECONCILIATION_TABLE,
                reconciliation,
                ("logical_table", "business_day", "shard"),
                tuple((table.name, day, shard) for day, shard in partitions),
            ),
        ]
        warehouse.replace_partitions_atomically(writes)
        if quarantined_rows:
            context.log.warning(
                f"lake/{table.name}: {quarantined_rows} row(s) quarantined in lake.quarantine"
            )
        mismatches = reconciliation.filter(pc.invert(reconciliation["reconciled"])).to_pylist()
        source_rows = sum(stats["source_counts"].values())
        return dg.MaterializeResult(
            metadata={
                "partitions": len(partitions),
                "tables_read": stats["tables_read"],
                "source_rows": source_rows,
                "loaded_rows": loaded_rows,
                "quarantined_rows": quarantined_rows,
                "schema_drift": dg.MetadataValue.json(stats["drift"]),
                "dagster/row_count": loaded_rows,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=RECONCILIATION_CHECK,
                    passed=not mismatches,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=None
                    if not mismatches
                    else f"{len(mismatches)} partition(s) do not reconcile with the source",
                    metadata={
                        "source_rows": source_rows,
                        "loaded_plus_quarantined": loaded_rows + quarantined_rows,
                        "mismatches": dg.MetadataValue.json(
                            [
                                {k: str(v) for k, v in row.items() if k != "checked_at"}
                                for row in mismatches[:20]
                            ]
                        ),
                    },
                )
            ],
        )

    return _ingest


shard_table_assets = [build_shard_table_asset(table) for table in SHARD_LAKE_TABLES]
