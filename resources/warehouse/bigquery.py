"""The production warehouse: BigQuery, one dataset per warehouse schema."""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from resources.identifiers import validate_identifier
from resources.settings import maximum_bytes_billed, minato_env
from resources.warehouse.base import PartitionSink, PartitionTarget, Warehouse
from resources.warehouse.bigquery_labels import job_labels, record_job
from resources.warehouse.bigquery_layout import (
    TableLayout,
    column_union,
    ensure_datasets,
    missing_columns,
    physical_table_ids,
    physical_targets,
    physical_view_query,
    table_layout,
)
from resources.warehouse.datasets import datasets
from resources.warehouse.spool import ParquetSpool
from resources.warehouse.sql import partition_predicate, quoted

# Staging tables outlive a crashed run by at most this long.
STAGING_EXPIRY = dt.timedelta(days=1)
# (project, prefix) whose datasets this process has made sure of.
_DATASETS_ENSURED: set[tuple[str, str]] = set()


class BigQueryWarehouse(Warehouse):
    """BigQuery: one dataset per warehouse schema, optionally prefixed (e.g. `prod_`)."""

    project: str = Field(description="GCP project that owns the datasets and pays for queries.")
    location: str = Field(default="asia-northeast1", description="Dataset and job location.")
    dataset_prefix: str = Field(
        default="", description="Prefix for every dataset, e.g. `dev_alice_` for a sandbox."
    )
    maximum_bytes_billed: int | None = Field(
        default=None,
        description="Cost guard: jobs that would bill more bytes fail. Unset: "
        "MINATO_BIGQUERY_MAX_BYTES_BILLED, or its default (100 GB, resources/settings.py).",
    )

    @property
    def kind(self) -> str:
        return "bigquery"

    @property
    def bytes_billed_limit(self) -> int:
        """The cost guard every job carries: the field, else the setting (dbt reads the same)."""
        if self.maximum_bytes_billed is not None:
            return self.maximum_bytes_billed
        return maximum_bytes_billed()

    def client(self) -> Any:
        """A client on the warehouse's project and location, for callers that need what the
        row-returning methods hide: job statistics (bytes billed), per-statement limits."""
        return self._client()

    def _client(self) -> Any:
        # Imported and constructed lazily: nothing at import time may need a credential.
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, location=self.location)

    def qualified(self, schema: str, table: str) -> str:
        validate_identifier(schema, what="schema")
        validate_identifier(table, what="table")
        return f"`{self.project}.{self._prefix()}{schema}.{table}`"

    def _job_config(self) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            labels=job_labels(), maximum_bytes_billed=self.bytes_billed_limit
        )

    def _run(self, client: Any, sql: str) -> Any:
        job = client.query(sql, job_config=self._job_config())
        job.result()
        record_job(job)
        return job

    def query_arrow(self, sql: str) -> pa.Table:
        return self._run(self._client(), sql).to_arrow()

    def execute(self, sql: str) -> None:
        self._run(self._client(), sql)

    def table_exists(self, schema: str, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._client().get_table(self.qualified(schema, table).strip("`"))
        except NotFound:
            return False
        return True

    def row_count(self, schema: str, table: str) -> int:
        """From table metadata: free, current after every committed write, and allowed on a
        table that requires a partition filter (where `count(*)` is refused). A table split per
        shard counts the rows of every physical table behind its view."""
        client = self._client()
        table_id = self._table_id(schema, table)
        found = client.get_table(table_id)
        if found.table_type != "VIEW":
            return int(found.num_rows or 0)
        physical = physical_table_ids(client, table_id.rsplit(".", 1)[0], table)
        if not physical:
            return super().row_count(schema, table)  # a view someone else defined
        return sum(int(client.get_table(table_id).num_rows or 0) for table_id in physical)

    def setup(self, tables: Sequence[tuple[PartitionTarget, pa.Schema]]) -> list[str]:
        """Create every dataset of the catalog and the given tables (partitioned, clustered),
        skipping what exists: `minato bigquery setup`. A table split per shard gets the
        physical tables its targets' partitions name (the day may be None: any day) and its
        view. Returns the datasets' ids."""
        client = self._client()
        ids = ensure_datasets(
            client, self.project, self._prefix(), self.location, datasets(), minato_env()
        )
        _DATASETS_ENSURED.add((self.project, self.dataset_prefix))
        for target, schema in tables:
            self._prepare_physical(client, target, schema)
        return ids

    def _prepare_physical(
        self, client: Any, target: PartitionTarget, schema: pa.Schema
    ) -> list[PartitionTarget]:
        """Make the physical tables of `target` ready (and, when it is split per shard, the
        view that reads them under its name); return them."""
        layout = table_layout(schema, target.partition_columns, target.require_day_filter)
        physical = physical_targets(target, layout)
        if physical == [target]:
            self._prepare_target(client, target, schema, layout)
            return physical
        self._prepare_split(client, target, physical, schema, layout)
        self._ensure_view(client, target)
        return physical

    def _ensure_datasets(self, client: Any) -> None:
        """Create the catalog's datasets once per process: the first write of a fresh project
        must not fail with "Not found: Dataset" (`minato bigquery setup` does the same)."""
        key = (self.project, self.dataset_prefix)
        if key in _DATASETS_ENSURED:
            return
        ensure_datasets(
            client, self.project, self._prefix(), self.location, datasets(), minato_env()
        )
        _DATASETS_ENSURED.add(key)

    def _prefix(self) -> str:
        return validate_identifier(self.dataset_prefix) if self.dataset_prefix else ""

    def _table_id(self, schema: str, table: str) -> str:
        return self.qualified(schema, table).strip("`")

    def _load_staging(self, client: Any, source: Path, table_id: str, schema: pa.Schema) -> None:
        """One load job from a Parquet file into a staging table created with the exact column
        types (never inferred) and an expiry, so a crashed run leaves nothing for long."""
        from google.cloud import bigquery

        table = bigquery.Table(table_id, schema=_bigquery_schema(schema))
        table.expires = dt.datetime.now(dt.UTC) + STAGING_EXPIRY
        client.create_table(table)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            labels=job_labels(),
        )
        with source.open("rb") as file:
            job = client.load_table_from_file(file, table_id, job_config=config)
            job.result()
            record_job(job)

    def _prepare_target(
        self, client: Any, target: PartitionTarget, schema: pa.Schema, layout: TableLayout
    ) -> None:
        """Create the target partitioned and clustered if it is missing; add the columns new in
        this write with one ALTER (one table metadata update, whatever the drift)."""
        table_id = self._table_id(target.schema, target.table)
        existing = _get_table(client, table_id)
        if existing is None:
            # A parallel writer may create it first: then its columns are checked below.
            self._create_table(client, table_id, layout, _bigquery_schema(schema))
            existing = client.get_table(table_id)
        _require_partition_filter(client, existing, layout)
        self._add_columns(client, existing, _bigquery_schema(schema))

    def _prepare_split(
        self,
        client: Any,
        target: PartitionTarget,
        physical: Sequence[PartitionTarget],
        schema: pa.Schema,
        layout: TableLayout,
    ) -> None:
        """Keep the invariant the view of a split target needs: every physical table has the
        union of the columns any of them has or this write brings.

        Why: BigQuery takes a wildcard table's schema from the most recently created table it
        matches ("Query multiple tables using a wildcard table" -> "Schema used for query
        evaluation", https://cloud.google.com/bigquery/docs/querying-wildcard-tables), so a
        column only some shards' tables have is invisible in the view whenever another shard's
        table is newer, and a new shard table without an older column hides that column from
        every shard.

        Common case, no new column: one tables.get per written table, nothing else. Otherwise
        every physical table is listed and read (free metadata calls), a missing one is created
        with the union (so the newest table, whose schema the view shows, has every column) and
        each table that lacks columns gets one ALTER adding them all. Then everything is read
        once more and completed: a parallel writer may have created a table, or added a column,
        after the first read. Each writer changes before it reads again, so of two such writers
        at least one sees the other's change (given that BigQuery's metadata reads see finished
        creates and ALTERs). Left open: a table created, or a column added, by a third writer
        after both second reads waits for the next write that brings a new column or a new
        table; the views stay readable meanwhile, the column shows as NULL or not at all."""
        written = _bigquery_schema(schema)
        ids = [self._table_id(piece.schema, piece.table) for piece in physical]
        known = {table_id: _get_table(client, table_id) for table_id in ids}
        existing = [table for table in known.values() if table is not None]
        for table in existing:
            _require_partition_filter(client, table, layout)
        # Refuses a column whose type changed (see `column_union`).
        columns = column_union(f"{target.schema}.{target.table}", written, existing)
        if len(existing) == len(ids) and not any(missing_columns(t, columns) for t in existing):
            return
        self._complete_physical(client, target, ids, schema, layout, known)
        self._complete_physical(client, target, ids, schema, layout, {})

    def _complete_physical(
        self,
        client: Any,
        target: PartitionTarget,
        ids: Sequence[str],
        schema: pa.Schema,
        layout: TableLayout,
        known: dict[str, Any],
    ) -> None:
        """One round of `_prepare_split`: read every physical table of `target` (the written
        ones, `ids`, and their siblings; `known` ones are not read again), create the missing
        written ones with the union of all columns, add to each table the columns it lacks."""
        dataset_id = self._table_id(target.schema, target.table).rsplit(".", 1)[0]
        listed = physical_table_ids(client, dataset_id, target.table)
        tables = {
            table_id: known[table_id] if table_id in known else _get_table(client, table_id)
            for table_id in dict.fromkeys([*ids, *listed])
        }
        present = [table for table in tables.values() if table is not None]
        columns = column_union(f"{target.schema}.{target.table}", _bigquery_schema(schema), present)
        for table_id in ids:
            if tables[table_id] is None:
                self._create_table(client, table_id, layout, columns)
        for table in present:
            self._add_columns(client, table, columns)

    def _create_table(
        self, client: Any, table_id: str, layout: TableLayout, columns: Sequence[Any]
    ) -> None:
        """Create `table_id` with `columns`, stored as `layout` says; a parallel writer may be
        first (`exists_ok`)."""
        from google.cloud import bigquery

        client.create_table(
            layout.apply(bigquery.Table(table_id, schema=list(columns))), exists_ok=True
        )

    def _add_columns(self, client: Any, table: Any, columns: Sequence[Any]) -> None:
        """Add the `columns` that `table` lacks, all in one ALTER (one table metadata update:
        BigQuery rate-limits those per table)."""
        new = missing_columns(table, columns)
        if new:
            added = ", ".join(
                f"ADD COLUMN IF NOT EXISTS {quoted(f.name, '`')} {f.field_type}" for f in new
            )
            # A sibling's name comes from a listing: validated like every name put into SQL.
            name = validate_identifier(table.table_id, what="table")
            self._run(client, f"ALTER TABLE `{table.project}.{table.dataset_id}.{name}` {added};")

    @contextlib.contextmanager
    def partition_sink(self, targets: Sequence[PartitionTarget]) -> Iterator[PartitionSink]:
        # Chunks wait in local Parquet files; at the end each target is one load job into a
        # staging table, and one script replaces every target's partitions in a transaction.
        with tempfile.TemporaryDirectory(prefix="minato_bq_") as spool:
            sink = ParquetSpool(targets, Path(spool))
            yield sink
            self._commit(sink)

    def _commit(self, sink: ParquetSpool) -> None:
        client = self._client()
        self._ensure_datasets(client)
        statements = []
        staging_tables = []
        try:
            for target, path, schema in sink.merged():
                staging = self.qualified(
                    target.schema, f"_staging_{target.table}_{uuid.uuid4().hex[:12]}"
                )
                staging_tables.append(staging.strip("`"))
                self._load_staging(client, path, staging.strip("`"), schema)
                columns = ", ".join(quoted(c, "`") for c in schema.names)
                # DDL may not run inside a BigQuery transaction: targets are ready before it.
                for piece in self._prepare_physical(client, target, schema):
                    predicate = partition_predicate(
                        piece.partition_columns, piece.partitions, dialect=self.kind
                    )
                    name = self.qualified(piece.schema, piece.table)
                    # A physical table of a split target takes only its own partitions' rows.
                    rows = "" if piece == target else f" WHERE {predicate}"
                    statements.append(f"DELETE FROM {name} WHERE {predicate};")
                    statements.append(
                        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {staging}{rows};"
                    )
            script = "\n".join(["BEGIN TRANSACTION;", *statements, "COMMIT TRANSACTION;"])
            self._run(client, script)
        finally:
            for staging in staging_tables:
                client.delete_table(staging, not_found_ok=True)

    def _view_query(self, view_id: str) -> str:
        return physical_view_query(view_id)

    def _ensure_view(self, client: Any, target: PartitionTarget) -> None:
        """The view that reads a split target's physical tables under the target's name."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        view_id = self._table_id(target.schema, target.table)
        try:
            existing = client.get_table(view_id)
        except NotFound:
            view = bigquery.Table(view_id)
            view.view_query = self._view_query(view_id)
            client.create_table(view, exists_ok=True)  # a parallel writer may be first
            return
        if existing.table_type == "TABLE":
            # Written as one table by an earlier Minato: rows written beside it would go unread,
            # and its own rows must not be lost, so a person moves them first.
            raise RuntimeError(
                f"{view_id} is a table; Minato now writes {view_id}__<shard> tables read through "
                f"a view of that name. Copy its rows into the per-shard tables, then drop it "
                '(README, "Going to production on BigQuery").'
            )


def _require_partition_filter(client: Any, table: Any, layout: TableLayout) -> None:
    """A table created before Minato required a day filter on it gets the option: one metadata
    update, once."""
    if layout.require_partition_filter and not table.require_partition_filter:
        table.require_partition_filter = True
        client.update_table(table, ["require_partition_filter"])


def _get_table(client: Any, table_id: str) -> Any:
    """The table, or None when it does not exist."""
    from google.api_core.exceptions import NotFound

    try:
        return client.get_table(table_id)
    except NotFound:
        return None


def _bigquery_schema(schema: pa.Schema) -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField(f.name, _bigquery_type(f.type)) for f in schema]


def _bigquery_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type a Parquet load gives an Arrow type."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "STRING"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_floating(arrow_type):
        return "FLOAT64"
    if pa.types.is_boolean(arrow_type):
        return "BOOL"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "DATETIME"
    if pa.types.is_decimal(arrow_type):
        return "NUMERIC"
    if pa.types.is_binary(arrow_type):
        return "BYTES"
    raise TypeError(f"no BigQuery column type for Arrow type {arrow_type}")
