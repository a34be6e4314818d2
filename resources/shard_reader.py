"""Batched reads of many small client tables: one round trip per batch, Arrow all the way.

Each batch is a `UNION ALL` of up to `batch_size` same-layout client tables, every column cast
to text on the server (the lake keeps the source's text; types are decided in `cleansing`), so
connectorx hands MySQL results back as Arrow string columns without any per-row Python. Batches
run on a few connections at once; a batch that fails is retried with backoff, then named in the
error.
"""

import contextlib
import datetime as dt
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from resources.identifiers import validate_identifier
from resources.shard_catalog import PhysicalTable, type_family

# SQLite refuses compound SELECTs of more than 500 terms; MySQL gains nothing past ~1000
# (measured: K = 50..1000 is flat, 5000 is 2x slower).
DEFAULT_BATCH_SIZE = 200
RETRY_DELAYS_S = (0.5, 2.0)


class ShardReadError(RuntimeError):
    """A batch of client tables could not be read, even after retries."""


def connectorx_url(url: sa.URL) -> str:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{url.database}"
    if backend in {"mysql", "mariadb"}:
        auth = quote(url.username or "", safe="")
        if url.password:
            auth += ":" + quote(str(url.password), safe="")
        return f"mysql://{auth}@{url.host or '127.0.0.1'}:{url.port or 3306}/{url.database}"
    raise ValueError(f"no batched reader for {backend} shards")


def wall_clock_bounds(timezone: str, start: dt.datetime, end: dt.datetime) -> tuple[str, str]:
    """[start, end) as the naive wall-clock text a shard in `timezone` stores."""
    zone = ZoneInfo(timezone)
    return (
        start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        end.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
    )


def _dialect_names(dialect: str) -> tuple[Callable[[str], str], str]:
    if dialect == "sqlite":
        return (lambda name: f'"{name}"'), "TEXT"
    return (lambda name: f"`{name}`"), "CHAR"


def _window(quote_name: Callable[[str], str], change_column: str, low: str, high: str) -> str:
    column = quote_name(validate_identifier(change_column, what="column"))
    return f"{column} >= '{low}' AND {column} < '{high}'"


def union_query(
    tables: Sequence[PhysicalTable], change_column: str, low: str, high: str, dialect: str
) -> str:
    """One SELECT over same-layout tables: origin columns, then every column as text."""
    quote_name, text_type = _dialect_names(dialect)
    window = _window(quote_name, change_column, low, high)
    parts = []
    for table in tables:
        validate_identifier(table.name, what="table")
        casts = ", ".join(
            f"CAST({quote_name(validate_identifier(c))} AS {text_type}) AS {quote_name(c)}"
            for c in table.column_names
        )
        parts.append(
            f"SELECT '{int(table.client_id)}' AS _client_id, '{table.name}' AS _source_table, "
            f"{casts} FROM {quote_name(table.name)} WHERE {window}"
        )
    return "\nUNION ALL\n".join(parts)


def count_query(
    tables: Sequence[PhysicalTable], change_column: str, low: str, high: str, dialect: str
) -> str:
    """The source's own count of the same rows: what reconciliation compares the load with."""
    quote_name, _ = _dialect_names(dialect)
    window = _window(quote_name, change_column, low, high)
    counts = "\nUNION ALL\n".join(
        f"SELECT COUNT(*) AS n FROM {quote_name(validate_identifier(t.name, what='table'))} "
        f"WHERE {window}"
        for t in tables
    )
    return (
        f"SELECT CAST(SUM(n) AS {_dialect_names(dialect)[1]}) AS source_rows FROM ({counts}) AS c"
    )


def batches(tables: Sequence[PhysicalTable], size: int) -> list[list[PhysicalTable]]:
    """Same-layout tables together (a UNION needs one column list), `size` at most."""
    by_layout: dict[tuple[str, ...], list[PhysicalTable]] = defaultdict(list)
    for table in tables:
        by_layout[table.column_names].append(table)
    return [group[i : i + size] for group in by_layout.values() for i in range(0, len(group), size)]


def _fetch_mysql(source: str, query: str) -> pa.Table:
    import connectorx

    return connectorx.read_sql(source, query, return_type="arrow")


def _fetch_sqlite(path: str, query: str) -> pa.Table:
    """Every column as text, like the MySQL path."""
    # connectorx cannot type an expression column whose first value is NULL in SQLite, so the
    # embedded default reads through the standard library; SQLite shards are demo-sized.
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        cursor = conn.execute(query)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return pa.table(
        {
            name: pa.array([None if r[i] is None else str(r[i]) for r in rows], pa.string())
            for i, name in enumerate(names)
        }
    )


_ZERO_FRACTION = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\.0+$"


def _temporal_columns(table: PhysicalTable) -> list[str]:
    return [name for name, declared in table.columns if type_family(declared) == "temporal"]


def _drop_zero_fractions(data: pa.Table, columns: Sequence[str]) -> pa.Table:
    """`10:00:00.000000` -> `10:00:00`: MySQL renders DATETIME(n) with n zeros; they carry no
    information, and one spelling per instant keeps checksums and diffs stable across shards."""
    for name in columns:
        index = data.schema.get_field_index(name)
        cleaned = pc.replace_substring_regex(data[name], _ZERO_FRACTION, r"\1")
        data = data.set_column(index, name, cleaned)
    return data


@dataclass(frozen=True)
class Batch:
    data: pa.Table
    source_rows: int  # counted by the source itself, independently of the rows received


def _fetch(url: sa.URL, query: str) -> pa.Table:
    if url.get_backend_name() == "sqlite":
        return _fetch_sqlite(str(url.database), query)
    data = _fetch_mysql(connectorx_url(url), query)
    # Text columns only: a batch whose rows are all NULL in some column must still be text,
    # not Arrow's null type.
    return data.cast(pa.schema([(name, pa.string()) for name in data.column_names]))


def _read_batch(url: sa.URL, queries: tuple[str, str], tables: Sequence[PhysicalTable]) -> Batch:
    rows_query, count = queries
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
        try:
            data = _drop_zero_fractions(_fetch(url, rows_query), _temporal_columns(tables[0]))
            counted = _fetch(url, count)["source_rows"][0].as_py()
            return Batch(data, int(counted or 0))
        except Exception as exc:  # connectorx raises RuntimeError/PanicException alike
            if delay is None:
                names = ", ".join(t.name for t in tables[:5])
                more = f" and {len(tables) - 5} more" if len(tables) > 5 else ""
                raise ShardReadError(
                    f"reading {names}{more} failed after {attempt + 1} attempts: {exc}"
                ) from exc
            time.sleep(delay)
    raise AssertionError("unreachable")


def read_windows(
    url: sa.URL,
    timezone: str,
    tables: Sequence[PhysicalTable],
    change_column: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    connections: int = 2,
) -> Iterator[Batch]:
    """Rows of every table whose `change_column` lies in [start, end), batch by batch."""
    low, high = wall_clock_bounds(timezone, start, end)
    dialect = "sqlite" if url.get_backend_name() == "sqlite" else "mysql"
    jobs = [
        (
            (
                union_query(batch, change_column, low, high, dialect),
                count_query(batch, change_column, low, high, dialect),
            ),
            batch,
        )
        for batch in batches(tables, batch_size)
    ]
    # More than 2 connections does not help on 2 cores: client and server share them.
    with ThreadPoolExecutor(max_workers=connections) as pool:
        yield from pool.map(lambda job: _read_batch(url, *job), jobs)
