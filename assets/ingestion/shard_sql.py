"""The statement that reads a batch of same-layout client tables for one window.

A `UNION ALL` of the tables, every column rendered as text by the server (the lake keeps the
source's text; types are decided in `cleansing`), except binary columns, which arrive as bytes
so that invalid UTF-8 can be quarantined instead of silently replaced, and MySQL text, which is
read as stored.

Each table also contributes one summary row, computed by the server in the same statement: its
own `COUNT(*)` and a key checksum of the rows in the window. Reconciliation compares them with
what was loaded, so a driver or network that loses rows cannot go unnoticed, and a summary row
is produced even for a table with no rows in the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assets.ingestion.checksums import integer_keys
from assets.ingestion.mysql_types import read_as_text, type_family
from assets.ingestion.shard_catalog import PhysicalTable
from resources.identifiers import validate_identifier

# Columns of the summary rows; NULL on the data rows.
SOURCE_ROWS = "_source_rows"
SOURCE_KEY_SUM = "_source_key_sum"


@dataclass(frozen=True)
class ReadWindow:
    """What a read selects: rows whose change column lies in [low, high) on the shard's wall
    clock (`low=None`: everything before `high`), with the logical key for the checksum."""

    change_column: str
    low: str | None
    high: str
    dialect: str  # `mysql` | `sqlite`
    key_columns: tuple[str, ...]


@dataclass(frozen=True)
class _Dialect:
    name: str
    quote: Callable[[str], str]
    text_type: str


_DIALECTS = {
    "sqlite": _Dialect("sqlite", lambda name: f'"{name}"', "TEXT"),
    "mysql": _Dialect("mysql", lambda name: f"`{name}`", "CHAR"),
}


def _window(dialect: _Dialect, change_column: str, low: str | None, high: str) -> str:
    column = dialect.quote(validate_identifier(change_column, what="column"))
    upper = f"{column} < '{high}'"
    if low is None:
        # The first partition reaches back to the beginning: history older than the partitions
        # lands there, and rows without a usable change time are read (then quarantined)
        # instead of never being read at all.
        return f"({upper} OR {column} IS NULL)"
    return f"{column} >= '{low}' AND {upper}"


def _key_sum_expression(
    dialect: _Dialect, tables: Sequence[PhysicalTable], key_columns: Sequence[str]
) -> str:
    """The server side of the key checksum: see `checksums.key_checksum` for the client side."""
    terms = []
    for column, integer in zip(key_columns, integer_keys(tables, key_columns), strict=True):
        quoted = dialect.quote(validate_identifier(column, what="key column"))
        if integer:
            terms.append(f"COALESCE(SUM({quoted}), 0)")
        elif dialect.name == "mysql":
            terms.append(f"COALESCE(SUM(CRC32({quoted})), 0)")
        else:
            terms.append(f"COALESCE(SUM(crc32({quoted})), 0)")
    return " + ".join(terms) or "0"


def _select_list(dialect: _Dialect, table: PhysicalTable) -> str:
    columns = []
    for name, declared in table.columns:
        quoted = dialect.quote(validate_identifier(name))
        if type_family(declared) == "binary":
            columns.append(f"{quoted} AS {quoted}")  # bytes: UTF-8 is checked at ingestion
        elif dialect.name == "mysql" and read_as_text(declared):
            columns.append(f"{quoted} AS {quoted}")  # text as stored: no conversion per value
        else:
            columns.append(f"CAST({quoted} AS {dialect.text_type}) AS {quoted}")
    return ", ".join(columns)


def union_query(tables: Sequence[PhysicalTable], read: ReadWindow, *, ordered: bool = False) -> str:
    """Rows of same-layout tables in the window, plus one summary row per table."""
    dialect = _DIALECTS[read.dialect]
    window = _window(dialect, read.change_column, read.low, read.high)
    key_sum = _key_sum_expression(dialect, tables, read.key_columns)
    no_values = ", ".join("NULL" for _ in tables[0].columns)
    columns = _select_list(dialect, tables[0])  # one layout per batch
    text = dialect.text_type
    parts = []
    for table in tables:
        if table.columns != tables[0].columns:
            raise ValueError(f"{table.name} does not have the layout of {tables[0].name}")
        name = dialect.quote(validate_identifier(table.name, what="table"))
        origin = f"'{int(table.client_id)}' AS _client_id, '{table.name}' AS _source_table"
        parts.append(
            f"SELECT {origin}, {columns}, NULL AS {SOURCE_ROWS}, "
            f"NULL AS {SOURCE_KEY_SUM} FROM {name} WHERE {window}"
        )
        parts.append(
            f"SELECT {origin}, {no_values}, CAST(COUNT(*) AS {text}), CAST({key_sum} AS {text}) "
            f"FROM {name} WHERE {window}"
        )
    sql = "\nUNION ALL\n".join(parts)
    if ordered:
        keys = ", ".join(dialect.quote(validate_identifier(k)) for k in read.key_columns)
        change = dialect.quote(read.change_column)
        sql += f"\nORDER BY _source_table, {keys}, {change} DESC"
    return sql
