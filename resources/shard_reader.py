"""Streaming reads of many client tables: few round trips, bounded memory, Arrow all the way.

Client tables of one layout are read together: each batch query is a `UNION ALL` of up to
`batch_size` tables, every column rendered as text by the server (the lake keeps the source's
text; types are decided in `cleansing`), except binary columns, which arrive as bytes so that
invalid UTF-8 can be quarantined instead of silently replaced. Results stream in chunks of at
most `chunk_rows` rows, so memory stays flat for any table size.

Each table also contributes one summary row, computed by the server in the same statement: its
own `COUNT(*)` and a key checksum of the rows in the window. Reconciliation compares them with
what was loaded, so a driver or network that loses rows cannot go unnoticed, and a summary row
is produced even for a table with no rows in the window.

Batches run on a few connections at once. A batch that fails (a dropped connection, a server
restart, a lock timeout) is retried with backoff; rows it had already produced are announced
as taken back (`BatchRestart`) before the retry. A batch that still fails is named in the error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import sqlite3
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from resources.identifiers import validate_identifier
from resources.shard_catalog import PhysicalTable, type_family

# SQLite refuses compound SELECTs of more than 500 terms (a table is two terms here); MySQL
# gains nothing past ~200 tables per statement (measured: 50..1000 is flat, 5000 is 2x slower).
DEFAULT_BATCH_SIZE = 200
DEFAULT_CHUNK_ROWS = 100_000
RETRY_DELAYS_S = (0.5, 2.0, 8.0)
# A reader blocked by a metadata lock (an ALTER TABLE, a LOCK TABLES) gives up after this long
# and is retried, instead of waiting for MySQL's default of a year.
LOCK_WAIT_TIMEOUT_S = 60
SOURCE_ROWS = "_source_rows"
SOURCE_KEY_SUM = "_source_key_sum"
CHECKSUM_MODULUS = 2**64


class ShardReadError(RuntimeError):
    """A batch of client tables could not be read, even after retries."""


def connectorx_url(url: sa.URL) -> str:
    backend = url.get_backend_name()
    if backend in {"mysql", "mariadb"}:
        auth = quote(url.username or "", safe="")
        if url.password:
            auth += ":" + quote(str(url.password), safe="")
        return f"mysql://{auth}@{url.host or '127.0.0.1'}:{url.port or 3306}/{url.database}"
    raise ValueError(f"no batched reader for {backend} shards")


def wall_clock_bounds(
    timezone: str, start: dt.datetime | None, end: dt.datetime
) -> tuple[str | None, str]:
    """[start, end) as the naive wall-clock text a shard in `timezone` stores."""
    zone = ZoneInfo(timezone)
    low = None if start is None else start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return low, end.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def session_time_zone(timezone: str, year: int) -> str:
    """What `SET time_zone` should say so TIMESTAMP columns render in the shard's zone.

    A fixed offset needs no time-zone tables on the server; only zones with daylight saving
    time are passed by name (the server then needs its zone tables loaded).
    """
    zone = ZoneInfo(timezone)
    offsets = {dt.datetime(year, month, 1, tzinfo=zone).utcoffset() for month in (1, 7)}
    if len(offsets) > 1:
        return timezone
    minutes = int(next(iter(offsets)).total_seconds() // 60)  # type: ignore[union-attr]
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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


def _is_integer_key(tables: Sequence[PhysicalTable], column: str) -> bool:
    return all(type_family(t.declared_type(column) or "") == "integer" for t in tables)


def integer_keys(tables: Sequence[PhysicalTable], key_columns: Sequence[str]) -> tuple[bool, ...]:
    """Per key column: summed as a number (integer keys) or as CRC32s (any other key)."""
    return tuple(_is_integer_key(tables, column) for column in key_columns)


def _key_sum_expression(
    dialect: _Dialect, tables: Sequence[PhysicalTable], key_columns: Sequence[str]
) -> str:
    """The server side of the key checksum: see `key_checksum` for the client side."""
    terms = []
    for column in key_columns:
        quoted = dialect.quote(validate_identifier(column, what="key column"))
        if _is_integer_key(tables, column):
            terms.append(f"COALESCE(SUM({quoted}), 0)")
        elif dialect.name == "mysql":
            terms.append(f"COALESCE(SUM(CRC32({quoted})), 0)")
        else:
            terms.append(f"COALESCE(SUM(crc32({quoted})), 0)")
    return " + ".join(terms) or "0"


def key_checksum(data: pa.Table, key_columns: Sequence[str], integer_keys: Sequence[bool]) -> int:
    """Sum over rows of the key values (integer keys) or their CRC32 (other keys), mod 2**64.

    Order-independent and computed by the server from the index alone, it shows that the
    rows loaded are the rows the source holds: a lost row, a duplicated one or a substituted
    key changes it even where the count stays the same.
    """
    total = 0
    for column, is_integer in zip(key_columns, integer_keys, strict=True):
        values = data[column]
        if is_integer:
            present = pc.drop_null(values)  # SUM skips NULLs
            try:
                numbers = pc.cast(present, pa.int64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # Beyond int64 (BIGINT UNSIGNED) or not a number: exact, value by value.
                total += sum(int(v) for v in present.to_pylist())
                continue
            # Two's complement wraps like arithmetic mod 2**64, which is what is compared.
            total += int(numbers.view(np.uint64).sum(dtype=np.uint64))
        else:
            total += sum(_crc32(v) or 0 for v in values.to_pylist())
    return total % CHECKSUM_MODULUS


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
class BatchQuery:
    """One statement reading a group of same-layout client tables for one window."""

    number: int
    tables: tuple[PhysicalTable, ...]
    window: ReadWindow
    # Tables without a primary key on the logical key may hold duplicates: their rows come
    # ordered by (table, key, newest change first), so duplicates arrive next to each other.
    ordered: bool

    @property
    def sql(self) -> str:
        # Built when the batch is read, not when it is planned: a shard of 120,000 tables
        # would otherwise hold ~100 MB of SQL text for the whole run.
        return union_query(self.tables, self.window, ordered=self.ordered)

    def describe(self) -> str:
        names = ", ".join(t.name for t in self.tables[:5])
        more = f" and {len(self.tables) - 5} more" if len(self.tables) > 5 else ""
        return names + more


# MySQL text the driver decodes without fail, exactly as stored: read natively (a CAST would
# cost the server a conversion per value). Everything else is rendered by the server: a zero
# date, a DECIMAL(65) or a BIGINT UNSIGNED (a DECIMAL once in a UNION) cannot break the driver.
_NATIVE_MYSQL_TYPES = frozenset(("char", "varchar", "tinytext", "text", "mediumtext", "longtext"))


def _select_list(dialect: _Dialect, table: PhysicalTable) -> str:
    columns = []
    for name, declared in table.columns:
        quoted = dialect.quote(validate_identifier(name))
        if type_family(declared) == "binary":
            columns.append(f"{quoted} AS {quoted}")  # bytes: UTF-8 is checked at ingestion
        elif dialect.name == "mysql" and declared.split("(")[0].strip() in _NATIVE_MYSQL_TYPES:
            columns.append(f"{quoted} AS {quoted}")
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


def plan_batches(
    tables: Sequence[PhysicalTable], read: ReadWindow, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[BatchQuery]:
    """Same-layout tables together (a UNION needs one column list), `batch_size` at most."""
    groups: dict[tuple[object, ...], list[PhysicalTable]] = defaultdict(list)
    for table in tables:
        keyed = bool(table.primary_key) and set(table.primary_key) <= set(read.key_columns)
        groups[(table.columns, keyed)].append(table)
    plan = []
    for (_, keyed), group in groups.items():
        for i in range(0, len(group), batch_size):
            batch = tuple(group[i : i + batch_size])
            plan.append(BatchQuery(len(plan), batch, read, ordered=not keyed))
    return plan


@dataclass(frozen=True)
class Chunk:
    """Up to `chunk_rows` rows of a batch: text columns (binary where the source is binary)
    plus `_client_id` and `_source_table`."""

    batch: BatchQuery
    data: pa.Table


@dataclass(frozen=True)
class BatchDone:
    """Every row of the batch has been produced; the source's own count and key checksum."""

    batch: BatchQuery
    source_rows: int
    source_key_sum: int


@dataclass(frozen=True)
class BatchRestart:
    """The batch failed part-way and is read again: rows produced for it must be dropped."""

    batch: BatchQuery
    attempt: int
    error: str


ReadEvent = Chunk | BatchDone | BatchRestart

_ZERO_FRACTION = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\.0+$"


def _normalize(data: pa.Table, tables: Sequence[PhysicalTable]) -> pa.Table:
    """Text or bytes per column, one spelling per instant.

    `10:00:00.000000` -> `10:00:00`: MySQL renders DATETIME(n) with n zeros; they carry no
    information, and one spelling per instant keeps diffs stable across shards.
    """
    temporal = {n for n, declared in tables[0].columns if type_family(declared) == "temporal"}
    columns = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        if pa.types.is_null(column.type) or not (
            pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
        ):
            column = column.cast(pa.string())
        else:
            column = column.cast(pa.binary())
        # A plain substring scan first: DATETIME(0) values never carry a fraction.
        if (
            name in temporal
            and pa.types.is_string(column.type)
            and pc.any(pc.match_substring(column, ".")).as_py()
        ):
            column = pc.replace_substring_regex(column, _ZERO_FRACTION, r"\1")
        columns.append(column)
    return pa.table(columns, names=data.column_names)


def _stream_mysql(url: sa.URL, sql: str, chunk_rows: int, zone: str) -> Iterator[pa.Table]:
    import connectorx

    reader = connectorx.read_sql(
        connectorx_url(url),
        sql,
        return_type="arrow_stream",
        batch_size=chunk_rows,
        pre_execution_query=[
            f"SET time_zone = '{zone}'",
            f"SET SESSION lock_wait_timeout = {int(LOCK_WAIT_TIMEOUT_S)}",
        ],
    )
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _crc32(value: object) -> int | None:
    if value is None:
        return None
    return zlib.crc32(value if isinstance(value, bytes) else str(value).encode())


def _stream_sqlite(path: str, sql: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Bytes from SQLite (which stores whatever it was given, valid UTF-8 or not)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.text_factory = bytes
        conn.create_function("crc32", 1, _crc32, deterministic=True)
        cursor = conn.execute(sql)
        names = [d[0] for d in cursor.description]
        while rows := cursor.fetchmany(chunk_rows):
            yield pa.table(
                {name: _sqlite_column([r[i] for r in rows]) for i, name in enumerate(names)}
            )


def _sqlite_column(values: list[object]) -> pa.Array:
    """Text if every value is valid UTF-8, else bytes (quarantined value by value later)."""
    try:
        return pa.array(
            [v.decode() if isinstance(v, bytes) else None if v is None else str(v) for v in values],
            pa.string(),
        )
    except UnicodeDecodeError:
        return pa.array(
            [v if isinstance(v, bytes) or v is None else str(v).encode() for v in values],
            pa.binary(),
        )


def _stream(url: sa.URL, sql: str, chunk_rows: int, timezone: str, year: int) -> Iterator[pa.Table]:
    if url.get_backend_name() == "sqlite":
        return _stream_sqlite(str(url.database), sql, chunk_rows)
    return _stream_mysql(url, sql, chunk_rows, session_time_zone(timezone, year))


def _read_batch(
    url: sa.URL, batch: BatchQuery, chunk_rows: int, timezone: str, year: int
) -> Iterator[ReadEvent]:
    """One batch, retried with backoff; the last failure is raised."""
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
        produced = False
        try:
            source_rows = source_key_sum = summaries = 0
            for raw in _stream(url, batch.sql, chunk_rows, timezone, year):
                data = raw
                if raw[SOURCE_ROWS].null_count < raw.num_rows:  # the chunk holds summary rows
                    is_summary = pc.is_valid(raw[SOURCE_ROWS])
                    summary = raw.filter(is_summary)
                    summaries += summary.num_rows
                    for rows, key_sum in zip(
                        summary[SOURCE_ROWS].to_pylist(),
                        summary[SOURCE_KEY_SUM].to_pylist(),
                        strict=True,
                    ):
                        source_rows += int(rows)
                        # SUM of integers renders without a fraction (DECIMAL(n,0) on MySQL).
                        source_key_sum += int(key_sum or 0)
                    data = raw.filter(pc.invert(is_summary))
                data = data.drop_columns([SOURCE_ROWS, SOURCE_KEY_SUM])
                if data.num_rows:
                    produced = True
                    yield Chunk(batch, _normalize(data, batch.tables))
            if summaries != len(batch.tables):
                raise ShardReadError(
                    f"expected a summary row from each of {len(batch.tables)} tables, "
                    f"got {summaries}: the result was cut short"
                )
            yield BatchDone(batch, source_rows, source_key_sum % CHECKSUM_MODULUS)
            return
        except BaseException as exc:  # connectorx panics are BaseExceptions
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            if delay is None:
                raise ShardReadError(
                    f"reading {batch.describe()} failed after {attempt} attempts: {exc}"
                ) from exc
            if produced:
                yield BatchRestart(batch, attempt, str(exc))
            time.sleep(delay)


_DONE = object()


def read_windows(
    url: sa.URL,
    timezone: str,
    tables: Sequence[PhysicalTable],
    change_column: str,
    start: dt.datetime | None,
    end: dt.datetime,
    key_columns: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_rows: int | None = None,
    connections: int = 2,
) -> Iterator[ReadEvent]:
    """Rows of every table whose `change_column` lies in [start, end), as events.

    `start=None` reads everything before `end`. At most `2 * connections` chunks wait in
    memory at any time: readers block until the consumer (the lake write) catches up.
    """
    chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS
    low, high = wall_clock_bounds(timezone, start, end)
    dialect = "sqlite" if url.get_backend_name() == "sqlite" else "mysql"
    read = ReadWindow(change_column, low, high, dialect, tuple(key_columns))
    plan = plan_batches(tables, read, batch_size)
    pending = iter(plan)
    lock = threading.Lock()
    events: queue.Queue[object] = queue.Queue(maxsize=2 * connections)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                events.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                with lock:
                    batch = next(pending, None)
                if batch is None:
                    break
                for event in _read_batch(url, batch, chunk_rows, timezone, end.year):
                    if not put(event):
                        return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            put(_DONE)

    # More than 2 connections does not help on 2 cores: client and server share them.
    workers = [
        threading.Thread(target=work, daemon=True) for _ in range(min(connections, len(plan)))
    ]
    for worker in workers:
        worker.start()
    try:
        finished = 0
        while finished < len(workers):
            item = events.get()
            if item is _DONE:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
