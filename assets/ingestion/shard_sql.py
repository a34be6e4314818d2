"""The statement that reads a batch of same-layout client tables for one window.

A `UNION ALL` of the tables, every column rendered as text by the server (the lake keeps the
source's text; types are decided in `cleansing`), except binary columns, which arrive as bytes
so that invalid UTF-8 can be quarantined instead of silently replaced, and MySQL text, which is
read as stored.

Every row also carries the server's own count and key checksum of the whole batch, computed in
the same statement and the same scan (`COUNT(*) OVER ()`, `SUM(key) OVER ()` over the union):
reconciliation compares them with what was loaded, so a driver or network that loses or doubles
rows cannot go unnoticed. Each table is referenced once, so the server opens it once (a summary
row per table from a second reference opened every table twice, see bench/README.md). One
marker row (NULL but the summary) ends every batch, so a result cut short is never mistaken for
an empty window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assets.ingestion.mysql_types import read_as_text, rendering, type_family
from assets.ingestion.shard_catalog import KEY_COLUMN_PREFIX, PhysicalTable, SchemaDriftError
from resources.identifiers import validate_identifier

# The batch's count and key checksum as the server computed them, on every row (summed from
# raw key columns KEY_COLUMN_PREFIX + i, which never leave the server).
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
    # Per key column: summed as a number, or as CRC32s (`checksums.integer_keys`). Decided once
    # over every client table of the logical table, so that the server (per batch) and the
    # client (per chunk) always agree, even where one client widened its key to a DECIMAL.
    integer_keys: tuple[bool, ...]


@dataclass(frozen=True)
class _Dialect:
    name: str
    quote: Callable[[str], str]
    text_type: str


# Source names are quoted, never validated: a client column may be called `gift-wrap` or `金額`
# (the lake renames it, see shard_catalog); the quote character itself is doubled.
_DIALECTS = {
    "sqlite": _Dialect("sqlite", lambda name: '"' + name.replace('"', '""') + '"', "TEXT"),
    "mysql": _Dialect("mysql", lambda name: "`" + name.replace("`", "``") + "`", "CHAR"),
}


def _source(table: PhysicalTable, column: str) -> str:
    """The shard's name of a lake column the read needs; a table without it cannot be read."""
    source = table.source_name(column)
    if source is None:
        raise SchemaDriftError(f"table {table.name} has no column {column!r}")
    return source


def _window(dialect: _Dialect, table: PhysicalTable, read: ReadWindow) -> str:
    column = dialect.quote(_source(table, read.change_column))
    low, high = read.low, read.high
    upper = f"{column} < '{high}'"
    if low is None:
        # The first partition reaches back to the beginning: history older than the partitions
        # lands there, and rows without a usable change time are read (then quarantined)
        # instead of never being read at all.
        return f"({upper} OR {column} IS NULL)"
    return f"{column} >= '{low}' AND {upper}"


def _key_terms(dialect: _Dialect, table: PhysicalTable, read: ReadWindow) -> list[str]:
    """Per key column, what the server sums for the key checksum (see `checksums.key_checksum`
    for the client side): the value (integer keys) or its CRC32. A key column the table lacks
    is NULL in every row, and NULLs add nothing on either side."""
    terms = []
    for i, (column, integer) in enumerate(zip(read.key_columns, read.integer_keys, strict=True)):
        source = table.source_name(column)
        if source is None:
            term = "NULL"
        elif integer:
            term = dialect.quote(source)
        else:
            term = f"{'CRC32' if dialect.name == 'mysql' else 'crc32'}({dialect.quote(source)})"
        terms.append(f"{term} AS {KEY_COLUMN_PREFIX}{i}")
    return terms


# MariaDB sizes a `CAST(x AS CHAR)` from x's type and cuts longer text to that size once the
# column is unioned with other SELECTs (`-0.00001` of a DECIMAL(5, 5) read `-0.0000`): numbers
# and times are cast to a size that holds any of them (DECIMAL(65, 30) is 67 characters).
_BOUNDED_FAMILIES = frozenset({"integer", "number", "temporal"})


def _select_list(dialect: _Dialect, table: PhysicalTable) -> str:
    columns = []
    for name, declared in table.columns:
        source = dialect.quote(_source(table, name))
        alias = dialect.quote(name)
        family = type_family(declared)
        text = dialect.text_type
        if dialect.name == "mysql" and family in _BOUNDED_FAMILIES:
            text = f"{text}(100)"
        render = rendering(declared) if dialect.name == "mysql" else None
        if family == "binary":
            columns.append(f"{source} AS {alias}")  # bytes: UTF-8 is checked at ingestion
        elif dialect.name == "mysql" and read_as_text(declared):
            columns.append(f"{source} AS {alias}")  # text as stored: no conversion per value
        elif render == "number":
            columns.append(f"CAST({source} + 0 AS {text}) AS {alias}")
        elif render == "float":
            columns.append(f"CAST(CAST({source} AS DOUBLE) AS {text}) AS {alias}")
        elif render == "wkt":
            columns.append(f"ST_AsText({source}) AS {alias}")
        else:
            columns.append(f"CAST({source} AS {text}) AS {alias}")
    return ", ".join(columns)


def union_query(tables: Sequence[PhysicalTable], read: ReadWindow, *, ordered: bool = False) -> str:
    """Rows of same-layout tables in the window, each with the batch's count and key sum."""
    dialect = _DIALECTS[read.dialect]
    # One layout per batch: the same columns under the same source names in every table.
    window = _window(dialect, tables[0], read)
    columns = ", ".join([_select_list(dialect, tables[0]), *_key_terms(dialect, tables[0], read)])
    parts = []
    for table in tables:
        if (table.columns, table.sources) != (tables[0].columns, tables[0].sources):
            raise ValueError(f"{table.name} does not have the layout of {tables[0].name}")
        name = dialect.quote(table.name)
        origin = f"'{int(table.client_id)}' AS _client_id, '{table.name}' AS _source_table"
        parts.append(f"SELECT {origin}, {columns} FROM {name} WHERE {window}")
    # The marker: one row of NULLs (no table opened), so the summary arrives even when no table
    # has a row in the window; last, so the tables' SELECTs name and type the columns.
    width = 2 + len(tables[0].columns) + len(read.key_columns)
    parts.append("SELECT " + ", ".join(["NULL"] * width))
    union = "\nUNION ALL\n".join(parts)
    text = dialect.text_type
    key_sum = " + ".join(
        f"COALESCE(SUM(u.{KEY_COLUMN_PREFIX}{i}) OVER (), 0)" for i in range(len(read.key_columns))
    )
    # The raw keys stay on the server: only their sums leave it, as text (a BIGINT UNSIGNED is
    # a DECIMAL in a UNION, which the driver cannot always decode).
    names = ["_client_id", "_source_table", *(name for name, _ in tables[0].columns)]
    outer = ", ".join(f"u.{dialect.quote(name)}" for name in names)
    sql = (
        f"SELECT {outer}, CAST(COUNT(u._source_table) OVER () AS {text}) AS {SOURCE_ROWS}, "
        f"CAST({key_sum or '0'} AS {text}) AS {SOURCE_KEY_SUM}\n"
        f"FROM (\n{union}\n) AS u"
    )
    if ordered:
        # The union's output columns carry the lake names.
        keys = ", ".join("u." + dialect.quote(validate_identifier(k)) for k in read.key_columns)
        change = "u." + dialect.quote(validate_identifier(read.change_column))
        sql += f"\nORDER BY u._source_table, {keys}, {change} DESC"
    return sql
