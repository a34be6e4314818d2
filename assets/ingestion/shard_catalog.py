"""What is on a shard: client tables and their columns, from the catalog in one query.

A shard of the seed platform holds ~120,000 client tables; reflecting them one by one costs
minutes, reading the catalog once costs well under a second.

Naming policy (the lake's columns must be safe, case-insensitive SQL names; client tables are
named by hand over 15 years):

- Tables: `<logical>_<client id>`, matched case-insensitively (`Orders_77` is client 77's
  orders), the id read as a number (`orders_0042` is client 42). Two tables of one client
  (`orders_42` and `orders_0042`) are an error naming both. A table that starts like a logical
  table but does not match (`orders_backup`) is ignored, and reported.
- Columns: MySQL compares column names case-insensitively, so the lake name is the source name
  in lower case (`Note` and `note` of two clients are one lake column). Characters outside
  `[a-z0-9_]` become `_` (ASCII) or `u<code point>` (`gift-wrap` -> `gift_wrap`, `金額` ->
  `u91d1u984d`); a leading digit gets `c_`; a name the lake uses itself (`_shard`,
  `_client_id`, ...) gets `src` in front (`src_shard`). Two columns of one table that map to
  one lake name are an error naming both. Every renaming is reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from assets.ingestion.mysql_types import unionable
from assets.ingestion.origin import ORIGIN_SCHEMA
from resources.identifiers import validate_identifier
from resources.shards import ShardConnection


class SchemaDriftError(ValueError):
    """Client tables of one logical table disagree in a way no union can reconcile, or their
    names break the naming policy (see the module doc). Retrying cannot help."""


# Columns the lake and the reading statement add themselves; a source column may not take them.
RESERVED_LAKE_COLUMNS = frozenset({*ORIGIN_SCHEMA.names, "_source_rows", "_source_key_sum"})
# The reading statement's raw key columns (`_source_key_0`, ...), summed for the checksum.
KEY_COLUMN_PREFIX = "_source_key_"


def lake_column_name(source: str) -> str:
    """The lake's name for a source column (see the module doc)."""
    name = "".join(
        c if c in _SAFE else "_" if c.isascii() else f"u{ord(c):04x}" for c in source.lower()
    )
    if not name or name[0].isdigit():
        name = "c_" + name
    if name in RESERVED_LAKE_COLUMNS or name.startswith(KEY_COLUMN_PREFIX):
        name = "src" + name
    return name


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class PhysicalTable:
    """One client's table on a shard, e.g. `orders_101` of logical table `orders`."""

    logical: str
    client_id: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (lake column name, declared type), in table order
    primary_key: tuple[str, ...] = ()  # declared PRIMARY KEY columns; legacy tables may lack one
    # The columns' names on the shard, in the same order, where any differs from its lake name.
    sources: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def declared_type(self, column: str) -> str | None:
        return dict(self.columns).get(column)

    def source_name(self, column: str) -> str | None:
        """The shard's name of a lake column of this table, or None if it has no such column."""
        for index, (name, _) in enumerate(self.columns):
            if name == column:
                return self.sources[index] if self.sources else name
        return None

    @property
    def renamed(self) -> dict[str, str]:
        """{source name: lake name} where they differ."""
        pairs = zip(self.sources, self.column_names, strict=True) if self.sources else ()
        return {source: name for source, name in pairs if source != name}


@dataclass
class Discovery:
    """What discovery found on a shard for one logical table, for the run's metadata."""

    tables: list[PhysicalTable]
    ignored: dict[str, str]  # table -> why it was not read

    def report(self) -> dict[str, object]:
        renamed = {
            f"{table.name}.{source}": lake
            for table in self.tables
            for source, lake in table.renamed.items()
        }
        return {
            "tables_matched": len(self.tables),
            "tables_ignored": dict(sorted(self.ignored.items())[:_LISTED]),
            "tables_ignored_count": len(self.ignored),
            "columns_renamed": dict(sorted(renamed.items())[:_LISTED]),
            "columns_renamed_count": len(renamed),
        }


# Metadata lists beyond this many entries are noise; the counts say how many there are.
_LISTED = 50


# `data_type` plus the one attribute it drops that the row checks need: unsigned integers reach
# 2^64 - 1 (the full `column_type` would report every precision change as drift).
_MYSQL_CATALOG = (
    "SELECT table_name, column_name, "
    "CONCAT(data_type, IF(column_type LIKE '%unsigned%', ' unsigned', '')), "
    "column_key = 'PRI' "
    "FROM information_schema.columns "
    "WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position"
)
_SQLITE_CATALOG = (
    "SELECT m.name, p.name, p.type, p.pk > 0 FROM sqlite_master AS m "
    "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table' ORDER BY m.name, p.cid"
)


CatalogRow = tuple[str, str, str | None, object]  # table, column, declared type, is key


def catalog_query(dialect: str) -> str:
    return _SQLITE_CATALOG if dialect == "sqlite" else _MYSQL_CATALOG


def discover_shard(shard: ShardConnection, logical_tables: Sequence[str]) -> Discovery:
    """Every client table of the logical tables on the shard: one catalog query."""
    if shard.dialect == "sqlite":
        return discover(shard.connection, logical_tables)
    # ~12 catalog rows per client table: 1.4 million on a shard of the seed platform, read
    # as Arrow (measured: pymysql spent 4 s in Python on 60,000 rows).
    import connectorx

    catalog = connectorx.read_sql(
        shard.connectorx_url(), catalog_query("mysql"), return_type="arrow"
    )
    rows = zip(*(column.to_pylist() for column in catalog.columns), strict=True)
    return physical_tables(rows, logical_tables)


def discover(conn: sa.Connection, logical_tables: Sequence[str]) -> Discovery:
    """Every client table of the logical tables, through SQLAlchemy: one catalog query."""
    rows = conn.exec_driver_sql(catalog_query(conn.dialect.name))
    return physical_tables(rows, logical_tables)  # type: ignore[arg-type]


def physical_tables(rows: Iterable[CatalogRow], logical_tables: Sequence[str]) -> Discovery:
    """Client tables of the logical tables from catalog rows, named as the module doc says."""
    for name in logical_tables:
        validate_identifier(name, what="logical table")
    alternatives = "|".join(map(re.escape, logical_tables))
    pattern = re.compile(rf"^({alternatives})_(\d+)$", re.IGNORECASE)
    prefixes = tuple(f"{name.lower()}_" for name in logical_tables)
    columns: dict[str, list[tuple[str, str]]] = defaultdict(list)
    keys: dict[str, list[str]] = defaultdict(list)
    ignored: dict[str, str] = {}
    for table, column, data_type, is_key in rows:
        if pattern.fullmatch(table):
            columns[table].append((column, (data_type or "").lower()))
            if is_key:
                keys[table].append(column)
        elif table.lower().startswith(prefixes):
            ignored[table] = "not named <logical table>_<client id>"
    owner: dict[tuple[str, str], str] = {}
    found = []
    for table, table_columns in columns.items():
        match = pattern.fullmatch(table)
        assert match is not None
        logical = next(name for name in logical_tables if name.lower() == match[1].lower())
        client = str(int(match[2]))
        if (logical, client) in owner:
            first, second = sorted((owner[logical, client], table))
            raise SchemaDriftError(
                f"tables {first} and {second} are both client {client}'s {logical}: rename or "
                "drop one of them on the shard"
            )
        owner[logical, client] = table
        found.append(_physical_table(logical, client, table, table_columns, keys[table]))
    found.sort(key=lambda t: (t.logical, int(t.client_id)))
    return Discovery(found, ignored)


def _physical_table(
    logical: str, client: str, table: str, source_columns: list[tuple[str, str]], keys: list[str]
) -> PhysicalTable:
    names = [lake_column_name(source) for source, _ in source_columns]
    seen: dict[str, str] = {}
    for (source, _), name in zip(source_columns, names, strict=True):
        if name in seen:
            raise SchemaDriftError(
                f"table {table}: columns {seen[name]!r} and {source!r} would both be lake column "
                f"{name!r}; rename one of them on the shard"
            )
        seen[name] = source
    sources = tuple(source for source, _ in source_columns)
    return PhysicalTable(
        logical,
        client,
        table,
        tuple((name, declared) for name, (_, declared) in zip(names, source_columns, strict=True)),
        tuple(lake_column_name(key) for key in keys),
        sources if sources != tuple(names) else (),
    )


def check_drift(shard: str, tables: Iterable[PhysicalTable]) -> dict[str, object]:
    """Describe column drift across client tables; raise if two types cannot be unioned.

    Columns missing from some tables are fine (their rows read NULL); a type may widen between
    clients within what `mysql_types.unionable` allows (INT -> BIGINT, VARCHAR(50) -> TEXT).
    """
    first_seen: dict[str, tuple[str, str]] = {}  # column -> (table, declared type)
    present: dict[str, int] = defaultdict(int)
    widened: set[str] = set()
    count = 0
    for table in tables:
        count += 1
        for column, declared in table.columns:
            present[column] += 1
            if column not in first_seen:
                first_seen[column] = (table.name, declared)
                continue
            other_table, other_type = first_seen[column]
            if declared == other_type:
                continue
            if not unionable(declared, other_type):
                raise SchemaDriftError(
                    f"shard {shard}: column {column!r} is {other_type} in {other_table} but "
                    f"{declared} in {table.name}; these types cannot be unioned"
                )
            widened.add(column)
    return {
        "tables": count,
        "columns_missing_in_some_tables": {
            column: count - n for column, n in sorted(present.items()) if n < count
        },
        "columns_with_widened_types": sorted(widened),
    }
