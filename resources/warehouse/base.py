"""What assets need from a warehouse, whatever the engine: the interface and its data types.

A warehouse "schema" is a DuckDB schema or a BigQuery dataset: `lake`, `cleansing`, `fact`,
`monitoring`, ... Assets never branch on the engine except where the SQL dialect itself differs
(anomaly detection uses BigQuery ML in production).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa

from resources.identifiers import validate_identifier
from resources.warehouse.sql import PartitionValues


@dataclass(frozen=True)
class PartitionTarget:
    """Partitions of one table that a write replaces: whatever is appended takes their place.

    `split_by` names partition columns written by parallel runs, one value each (a shard's
    run): where the engine needs it, each value gets its own physical table so that those runs
    never write the same table (BigQuery, `bigquery_layout.physical_targets`). Every write to a
    table must give the same `split_by`.

    `require_day_filter` marks a table that grows without bound (a shard lake table): where the
    engine can, it refuses any query that does not name the days it reads (BigQuery's
    `require_partition_filter`), so no one scans years of rows by accident."""

    schema: str
    table: str
    partition_columns: tuple[str, ...]
    partitions: tuple[PartitionValues, ...]
    split_by: tuple[str, ...] = ()
    require_day_filter: bool = False


@dataclass(frozen=True)
class PartitionWrite:
    schema: str
    table: str
    data: pa.Table
    partition_columns: tuple[str, ...]
    partitions: tuple[PartitionValues, ...]
    split_by: tuple[str, ...] = ()

    @property
    def target(self) -> PartitionTarget:
        return PartitionTarget(
            self.schema, self.table, self.partition_columns, self.partitions, self.split_by
        )


@dataclass(frozen=True)
class RowScope:
    """Rows identified by column values, e.g. one source table's rows of one partition.

    A streaming writer tags appends with a scope so that a source read which failed half-way
    can be taken back (`PartitionSink.discard`) before it is read again.
    """

    columns: tuple[str, ...]
    values: tuple[PartitionValues, ...]


class PartitionSink(ABC):
    """An open, uncommitted replacement of partitions; see `Warehouse.partition_sink`."""

    @abstractmethod
    def append(
        self, target: PartitionTarget, data: pa.Table, scope: RowScope | None = None
    ) -> None:
        """Add rows to `target` (created from the first append's schema if missing; columns
        new in `data` are added). Append an empty table to declare a schema without rows."""

    @abstractmethod
    def discard(self, scope: RowScope) -> None:
        """Take back every row appended under `scope` so far."""


class Warehouse(dg.ConfigurableResource, ABC):
    """What assets need from a warehouse. Subclasses differ only in engine, never in meaning."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """`duckdb` or `bigquery`: the dbt target and anomaly engine follow from it."""

    @abstractmethod
    def query_arrow(self, sql: str) -> pa.Table:
        """Run a query and return its result as Arrow."""

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run one or more statements for their effect."""

    @abstractmethod
    def table_exists(self, schema: str, table: str) -> bool: ...

    def row_count(self, schema: str, table: str) -> int:
        """All rows of `schema.table`, every partition."""
        rows = self.query_arrow(f"SELECT count(*) AS n FROM {self.qualified(schema, table)}")
        return int(rows["n"][0].as_py())

    def replace_partitions(
        self,
        schema: str,
        table: str,
        data: pa.Table,
        partition_columns: Sequence[str],
        partitions: Sequence[PartitionValues],
    ) -> None:
        """Atomically delete the given partitions of `schema.table` and insert `data`.

        The table is created from `data`'s schema if missing; columns new in `data` are added
        (rows loaded earlier read NULL there). Re-running with the same input leaves exactly the
        same rows, which is what makes partition re-execution safe.
        """
        self.replace_partitions_atomically(
            [PartitionWrite(schema, table, data, tuple(partition_columns), tuple(partitions))]
        )

    def replace_partitions_atomically(self, writes: Sequence[PartitionWrite]) -> None:
        """`replace_partitions` for several tables in one transaction: all or nothing."""
        with self.partition_sink([write.target for write in writes]) as sink:
            for write in writes:
                sink.append(write.target, write.data)

    @abstractmethod
    def partition_sink(
        self, targets: Sequence[PartitionTarget]
    ) -> contextlib.AbstractContextManager[PartitionSink]:
        """Replace the targets' partitions with what is appended inside the `with` block.

        Data may arrive in any number of bounded chunks (memory stays flat for any partition
        size); readers see the old partitions until the block ends, then the new ones. An
        exception inside the block leaves the warehouse exactly as it was.
        """

    def qualified(self, schema: str, table: str) -> str:
        schema = validate_identifier(schema, what="schema")
        return f"{schema}.{validate_identifier(table, what='table')}"
