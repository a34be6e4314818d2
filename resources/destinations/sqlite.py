"""SQLite: the embedded default, standing in for the CRM on a laptop and in tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from resources.destinations.base import (
    Batch,
    BatchRejectedError,
    Rejection,
    SyncDestination,
    TransientDestinationError,
    check_keys,
    column_definition,
    missing_key_reason,
    quoted,
    rows_of,
)


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


def _values(rows: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(map(_sqlite_value, row)) for row in rows_of(rows)]


class SQLiteDestination(SyncDestination):
    """A SQLite file. Each batch is one `BEGIN IMMEDIATE` transaction."""

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

    @staticmethod
    def _existing_columns(conn: sqlite3.Connection, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({quoted(table, what='table')})")}

    def _ensure_table(
        self, conn: sqlite3.Connection, table: str, key_columns: Sequence[str], schema: pa.Schema
    ) -> None:
        target = quoted(table, what="table")
        existing = self._existing_columns(conn, table)
        columns = [column_definition(f, _sqlite_type, key_columns) for f in schema]
        if not existing:
            keys = ", ".join(quoted(c, what="key column") for c in key_columns)
            conn.execute(f"CREATE TABLE {target} ({', '.join(columns)}, PRIMARY KEY ({keys}))")
            return
        for field, definition in zip(schema, columns, strict=True):
            if field.name not in existing:
                conn.execute(f"ALTER TABLE {target} ADD COLUMN {definition}")

    def write(self, batch: Batch) -> list[Rejection]:
        check_keys(batch.key_columns, batch.rows.schema)
        with contextlib.closing(self._connect()) as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # Locked past timeout_s: try again later.
                raise TransientDestinationError(f"SQLite {self.path}: {exc}") from exc
            try:
                rejections = self._apply(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return rejections

    def _apply(self, conn: sqlite3.Connection, batch: Batch) -> list[Rejection]:
        target = quoted(batch.table, what="table")
        columns = [quoted(name, what="column") for name in batch.rows.schema.names]
        keys = [quoted(c, what="key column") for c in batch.key_columns]
        by_key = " AND ".join(f"{k} = ?" for k in keys)
        if batch.operation in ("update", "delete") and not self._existing_columns(
            conn, batch.table
        ):
            # Nothing was ever written: nothing to delete, and no record an update could change.
            if batch.operation == "delete":
                return []
            return [Rejection(i, missing_key_reason(batch)) for i in range(batch.num_rows)]
        try:
            if batch.operation == "delete":
                conn.executemany(
                    f"DELETE FROM {target} WHERE {by_key}",
                    _values(batch.rows.select(list(batch.key_columns))),
                )
                return []
            self._ensure_table(conn, batch.table, batch.key_columns, batch.rows.schema)
            if batch.operation == "update":
                return self._update(conn, batch, target, columns, keys, by_key)
            updates = [f"{c} = excluded.{c}" for c in columns if c not in keys]
            conflict = (
                f"DO UPDATE SET {', '.join(updates)}"
                if updates and batch.operation == "upsert"
                else "DO NOTHING"
            )
            conn.executemany(
                f"INSERT INTO {target} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT ({', '.join(keys)}) {conflict}",
                _values(batch.rows),
            )
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError) as exc:
            raise BatchRejectedError(f"SQLite refused the batch: {exc}") from exc
        return []

    @staticmethod
    def _update(
        conn: sqlite3.Connection,
        batch: Batch,
        target: str,
        columns: list[str],
        keys: list[str],
        by_key: str,
    ) -> list[Rejection]:
        values = [c for c in columns if c not in keys]
        if not values:
            raise ValueError("mode update needs at least one column besides the key")
        names = batch.rows.schema.names
        key_positions = [names.index(k) for k in batch.key_columns]
        value_positions = [i for i, c in enumerate(columns) if c not in keys]
        statement = f"UPDATE {target} SET {', '.join(f'{c} = ?' for c in values)} WHERE {by_key}"
        rejections = []
        for index, row in enumerate(_values(batch.rows)):
            params = [row[i] for i in value_positions] + [row[i] for i in key_positions]
            if conn.execute(statement, params).rowcount == 0:
                rejections.append(Rejection(index, missing_key_reason(batch)))
        return rejections
