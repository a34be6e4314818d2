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
    PHYSICAL_SEPARATOR,
    ensure_datasets,
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
        physical = self._physical_tables(client, schema, table)
        if not physical:
            return super().row_count(schema, table)  # a view someone else defined
        return sum(int(client.get_table(table_id).num_rows or 0) for table_id in physical)

    def _physical_tables(self, client: Any, schema: str, table: str) -> list[str]:
        """The ids of the physical tables behind a split table's view."""
        dataset = self._table_id(schema, table).rsplit(".", 1)[0]
        prefix = f"{table}{PHYSICAL_SEPARATOR}"
        return [
            f"{dataset}.{item.table_id}"
            for item in client.list_tables(dataset)
            if item.table_id.startswith(prefix) and item.table_type == "TABLE"
        ]

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
        for piece in physical:
            self._prepare_target(client, piece, schema)
        if physical != [target]:
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

    def _prepare_target(self, client: Any, target: PartitionTarget, schema: pa.Schema) -> None:
        """Create the target partitioned and clustered if it is missing; add the columns new in
        this write with one ALTER (one table metadata update, whatever the drift)."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        table_id = self._table_id(target.schema, target.table)
        layout = table_layout(schema, target.partition_columns, target.require_day_filter)
        try:
            existing = client.get_table(table_id)
        except NotFound:
            table = layout.apply(bigquery.Table(table_id, schema=_bigquery_schema(schema)))
            # A parallel writer may create it first: then its columns are checked below.
            client.create_table(table, exists_ok=True)
            existing = client.get_table(table_id)
        if layout.require_partition_filter and not existing.require_partition_filter:
            # A table created before the option existed: one metadata update, once.
            existing.require_partition_filter = True
            existing = client.update_table(existing, ["require_partition_filter"])
        known = {field.name.lower() for field in existing.schema}
        new = [field for field in schema if field.name.lower() not in known]
        if new:
            added = ", ".join(
                f"ADD COLUMN IF NOT EXISTS {quoted(f.name, '`')} {_bigquery_type(f.type)}"
                for f in new
            )
            self._run(client, f"ALTER TABLE {self.qualified(target.schema, target.table)} {added};")

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
