"""Reconciliation: every (logical table, business day, shard) load is checked against the source.

The source counts its own rows and sums their keys (in the same statement that reads them); the
load counts what it wrote to the lake and to quarantine and sums the keys it received. Both land
in `monitoring.ingestion_reconciliation`, and an ERROR asset check blocks everything downstream
of a load that does not match.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa

from assets.ingestion.checksums import CHECKSUM_MODULUS

RECONCILIATION_TABLE = "ingestion_reconciliation"
RECONCILIATION_CHECK = "reconciles_with_source"
RECONCILIATION_PARTITION_COLUMNS = ("logical_table", "business_day", "shard")
# Shard runs of one day reconcile at once, each its own (table, shard): see PartitionTarget.
RECONCILIATION_SPLIT_BY = ("logical_table", "shard")


@dataclass
class Tally:
    """What the source reported and what the load did, for one partition or one batch."""

    source_rows: int = 0
    source_key_sum: int = 0
    loaded_rows: int = 0
    quarantined_rows: int = 0
    received_key_sum: int = 0
    tables_read: int = 0

    def add(self, other: Tally) -> None:
        self.source_rows += other.source_rows
        self.source_key_sum = (self.source_key_sum + other.source_key_sum) % CHECKSUM_MODULUS
        self.loaded_rows += other.loaded_rows
        self.quarantined_rows += other.quarantined_rows
        self.received_key_sum = (self.received_key_sum + other.received_key_sum) % CHECKSUM_MODULUS
        self.tables_read += other.tables_read

    @property
    def reconciled(self) -> bool:
        return (
            self.source_rows == self.loaded_rows + self.quarantined_rows
            and self.source_key_sum == self.received_key_sum
        )


RECONCILIATION_ARROW_SCHEMA = pa.schema(
    [
        ("logical_table", pa.string()),
        ("business_day", pa.date32()),
        ("shard", pa.string()),
        ("source_rows", pa.int64()),
        ("loaded_rows", pa.int64()),
        ("quarantined_rows", pa.int64()),
        # Key checksums mod 2**64, stored as signed 64-bit (BigQuery has no unsigned type).
        ("source_key_checksum", pa.int64()),
        ("loaded_key_checksum", pa.int64()),
        ("tables_read", pa.int64()),
        ("reconciled", pa.bool_()),
        ("checked_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _signed(checksum: int) -> int:
    return checksum - CHECKSUM_MODULUS if checksum >= CHECKSUM_MODULUS // 2 else checksum


def reconciliation_rows(
    logical_table: str,
    tallies: dict[tuple[dt.date, str], Tally],
    partitions: Sequence[tuple[dt.date, str]],
    checked_at: dt.datetime,
) -> pa.Table:
    """One row per (business day, shard) of the run, whether or not it had rows."""
    rows = []
    for day, shard in partitions:
        tally = tallies.get((day, shard), Tally())
        rows.append(
            {
                "logical_table": logical_table,
                "business_day": day,
                "shard": shard,
                "source_rows": tally.source_rows,
                "loaded_rows": tally.loaded_rows,
                "quarantined_rows": tally.quarantined_rows,
                "source_key_checksum": _signed(tally.source_key_sum),
                "loaded_key_checksum": _signed(tally.received_key_sum),
                "tables_read": tally.tables_read,
                "reconciled": tally.reconciled,
                "checked_at": checked_at,
            }
        )
    return pa.Table.from_pylist(rows, schema=RECONCILIATION_ARROW_SCHEMA)


def reconciliation_check_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    """Blocking: a load that does not reconcile with the source stops everything downstream."""
    return dg.AssetCheckSpec(
        RECONCILIATION_CHECK,
        asset=asset_key,
        blocking=True,
        description="Per (shard, business day): rows counted by the source equal rows "
        "loaded plus rows quarantined, and the key checksums agree "
        "(monitoring.ingestion_reconciliation).",
    )


def reconciliation_check(
    rows: pa.Table, asset_key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    records = rows.to_pylist()
    mismatches = [r for r in records if not r["reconciled"]]
    source = sum(r["source_rows"] for r in records)
    loaded = sum(r["loaded_rows"] + r["quarantined_rows"] for r in records)
    return dg.AssetCheckResult(
        check_name=RECONCILIATION_CHECK,
        asset_key=asset_key,
        passed=not mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None
        if not mismatches
        else f"{len(mismatches)} partition(s) do not reconcile with the source",
        metadata={
            "source_rows": source,
            "loaded_plus_quarantined": loaded,
            "mismatches": dg.MetadataValue.json(
                [
                    {k: str(v) for k, v in row.items() if k != "checked_at"}
                    for row in mismatches[:20]
                ]
            ),
        },
    )
