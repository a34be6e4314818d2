"""The warehouse resource: DuckDB on the embedded default, BigQuery in production.

`base` holds the interface every asset codes against; `duckdb` and `bigquery` the engines;
`spool` the Parquet files a streamed write waits in; `sql` the literals and predicates.
"""

from resources.warehouse.base import (
    PartitionSink,
    PartitionTarget,
    PartitionWrite,
    RowScope,
    Warehouse,
)
from resources.warehouse.bigquery import BigQueryWarehouse
from resources.warehouse.duckdb import DuckDBWarehouse
from resources.warehouse.sql import PartitionValues, partition_predicate, sql_literal

__all__ = [
    "BigQueryWarehouse",
    "DuckDBWarehouse",
    "PartitionSink",
    "PartitionTarget",
    "PartitionValues",
    "PartitionWrite",
    "RowScope",
    "Warehouse",
    "partition_predicate",
    "sql_literal",
]
