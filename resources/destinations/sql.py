"""What the SQL destinations share: one flow per batch, tables that follow the batch's columns,
and mode update's refusal of keys the table lacks.

An engine supplies its names and types (`_target`, `_sql_type`, `_columns`) and how it moves
rows (`_delete`, `_insert`, `_update_rows`); `write` stays the engine's, since each opens its
transaction and maps its driver's errors in its own way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from resources.destinations.base import Batch, Rejection, SyncDestination
from resources.identifiers import validate_identifier


def quoted(name: str, *, what: str) -> str:
    # Validated first, then quoted so that keywords such as `order` remain usable as columns.
    return f'"{validate_identifier(name, what=what)}"'


def _column_definition(
    field: pa.Field, sql_type: Callable[[pa.DataType, str], str], key_columns: Sequence[str]
) -> str:
    # NOT NULL on keys: SQLite would otherwise accept NULL in a non-INTEGER primary key.
    not_null = " NOT NULL" if field.name in key_columns else ""
    return f"{quoted(field.name, what='column')} {sql_type(field.type, field.name)}{not_null}"


def rows_of(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def _missing_key_reason(batch: Batch) -> str:
    return f"no record with this key in {batch.table}: mode update never creates records"


@dataclass(frozen=True)
class SqlNames:
    """The batch's target table and columns, validated and quoted for SQL."""

    target: str
    columns: list[str]
    keys: list[str]

    @property
    def values(self) -> list[str]:
        """The columns besides the key."""
        return [c for c in self.columns if c not in self.keys]


class SqlDestination(SyncDestination):
    """A SQL database whose tables are created, and widened, from the batches written to them.

    A table gets the batch's columns and its key as primary key on the first write; columns a
    later batch brings are added to it. Every operation matches records by that primary key, so
    a batch replayed after a crash changes nothing.
    """

    # Appended to CREATE TABLE and ADD COLUMN where the engine supports and needs it.
    IF_NOT_EXISTS: ClassVar[str] = ""

    @abstractmethod
    def _target(self, table: str) -> str:
        """`table`, qualified and quoted as statements name it."""

    @staticmethod
    @abstractmethod
    def _sql_type(arrow_type: pa.DataType, column: str) -> str:
        """The engine's column type for an Arrow type; TypeError when there is none."""

    @abstractmethod
    def _columns(self, conn: Any, table: str) -> set[str]:
        """Columns `table` has; empty when it does not exist."""

    @abstractmethod
    def _delete(self, conn: Any, names: SqlNames, keys: pa.Table) -> None:
        """Delete the records with these keys (`names` holds only the key columns)."""

    @abstractmethod
    def _insert(self, conn: Any, names: SqlNames, rows: pa.Table, on_conflict: str) -> None:
        """Insert `rows`; `on_conflict` is the statement's ON CONFLICT clause."""

    @abstractmethod
    def _update_rows(self, conn: Any, batch: Batch, names: SqlNames) -> list[int]:
        """Update the value columns by key; return the row indices whose key the table lacks."""

    def _apply(self, conn: Any, batch: Batch) -> list[Rejection]:
        """The batch inside the engine's transaction."""
        rows = batch.rows
        if batch.operation == "delete":
            rows = rows.select(list(batch.key_columns))
        names = SqlNames(
            self._target(batch.table),
            [quoted(name, what="column") for name in rows.schema.names],
            [quoted(c, what="key column") for c in batch.key_columns],
        )
        if batch.operation in ("update", "delete") and not self._columns(conn, batch.table):
            # Nothing was ever written: nothing to delete, and no record an update could change.
            if batch.operation == "delete":
                return []
            return [Rejection(i, _missing_key_reason(batch)) for i in range(batch.num_rows)]
        if batch.operation == "delete":
            self._delete(conn, names, rows)
            return []
        self._ensure_table(conn, batch, names)
        if batch.operation == "update":
            return self._update(conn, batch, names)
        values = names.values
        conflict = (
            f"DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in values)}"
            if values and batch.operation == "upsert"
            else "DO NOTHING"
        )
        self._insert(conn, names, rows, f"ON CONFLICT ({', '.join(names.keys)}) {conflict}")
        return []

    def _ensure_table(self, conn: Any, batch: Batch, names: SqlNames) -> None:
        existing = self._columns(conn, batch.table)
        schema = batch.rows.schema
        columns = [_column_definition(f, self._sql_type, batch.key_columns) for f in schema]
        if not existing:
            conn.execute(
                f"CREATE TABLE{self.IF_NOT_EXISTS} {names.target} "
                f"({', '.join(columns)}, PRIMARY KEY ({', '.join(names.keys)}))"
            )
            return
        for field, definition in zip(schema, columns, strict=True):
            if field.name not in existing:
                conn.execute(
                    f"ALTER TABLE {names.target} ADD COLUMN{self.IF_NOT_EXISTS} {definition}"
                )

    def _update(self, conn: Any, batch: Batch, names: SqlNames) -> list[Rejection]:
        if not names.values:
            raise ValueError("mode update needs at least one column besides the key")
        missing = self._update_rows(conn, batch, names)
        return [Rejection(index, _missing_key_reason(batch)) for index in missing]
