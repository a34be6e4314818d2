"""Reverse-ETL destinations: where synced warehouse rows are written.

The interface is deliberately two calls wide (upsert a batch, delete a batch of keys) so that an
HTTP API adapter can implement it as well as a database. Each call is one transaction: a batch is
either applied completely or not at all, which is what lets the sync record a batch as delivered
only after the destination acknowledged it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sqlite3
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from resources.identifiers import validate_identifier


class SyncDestination(dg.ConfigurableResource, ABC):
    """A system that receives synced rows, keyed by a primary key."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """Short engine name for metadata and alerts, e.g. `sqlite` or `postgres`."""

    @abstractmethod
    def upsert(self, table: str, key_columns: Sequence[str], rows: pa.Table) -> None:
        """Insert `rows`, replacing rows with the same key; all or nothing.

        The table is created from `rows`' schema, with `key_columns` as its primary key, on first
        use; columns new in `rows` are added.
        """

    @abstractmethod
    def delete(self, table: str, key_columns: Sequence[str], keys: pa.Table) -> None:
        """Delete the rows whose key is in `keys` (one column per key column); all or nothing."""


def _quoted(name: str, *, what: str) -> str:
    # Validated first, then quoted so that keywords such as `order` remain usable as columns.
    return f'"{validate_identifier(name, what=what)}"'


def _check_keys(key_columns: Sequence[str], schema: pa.Schema) -> None:
    if not key_columns:
        raise ValueError("at least one key column is required")
    missing = [c for c in key_columns if c not in schema.names]
    if missing:
        raise ValueError(f"key columns {missing!r} are not in the batch columns {schema.names!r}")


def _column_definition(
    field: pa.Field, sql_type: Callable[[pa.DataType, str], str], key_columns: Sequence[str]
) -> str:
    # NOT NULL on keys: SQLite would otherwise accept NULL in a non-INTEGER primary key.
    not_null = " NOT NULL" if field.name in key_columns else ""
    return f"{_quoted(field.name, what='column')} {sql_type(field.type, field.name)}{not_null}"


def _rows(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def _sqlite_type(arrow_type: pa.DataType, column: str) -> str:
    if pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type):
        return "INTEGER"
    if pa.types.is_floating(arrow_type):
        return "REAL"
    if pa.types.is_decimal(arrow_type):
        return "NUMERIC"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BLOB"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_temporal(arrow_type)
    ):
        # SQLite has no date/time type; ISO-8601 text is what its date functions understand.
        return "TEXT"
    raise TypeError(f"column {column!r}: Arrow type {arrow_type} has no SQLite mapping")


def _sqlite_value(value: Any) -> Any:
    # Converted here rather than via sqlite3's default adapters, which are deprecated.
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


class SQLiteDestination(SyncDestination):
    """A SQLite file: the embedded default, standing in for the CRM on a laptop and in tests."""

    path: str = Field(description="Path of the SQLite database file.")
    timeout_s: float = Field(
        default=30.0, description="How long to wait for another writer to release the file."
    )

    @property
    def kind(self) -> str:
        return "sqlite"

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode, so that the explicit BEGIN below also covers CREATE/ALTER TABLE.
        return sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)

    def _ensure_table(
        self, conn: sqlite3.Connection, table: str, key_columns: Sequence[str], schema: pa.Schema
    ) -> None:
        target = _quoted(table, what="table")
        existing = {row[1] for row in conn.execute(f"PRAGMA table_info({target})")}
        columns = [_column_definition(f, _sqlite_type, key_columns) for f in schema]
        if not existing:
            keys = ", ".join(_quoted(c, what="key column") for c in key_columns)
            conn.execute(f"CREATE TABLE {target} ({', '.join(columns)}, PRIMARY KEY ({keys}))")
            return
        for field, definition in zip(schema, columns, strict=True):
            if field.name not in existing:
                conn.execute(f"ALTER TABLE {target} ADD COLUMN {definition}")

    def upsert(self, table: str, key_columns: Sequence[str], rows: pa.Table) -> None:
        _check_keys(key_columns, rows.schema)
        target = _quoted(table, what="table")
        columns = [_quoted(name, what="column") for name in rows.schema.names]
        keys = [_quoted(c, what="key column") for c in key_columns]
        updates = [f"{c} = excluded.{c}" for c in columns if c not in keys]
        conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        statement = (
            f"INSERT INTO {target} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) {conflict}"
        )
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._ensure_table(conn, table, key_columns, rows.schema)
                conn.executemany(statement, (tuple(map(_sqlite_value, row)) for row in _rows(rows)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def delete(self, table: str, key_columns: Sequence[str], keys: pa.Table) -> None:
        _check_keys(key_columns, keys.schema)
        target = _quoted(table, what="table")
        predicate = " AND ".join(f"{_quoted(c, what='key column')} = ?" for c in key_columns)
        with contextlib.closing(self._connect()) as conn:
            if not conn.execute(f"PRAGMA table_info({target})").fetchall():
                return  # Nothing was ever written, so there is nothing to delete.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"DELETE FROM {target} WHERE {predicate}",
                    (
                        tuple(map(_sqlite_value, row))
                        for row in _rows(keys.select(list(key_columns)))
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def _postgres_type(arrow_type: pa.DataType, column: str) -> str:
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_uint64(arrow_type):
        return "NUMERIC(20, 0)"  # Does not fit BIGINT.
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE PRECISION"
    if pa.types.is_decimal(arrow_type):
        return f"NUMERIC({arrow_type.precision}, {arrow_type.scale})"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "TEXT"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BYTEA"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_time(arrow_type):
        return "TIME"
    raise TypeError(f"column {column!r}: Arrow type {arrow_type} has no PostgreSQL mapping")


class DestinationConnectionError(RuntimeError):
    """The destination could not be reached; the message never contains a password."""


def _password(url: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url).get("password")
    except Exception:
        # Unparseable by libpq: fall back to URL syntax so the password can still be masked.
        return urllib.parse.urlsplit(url).password


class PostgresDestination(SyncDestination):
    """A PostgreSQL database (the production CRM's sync schema).

    A batch is COPYed into a temporary table and merged with one `INSERT ... ON CONFLICT` (or
    `DELETE ... USING`), so a batch costs one round trip of data and one transaction.
    """

    url: str = Field(
        repr=False,
        description="libpq connection URL, postgresql://user:password@host:5432/db. Configure "
        "it with dg.EnvVar so the password stays out of the UI; it is never logged.",
    )
    schema_name: str = Field(
        default="public", description="Existing schema that holds the synced tables."
    )
    connect_timeout_s: int = Field(default=10, description="Connection timeout in seconds.")

    @property
    def kind(self) -> str:
        return "postgres"

    def _target(self, table: str) -> str:
        return f"{_quoted(self.schema_name, what='schema')}.{_quoted(table, what='table')}"

    def _connect(self) -> Any:
        import psycopg

        try:
            # Autocommit, so that `conn.transaction()` below is the one and only transaction.
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=self.connect_timeout_s
            )
        except psycopg.Error as exc:
            message = str(exc)
            password = _password(self.url)
            if password:
                message = message.replace(password, "***")
        # Raised outside the `except` block so the original exception, whose text and
        # arguments may carry the URL, is not chained into logs.
        raise DestinationConnectionError(f"cannot connect to PostgreSQL: {message}")

    def _ensure_table(
        self, conn: Any, table: str, key_columns: Sequence[str], schema: pa.Schema
    ) -> None:
        target = self._target(table)
        existing = self._columns(conn, table)
        columns = [_column_definition(f, _postgres_type, key_columns) for f in schema]
        if not existing:
            keys = ", ".join(_quoted(c, what="key column") for c in key_columns)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {target} ({', '.join(columns)}, PRIMARY KEY ({keys}))"
            )
            return
        for field, definition in zip(schema, columns, strict=True):
            if field.name not in existing:
                conn.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {definition}")

    def _columns(self, conn: Any, table: str) -> set[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (self.schema_name, table),
        ).fetchall()
        return {name for (name,) in rows}

    @staticmethod
    def _copy(conn: Any, temp_table: str, columns: str, rows: pa.Table) -> None:
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY {temp_table} ({columns}) FROM STDIN") as copy,
        ):
            for row in _rows(rows):
                copy.write_row(row)

    def upsert(self, table: str, key_columns: Sequence[str], rows: pa.Table) -> None:
        _check_keys(key_columns, rows.schema)
        target = self._target(table)
        quoted = [_quoted(name, what="column") for name in rows.schema.names]
        columns = ", ".join(quoted)
        keys = [_quoted(c, what="key column") for c in key_columns]
        updates = [f"{c} = EXCLUDED.{c}" for c in quoted if c not in keys]
        conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        with self._connect() as conn, conn.transaction():
            self._ensure_table(conn, table, key_columns, rows.schema)
            # LIKE takes the target's column types, so COPY's text values parse exactly as the
            # merge will store them.
            conn.execute(f"CREATE TEMP TABLE _sync_batch (LIKE {target}) ON COMMIT DROP")
            self._copy(conn, "_sync_batch", columns, rows)
            conn.execute(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM _sync_batch "
                f"ON CONFLICT ({', '.join(keys)}) {conflict}"
            )

    def delete(self, table: str, key_columns: Sequence[str], keys: pa.Table) -> None:
        _check_keys(key_columns, keys.schema)
        target = self._target(table)
        quoted = [_quoted(c, what="key column") for c in key_columns]
        columns = ", ".join(quoted)
        with self._connect() as conn, conn.transaction():
            if not self._columns(conn, table):
                return  # Nothing was ever written, so there is nothing to delete.
            conn.execute(
                f"CREATE TEMP TABLE _sync_keys ON COMMIT DROP AS "
                f"SELECT {columns} FROM {target} WITH NO DATA"
            )
            self._copy(conn, "_sync_keys", columns, keys.select(list(key_columns)))
            matches = " AND ".join(f"t.{c} = k.{c}" for c in quoted)
            conn.execute(f"DELETE FROM {target} AS t USING _sync_keys AS k WHERE {matches}")
