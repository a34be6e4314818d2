"""The embedded default warehouse: one DuckDB file, shared with dbt-duckdb."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from resources import settings
from resources.identifiers import validate_identifier
from resources.warehouse.base import PartitionSink, PartitionTarget, Warehouse
from resources.warehouse.spool import ParquetSpool
from resources.warehouse.sql import partition_predicate, quoted, sql_literal


class DuckDBWarehouse(Warehouse):
    """A DuckDB file. dbt-duckdb and Dagster share it, one writer at a time."""

    path: str | None = settings.path_field("Path of the DuckDB database file", "MINATO_DUCKDB_PATH")
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
    def database_path(self) -> Path:
        return settings.setting_path(self.path, "MINATO_DUCKDB_PATH")

    @property
    def catalog(self) -> str:
        # DuckDB names the attached file's catalog after its stem; a file called `lake.duckdb`
        # would otherwise make `lake.orders` ambiguous (catalog or schema?).
        return self.database_path.stem.replace('"', '""')

    def qualified(self, schema: str, table: str) -> str:
        return f'"{self.catalog}".{super().qualified(schema, table)}'

    def _schema(self, schema: str) -> str:
        return f'"{self.catalog}".{validate_identifier(schema, what="schema")}'

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A short-lived connection; DuckDB allows one writing process, so none is kept open."""
        import duckdb

        self.database_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(str(self.database_path))
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
        spool_root = self.database_path.parent
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
                    f"ALTER TABLE {name} ADD COLUMN {quoted(field.name)} {types[field.name]}"
                )
        conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {source}")


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
