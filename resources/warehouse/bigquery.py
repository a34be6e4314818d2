"""The production warehouse: BigQuery, one dataset per warehouse schema."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from resources.identifiers import validate_identifier
from resources.warehouse.base import PartitionSink, PartitionTarget, Warehouse
from resources.warehouse.spool import ParquetSpool
from resources.warehouse.sql import partition_predicate, quoted


class BigQueryWarehouse(Warehouse):
    """BigQuery: one dataset per warehouse schema, optionally prefixed (e.g. `prod_`)."""

    project: str = Field(description="GCP project that owns the datasets and pays for queries.")
    location: str = Field(default="asia-northeast1", description="Dataset and job location.")
    dataset_prefix: str = Field(
        default="", description="Prefix for every dataset, e.g. `dev_alice_` for a sandbox."
    )
    maximum_bytes_billed: int | None = Field(
        default=None, description="Cost guard: queries that would bill more bytes fail."
    )

    @property
    def kind(self) -> str:
        return "bigquery"

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
        prefix = validate_identifier(self.dataset_prefix) if self.dataset_prefix else ""
        return f"`{self.project}.{prefix}{schema}.{table}`"

    def _job_config(self) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig()
        # Unset means no cost guard; None must not be sent (the client would send "None").
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        return config

    def query_arrow(self, sql: str) -> pa.Table:
        return self._client().query(sql, job_config=self._job_config()).to_arrow()

    def execute(self, sql: str) -> None:
        self._client().query(sql, job_config=self._job_config()).result()

    def table_exists(self, schema: str, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._client().get_table(self.qualified(schema, table).strip("`"))
        except NotFound:
            return False
        return True

    def _load_parquet(self, client: Any, source: Path, destination: str) -> None:
        """One load job from a Parquet file: never one per physical source table."""
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        with source.open("rb") as file:
            client.load_table_from_file(file, destination, job_config=config).result()

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
        statements = []
        staging_tables = []
        try:
            for target, path, schema in sink.merged():
                target_name = self.qualified(target.schema, target.table)
                staging = self.qualified(
                    target.schema, f"_staging_{target.table}_{uuid.uuid4().hex[:12]}"
                )
                staging_tables.append(staging.strip("`"))
                self._load_parquet(client, path, staging.strip("`"))
                columns = ", ".join(quoted(c, "`") for c in schema.names)
                predicate = partition_predicate(
                    target.partition_columns, target.partitions, dialect=self.kind
                )
                statements.append(f"CREATE TABLE IF NOT EXISTS {target_name} LIKE {staging};")
                # Schema drift: columns new in this load are added; older rows read NULL.
                for field in schema:
                    statements.append(
                        f"ALTER TABLE {target_name} ADD COLUMN IF NOT EXISTS "
                        f"{quoted(field.name, '`')} {_bigquery_type(field.type)};"
                    )
                statements.append(f"DELETE FROM {target_name} WHERE {predicate};")
                statements.append(
                    f"INSERT INTO {target_name} ({columns}) SELECT {columns} FROM {staging};"
                )
            # DDL may not run inside a BigQuery transaction: create and alter targets first.
            ddl = ("CREATE", "ALTER")
            creates = [s for s in statements if s.startswith(ddl)]
            changes = [s for s in statements if not s.startswith(ddl)]
            script = "\n".join([*creates, "BEGIN TRANSACTION;", *changes, "COMMIT TRANSACTION;"])
            client.query(script, job_config=self._job_config()).result()
        finally:
            for staging in staging_tables:
                client.delete_table(staging, not_found_ok=True)


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
