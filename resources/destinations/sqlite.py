"""SQLite: the embedded default, standing in for the CRM on a laptop and in tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from resources import settings
from resources.destinations.base import (
    Batch,
    BatchRejectedError,
    Rejection,
    TransientDestinationError,
    check_keys,
)
from resources.destinations.sql import SqlDestination, SqlNames, quoted, rows_of


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


def _by_key(names: SqlNames) -> str:
    return " AND ".join(f"{k} = ?" for k in names.keys)


class SQLiteDestination(SqlDestination):
    """A SQLite file. Each batch is one `BEGIN IMMEDIATE` transaction."""

    path: str | None = settings.path_field(
        "Path of the SQLite database file", "MINATO_CRM_SQLITE_PATH"
    )

    @property
    def database_path(self) -> Path:
        return settings.setting_path(self.path, "MINATO_CRM_SQLITE_PATH")

    timeout_s: float = Field(
        default=30.0, description="How long to wait for another writer to release the file."
    )

    @property
    def kind(self) -> str:
        return "sqlite"

    @staticmethod
    def _sql_type(arrow_type: pa.DataType, column: str) -> str:
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

    def _target(self, table: str) -> str:
        return quoted(table, what="table")

    def _columns(self, conn: sqlite3.Connection, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({self._target(table)})")}

    def _connect(self) -> sqlite3.Connection:
        self.database_path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode, so that the explicit BEGIN below also covers CREATE/ALTER TABLE.
        return sqlite3.connect(self.database_path, timeout=self.timeout_s, isolation_level=None)

    def write(self, batch: Batch) -> list[Rejection]:
        check_keys(batch.key_columns, batch.rows.schema)
        with contextlib.closing(self._connect()) as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # Locked past timeout_s: try again later.
                raise TransientDestinationError(f"SQLite {self.database_path}: {exc}") from exc
            try:
                try:
                    rejections = self._apply(conn, batch)
                except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError) as exc:
                    raise BatchRejectedError(f"SQLite refused the batch: {exc}") from exc
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return rejections

    def _delete(self, conn: sqlite3.Connection, names: SqlNames, keys: pa.Table) -> None:
        conn.executemany(f"DELETE FROM {names.target} WHERE {_by_key(names)}", _values(keys))

    def _insert(
        self, conn: sqlite3.Connection, names: SqlNames, rows: pa.Table, on_conflict: str
    ) -> None:
        conn.executemany(
            f"INSERT INTO {names.target} ({', '.join(names.columns)}) "
            f"VALUES ({', '.join('?' for _ in names.columns)}) {on_conflict}",
            _values(rows),
        )

    def _update_rows(self, conn: sqlite3.Connection, batch: Batch, names: SqlNames) -> list[int]:
        key_positions = [batch.rows.schema.names.index(k) for k in batch.key_columns]
        value_positions = [i for i, c in enumerate(names.columns) if c not in names.keys]
        statement = (
            f"UPDATE {names.target} SET {', '.join(f'{c} = ?' for c in names.values)} "
            f"WHERE {_by_key(names)}"
        )
        missing: list[int] = []
        for index, row in enumerate(_values(batch.rows)):
            params = [row[i] for i in value_positions] + [row[i] for i in key_positions]
            if conn.execute(statement, params).rowcount == 0:
                missing.append(index)
        return missing
