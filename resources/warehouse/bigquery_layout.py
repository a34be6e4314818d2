"""What Minato creates in BigQuery before it writes: the catalog's datasets, the layout of
each written table (day partitioning, clustering) and the physical tables behind it.

`minato bigquery setup` runs `ensure_datasets`; every write runs it once per process too, so a
fresh project never fails with "Not found: Dataset". Both are idempotent (`exists_ok`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from resources.warehouse.base import PartitionTarget
from resources.warehouse.bigquery_labels import labels
from resources.warehouse.datasets import DatasetSpec
from resources.warehouse.sql import PartitionValues

# Clustering takes at most four columns (BigQuery's limit).
_MAX_CLUSTER_COLUMNS = 4
# `orders` is read through a view over `orders__shard_01`, `orders__shard_02`, ...
PHYSICAL_SEPARATOR = "__"
_NAME_PART = re.compile(r"[A-Za-z0-9_]+")


def dataset_labels(spec: DatasetSpec, env: str) -> dict[str, str]:
    return labels(
        {
            "minato_layer": spec.layer,
            "minato_pii": "true" if spec.pii else "false",
            "minato_env": env,
        }
    )


def ensure_datasets(
    client: Any, project: str, prefix: str, location: str, specs: Sequence[DatasetSpec], env: str
) -> list[str]:
    """Create every dataset of the catalog that does not exist yet; return the dataset ids.

    Looked up first: a writer holding only `roles/bigquery.dataEditor` on existing datasets
    may not create datasets, and BigQuery answers a create with 403 before it says "exists"."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    ids = []
    for spec in specs:
        dataset = bigquery.Dataset(f"{project}.{prefix}{spec.name}")
        ids.append(dataset.dataset_id)
        try:
            client.get_dataset(dataset.reference)
            continue
        except NotFound:
            pass
        dataset.location = location
        dataset.description = spec.description
        dataset.labels = dataset_labels(spec, env)
        client.create_dataset(dataset, exists_ok=True)  # a parallel writer may be first
    return ids


@dataclass(frozen=True)
class TableLayout:
    """How a table is stored: day partitions on a DATE column, clustered by the other columns
    that identify a write's partitions (shard, then client), so that replacing a (day, shard)
    partition reads one day's blocks of that shard, not the whole table. A table that grows
    without bound also refuses queries that do not filter on the day (`require_partition_filter`):
    a forgotten WHERE fails at once instead of billing every day ever loaded."""

    partition_column: str | None
    cluster_columns: tuple[str, ...]
    require_partition_filter: bool = False

    def apply(self, table: Any) -> Any:
        from google.cloud import bigquery

        if self.partition_column:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=self.partition_column
            )
            table.require_partition_filter = self.require_partition_filter
        if self.cluster_columns:
            table.clustering_fields = list(self.cluster_columns)
        return table


def table_layout(
    schema: pa.Schema, partition_columns: Sequence[str], require_day_filter: bool = False
) -> TableLayout:
    """Partition by the first DATE column among `partition_columns`; cluster by the others and
    `_client_id` when the table has it. The day filter is required only where there is a day."""
    dates = [c for c in partition_columns if pa.types.is_date32(schema.field(c).type)]
    partition = dates[0] if dates else None
    cluster = [c for c in partition_columns if c != partition]
    if "_client_id" in schema.names and "_client_id" not in cluster:
        cluster.append("_client_id")
    return TableLayout(
        partition, tuple(cluster[:_MAX_CLUSTER_COLUMNS]), require_day_filter and bool(partition)
    )


def split_columns(layout: TableLayout, target: PartitionTarget) -> tuple[str, ...]:
    """The partition columns that get a physical table per value: the target's `split_by`
    (e.g. `_shard` of a (day, shard) lake table), when the table is day-partitioned."""
    unknown = set(target.split_by) - set(target.partition_columns)
    if unknown or layout.partition_column in target.split_by:
        raise ValueError(
            f"{target.table}: split_by {target.split_by} must name partition columns other "
            f"than the day column (partition columns: {target.partition_columns})"
        )
    return target.split_by if layout.partition_column else ()


def physical_targets(target: PartitionTarget, layout: TableLayout) -> list[PartitionTarget]:
    """Where a write to `target` lands: the target itself, or, for a table split per shard,
    one physical table per value of the split columns with that value's partitions.

    Why: a BigQuery transaction that mutates a table conflicts with every other transaction
    mutating the same table (and concurrent DML conflicts per day partition), so 24 shard runs
    of one day cannot replace their rows of one table at once. One day-partitioned table per
    shard gives each run tables no other run touches; readers see the union through a view
    (`physical_view_query`)."""
    split = split_columns(layout, target)
    if not split:
        return [target]
    positions = [target.partition_columns.index(c) for c in split]
    groups: dict[str, list[PartitionValues]] = {}
    for values in target.partitions:
        name = physical_name(target.table, [values[i] for i in positions])
        groups.setdefault(name, []).append(values)
    return [
        replace(target, table=name, partitions=tuple(partitions))
        for name, partitions in groups.items()
    ]


def physical_name(table: str, values: Sequence[object]) -> str:
    """`orders` + (`shard_01`,) -> `orders__shard_01`; a NULL value is the empty part."""
    parts = [table]
    for value in values:
        text = "" if value is None else str(value)
        if text and not _NAME_PART.fullmatch(text):
            raise ValueError(
                f"{table}: partition value {value!r} cannot name a physical table "
                "(letters, digits and underscores only)"
            )
        parts.append(text)
    return PHYSICAL_SEPARATOR.join(parts)


def physical_view_query(table_id: str) -> str:
    """The view under a split table's name: every physical table, by wildcard, so that a new
    shard needs no view update (one more metadata update per table that 24 runs would race)."""
    return f"SELECT * FROM `{table_id}{PHYSICAL_SEPARATOR}*`"


def physical_table_ids(client: Any, dataset_id: str, table: str) -> list[str]:
    """The physical tables behind the view of a split `table`: what its wildcard `<table>__*`
    matches (tables only: a wildcard that matches a view fails anyway), sorted by id.

    Listed with tables.list, not read from `INFORMATION_SCHEMA.COLUMNS`: listing is a free
    metadata call that needs no slot, where the INFORMATION_SCHEMA query is a billed job (10 MB
    minimum) queued like any other. Their columns then come from tables.get, free as well."""
    prefix = f"{table}{PHYSICAL_SEPARATOR}"
    return sorted(
        f"{item.project}.{item.dataset_id}.{item.table_id}"
        for item in client.list_tables(dataset_id)
        if item.table_id.startswith(prefix) and item.table_type == "TABLE"
    )


def column_union(table: str, written: Sequence[Any], tables: Sequence[Any]) -> list[Any]:
    """The columns every physical table of the split `table` must have for its view to show
    them all: those of `tables`, newest table first (BigQuery takes the view's columns, in
    their order, from the newest), then the ones new in `written` (this write's fields).

    A column with two types is refused, naming both: the wildcard reads a table whose column
    has another type than the newest table's with an error ("Cannot read field of type X as
    Y"), so the view would fail for every reader. Names compare case-insensitively, as in
    BigQuery. The columns come back typed by their GoogleSQL names (INT64, not INTEGER as
    tables.get answers): the names DDL takes."""
    from google.cloud import bigquery
    from google.cloud.bigquery.schema import LEGACY_TO_STANDARD_TYPES

    union: dict[str, tuple[str, str, str]] = {}  # lower name -> (name, type, where)
    newest_first = sorted(tables, key=lambda t: t.created, reverse=True)
    sources = [(f"{t.dataset_id}.{t.table_id}", t.schema) for t in newest_first]
    for where, fields in [*sources, ("this write", written)]:
        for field in fields:
            # tables.get answers in legacy names (INTEGER), a write's fields are typed INT64.
            standard = LEGACY_TO_STANDARD_TYPES.get(field.field_type.upper())
            kind = standard.value if standard else field.field_type.upper()
            seen = union.setdefault(field.name.lower(), (field.name, kind, where))
            if seen[1] != kind:
                raise ValueError(
                    f"{table}: column {field.name!r} is {seen[1]} in {seen[2]} but {kind} in "
                    f"{where}; the view over its physical tables cannot read one column with "
                    "two types (cast the data, or convert the tables' column to one type)"
                )
    return [bigquery.SchemaField(name, kind) for name, kind, _ in union.values()]


def missing_columns(table: Any, columns: Sequence[Any]) -> list[Any]:
    """The `columns` that `table` lacks (by name, case-insensitively)."""
    present = {field.name.lower() for field in table.schema}
    return [field for field in columns if field.name.lower() not in present]
