"""PostgreSQL (the production CRM's sync schema): COPY into a temp table, then one merge."""

from __future__ import annotations

import io
import urllib.parse
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field

from resources.destinations.base import (
    Batch,
    BatchRejectedError,
    DestinationConnectionError,
    Rejection,
    TransientDestinationError,
    check_keys,
)
from resources.destinations.sql import SqlDestination, SqlNames, quoted, rows_of

# Temporary table a batch is COPYed into before the merge; dropped at commit.
STAGED = "_sync_batch"


def _password(url: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url).get("password")
    except Exception:
        # Unparseable by libpq: fall back to URL syntax so the password can still be masked.
        return urllib.parse.urlsplit(url).password


def _copy(conn: Any, temp_table: str, columns: str, rows: pa.Table) -> None:
    with conn.cursor() as cursor:
        if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in rows.schema.types):
            # CSV has no bytea syntax: the (slower) row-by-row protocol encodes it.
            with cursor.copy(f"COPY {temp_table} ({columns}) FROM STDIN") as copy:
                for row in rows_of(rows):
                    copy.write_row(row)
            return
        # Arrow writes CSV in C++: strings quoted, NULL as an empty unquoted field, which is
        # exactly PostgreSQL's CSV reading (so '' and NULL stay apart).
        buffer = io.BytesIO()
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False))
        with cursor.copy(f"COPY {temp_table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())


def _matches(names: SqlNames) -> str:
    # The merge statements join the target (t) and the staged batch (b) on the key.
    return " AND ".join(f"t.{k} = b.{k}" for k in names.keys)


class PostgresDestination(SqlDestination):
    """A PostgreSQL database.

    A batch is COPYed into a temporary table and merged with one `INSERT ... ON CONFLICT`
    (`UPDATE ... FROM`, `DELETE ... USING`), so a batch costs one round trip of data and one
    transaction. Merges by key are idempotent: a batch replayed after a crash changes nothing.
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

    # A sync's senders write concurrently: another transaction may have created the table or
    # added the column since this one looked.
    IF_NOT_EXISTS = " IF NOT EXISTS"

    @property
    def kind(self) -> str:
        return "postgres"

    @staticmethod
    def _sql_type(arrow_type: pa.DataType, column: str) -> str:
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

    def _target(self, table: str) -> str:
        return f"{quoted(self.schema_name, what='schema')}.{quoted(table, what='table')}"

    def _columns(self, conn: Any, table: str) -> set[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (self.schema_name, table),
        ).fetchall()
        return {name for (name,) in rows}

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

    def write(self, batch: Batch) -> list[Rejection]:
        import psycopg

        check_keys(batch.key_columns, batch.rows.schema)
        try:
            with self._connect() as conn, conn.transaction():
                return self._apply(conn, batch)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise BatchRejectedError(f"PostgreSQL refused the batch: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise TransientDestinationError(f"PostgreSQL: {exc}") from exc

    def _stage(self, conn: Any, names: SqlNames, rows: pa.Table) -> None:
        # The target's own column types, so COPY's text values parse exactly as the merge will
        # store them.
        columns = ", ".join(names.columns)
        conn.execute(
            f"CREATE TEMP TABLE {STAGED} ON COMMIT DROP AS "
            f"SELECT {columns} FROM {names.target} WITH NO DATA"
        )
        _copy(conn, STAGED, columns, rows)

    def _delete(self, conn: Any, names: SqlNames, keys: pa.Table) -> None:
        self._stage(conn, names, keys)
        conn.execute(f"DELETE FROM {names.target} AS t USING {STAGED} AS b WHERE {_matches(names)}")

    def _insert(self, conn: Any, names: SqlNames, rows: pa.Table, on_conflict: str) -> None:
        self._stage(conn, names, rows)
        columns = ", ".join(names.columns)
        conn.execute(
            f"INSERT INTO {names.target} ({columns}) SELECT {columns} FROM {STAGED} {on_conflict}"
        )

    def _update_rows(self, conn: Any, batch: Batch, names: SqlNames) -> list[int]:
        self._stage(conn, names, batch.rows)
        matches = _matches(names)
        missing = conn.execute(
            f"SELECT {', '.join(f'b.{k}' for k in names.keys)} FROM {STAGED} AS b "
            f"WHERE NOT EXISTS (SELECT 1 FROM {names.target} AS t WHERE {matches})"
        ).fetchall()
        conn.execute(
            f"UPDATE {names.target} AS t SET {', '.join(f'{c} = b.{c}' for c in names.values)} "
            f"FROM {STAGED} AS b WHERE {matches}"
        )
        if not missing:
            return []
        index = {
            key: i for i, key in enumerate(rows_of(batch.rows.select(list(batch.key_columns))))
        }
        return [index[tuple(key)] for key in missing]
