"""The warehouse: DuckDB on the embedded default, BigQuery in production.

Both implement the same small interface, so assets never branch on the engine except where the
SQL dialect itself differs (anomaly detection uses BigQuery ML in production). A warehouse
"schema" is a DuckDB schema or a BigQuery dataset: `lake`, `cleansing`, `fact`, `monitoring`, ...
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from resources.identifiers import validate_identifier

PartitionValues = tuple[Any, ...]


def sql_literal(value: Any, *, dialect: str) -> str:
    """Render a partition value as a SQL literal of the given dialect (`duckdb` | `bigquery`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    text = str(value)
    if dialect == "bigquery":
        # GoogleSQL strings take backslash escapes; a doubled quote would end the literal.
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    # DuckDB follows standard SQL: the only escape is a doubled quote.
    return "'" + text.replace("'", "''") + "'"


def partition_predicate(
    columns: Sequence[str], partitions: Sequence[PartitionValues], *, dialect: str
) -> str:
    """`(a = 'x' AND b = 'y') OR (...)`: the rows that belong to the given partitions.

    Tuple-IN is not portable to BigQuery, an OR of conjunctions is.
    """
    if not partitions:
        return "FALSE"
    if not columns:
        return "TRUE"  # an unpartitioned table: the one "partition" is all of it
    for column in columns:
        validate_identifier(column, what="partition column")
    terms = []
    for values in partitions:
        if len(values) != len(columns):
            raise ValueError(f"partition {values!r} does not match columns {list(columns)!r}")
        terms.append(
            "("
            + " AND ".join(
                f"{c} IS NULL" if v is None else f"{c} = {sql_literal(v, dialect=dialect)}"
                for c, v in zip(columns, values, strict=True)
            )
            + ")"
        )
    return " OR ".join(terms)


@dataclass(frozen=True)
class PartitionTarget:
    """Partitions of one table that a write replaces: whatever is appended takes their place."""

    schema: str
    table: str
    partition_columns: tuple[str, ...]
    partitions: tuple[PartitionValues, ...]


@dataclass(frozen=True)
class PartitionWrite:
    schema: str
    table: str
    data: pa.Table
    partition_columns: tuple[str, ...]
    partitions: tuple[PartitionValues, ...]

    @property
    def target(self) -> PartitionTarget:
        return PartitionTarget(self.schema, self.table, self.partition_columns, self.partitions)


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

    @abstractmethod
    def overwrite_table(self, schema: str, table: str, data: pa.Table) -> None:
        """Replace the whole table with `data` in one step."""

    def qualified(self, schema: str, table: str) -> str:
        schema = validate_identifier(schema, what="schema")
        return f"{schema}.{validate_identifier(table, what='table')}"


class DuckDBWarehouse(Warehouse):
    """A DuckDB file. dbt-duckdb and Dagster share it, one writer at a time."""

    path: str = Field(description="Path of the DuckDB database file.")
    write_memory_limit: str = Field(
        default="512MB",
        description="DuckDB's memory limit while a write replaces partitions; beyond it DuckDB "
        "spills to disk, so loading a partition of any size keeps memory flat.",
    )
    lock_timeout_s: float = Field(
        default=120.0,
        description="How long to wait for another process (dbt, a concurrent run) to release "
        "the file before failing.",
    )

    @property
    def kind(self) -> str:
        return "duckdb"

    @property
    def catalog(self) -> str:
        # DuckDB names the attached file's catalog after its stem; a file called `lake.duckdb`
        # would otherwise make `lake.orders` ambiguous (catalog or schema?).
        return Path(self.path).stem.replace('"', '""')

    def qualified(self, schema: str, table: str) -> str:
        return f'"{self.catalog}".{super().qualified(schema, table)}'

    def _schema(self, schema: str) -> str:
        return f'"{self.catalog}".{validate_identifier(schema, what="schema")}'

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A short-lived connection; DuckDB allows one writing process, so none is kept open."""
        import duckdb

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                # Another process holds the write lock: wait for it rather than fail the run.
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            yield conn
        finally:
            conn.close()

    def query_arrow(self, sql: str) -> pa.Table:
        with self.connect() as conn:
            return conn.sql(sql).to_arrow_table()

    def execute(self, sql: str) -> None:
        with self.connect() as conn:
            conn.execute(sql)

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as conn:
            return _duckdb_table_exists(conn, schema, table)

    @contextlib.contextmanager
    def partition_sink(self, targets: Sequence[PartitionTarget]) -> Iterator[PartitionSink]:
        # Chunks wait in Parquet files beside the database; the file is locked only for the
        # final transaction, which inserts everything in one parallel statement (measured: one
        # INSERT from Parquet is several times faster than an INSERT per chunk).
        spool_root = Path(self.path).parent
        spool_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".minato_spool_", dir=spool_root) as spool:
            sink = ParquetSpool(targets, Path(spool))
            yield sink
            with self.connect() as conn:
                limit = sql_literal(self.write_memory_limit, dialect="duckdb")
                conn.execute(f"SET memory_limit = {limit}")
                conn.execute("BEGIN TRANSACTION")
                try:
                    for target in targets:
                        self._replace_from_spool(conn, target, sink)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def _replace_from_spool(self, conn: Any, target: PartitionTarget, spool: ParquetSpool) -> None:
        name = self.qualified(target.schema, target.table)
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema(target.schema)}")
        exists = _duckdb_table_exists(conn, target.schema, target.table)
        if exists:
            predicate = partition_predicate(
                target.partition_columns, target.partitions, dialect=self.kind
            )
            conn.execute(f"DELETE FROM {name} WHERE {predicate}")
        files = spool.files(target)
        if not files:
            return
        listed = ", ".join(sql_literal(str(f), dialect=self.kind) for f in files)
        source = f"read_parquet([{listed}], union_by_name = true)"
        if not exists:
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM {source}")
            return
        existing = _duckdb_columns(conn, target.schema, target.table)
        new = [f for f in spool.schema(target) if f.name not in existing]
        if new:
            # Schema drift: a column that appears in newer data is added; rows loaded earlier
            # read NULL there.
            types = dict(
                (row[0], row[1])
                for row in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            )
            for field in new:
                conn.execute(
                    f"ALTER TABLE {name} ADD COLUMN {validate_identifier(field.name)} "
                    f"{types[field.name]}"
                )
        conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {source}")

    def overwrite_table(self, schema: str, table: str, data: pa.Table) -> None:
        target = self.qualified(schema, table)
        with self.connect() as conn:
            conn.register("_incoming", data)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema(schema)}")
            conn.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _incoming")


def _duckdb_table_exists(conn: Any, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(row[0][0])


def _duckdb_columns(conn: Any, schema: str, table: str) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    }


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

    def _load_parquet(self, client: Any, source: Path | pa.Table, destination: str) -> None:
        """One load job from Parquet: never one per physical source table."""
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        if isinstance(source, pa.Table):
            buffer = io.BytesIO()
            pq.write_table(source, buffer)
            buffer.seek(0)
            client.load_table_from_file(buffer, destination, job_config=config).result()
            return
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
                columns = ", ".join(validate_identifier(c) for c in schema.names)
                predicate = partition_predicate(
                    target.partition_columns, target.partitions, dialect=self.kind
                )
                statements.append(f"CREATE TABLE IF NOT EXISTS {target_name} LIKE {staging};")
                # Schema drift: columns new in this load are added; older rows read NULL.
                for field in schema:
                    statements.append(
                        f"ALTER TABLE {target_name} ADD COLUMN IF NOT EXISTS "
                        f"{validate_identifier(field.name)} {_bigquery_type(field.type)};"
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

    def overwrite_table(self, schema: str, table: str, data: pa.Table) -> None:
        client = self._client()
        self._load_parquet(client, data, self.qualified(schema, table).strip("`"))


class ParquetSpool(PartitionSink):
    """Appends wait in local Parquet files, one per append, until the write commits.

    Memory holds one chunk at a time whatever the partition's size, and a scope is taken back
    by deleting its files (nothing has reached the warehouse yet).
    """

    def __init__(self, targets: Sequence[PartitionTarget], spool: Path) -> None:
        self._targets = list(targets)
        self._spool = spool
        self._parts: dict[PartitionTarget, list[tuple[RowScope | None, Path, pa.Schema]]] = {
            target: [] for target in self._targets
        }
        self._written = 0

    def append(
        self, target: PartitionTarget, data: pa.Table, scope: RowScope | None = None
    ) -> None:
        if target not in self._parts:
            raise KeyError(f"{target.schema}.{target.table} is not a target of this write")
        self._written += 1
        path = self._spool / f"part_{self._written:06d}.parquet"
        # Uncompressed: the file lives for one run, and writing it must not cost more than
        # reading the rows did.
        pq.write_table(data, path, compression="none", use_dictionary=False, write_statistics=False)
        self._parts[target].append((scope, path, data.schema))

    def discard(self, scope: RowScope) -> None:
        for parts in self._parts.values():
            for part in [p for p in parts if p[0] == scope]:
                part[1].unlink()
                parts.remove(part)

    def files(self, target: PartitionTarget) -> list[Path]:
        return [path for _, path, _ in self._parts[target]]

    def schema(self, target: PartitionTarget) -> pa.Schema:
        """The union of the columns appended to `target`."""
        schemas = [schema for _, _, schema in self._parts[target]]
        return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])

    def merged(self) -> Iterator[tuple[PartitionTarget, Path, pa.Schema]]:
        """Per target, its parts as one Parquet file with the union of their columns (for a
        warehouse that loads one file per table); every target needs at least one append."""
        for target in self._targets:
            parts = self._parts[target]
            if not parts:
                raise ValueError(
                    f"nothing appended to {target.schema}.{target.table}: append an empty "
                    "table to declare its schema"
                )
            if len(parts) == 1:
                yield target, parts[0][1], parts[0][2]
                continue
            schema = self.schema(target)
            path = self._spool / f"{target.schema}.{target.table}.parquet"
            with pq.ParquetWriter(path, schema) as writer:
                for _, part, _ in parts:
                    # One part at a time: memory holds a chunk, never the whole partition.
                    data = pq.read_table(part)
                    for field in schema:
                        if field.name not in data.column_names:
                            data = data.append_column(field, pa.nulls(len(data), field.type))
                    writer.write_table(data.select(schema.names).cast(schema))
            yield target, path, schema


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
