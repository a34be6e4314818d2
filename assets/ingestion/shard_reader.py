"""Streaming reads of many client tables: few round trips, bounded memory, Arrow all the way.

A window's tables are read in batch statements (`shard_batches`, `shard_sql`), streamed in
chunks of at most `chunk_rows` rows, so memory stays flat for any table size.

Batches run on a few connections at once. A batch that fails (a dropped connection, a server
restart, a lock timeout) is retried with backoff; rows it had already produced are announced
as taken back (`BatchRestart`) before the retry. A batch that still fails is named in the error.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from assets.ingestion.checksums import CHECKSUM_MODULUS, integer_keys
from assets.ingestion.shard_batches import (
    DEFAULT_BATCH_SIZE,
    BatchDone,
    BatchQuery,
    BatchRestart,
    Chunk,
    ReadEvent,
    plan_batches,
)
from assets.ingestion.shard_catalog import PhysicalTable
from assets.ingestion.shard_clock import session_time_zone, wall_clock_bounds
from assets.ingestion.shard_errors import PermanentShardError, permanent_reason
from assets.ingestion.shard_sql import SOURCE_KEY_SUM, SOURCE_ROWS, ReadWindow
from assets.ingestion.shard_streams import normalize, stream_mysql, stream_sqlite
from resources.shards import ShardConnection

DEFAULT_CHUNK_ROWS = 100_000
RETRY_DELAYS_S = (0.5, 2.0, 8.0)
# A reader blocked by a metadata lock (an ALTER TABLE, a LOCK TABLES) gives up after this long
# and is retried, instead of waiting for MySQL's default of a year.
LOCK_WAIT_TIMEOUT_S = 60


class ShardReadError(RuntimeError):
    """A batch of client tables could not be read, even after retries."""


def _stream(
    shard: ShardConnection, sql: str, chunk_rows: int, timezone: str, year: int
) -> Iterator[pa.Table]:
    if shard.dialect == "sqlite":
        return stream_sqlite(str(shard.url.database), sql, chunk_rows)
    return stream_mysql(
        shard.connectorx_url(),
        sql,
        chunk_rows,
        time_zone=session_time_zone(timezone, year),
        lock_wait_timeout_s=LOCK_WAIT_TIMEOUT_S,
    )


def _read_batch(
    shard: ShardConnection, batch: BatchQuery, chunk_rows: int, timezone: str, year: int
) -> Iterator[ReadEvent]:
    """One batch, retried with backoff; the last failure is raised."""
    for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
        produced = False
        try:
            summary: tuple[int, int] | None = None
            for raw in _stream(shard, batch.sql, chunk_rows, timezone, year):
                if not raw.num_rows:
                    continue
                summary = _batch_summary(raw, summary)
                data = raw.drop_columns([SOURCE_ROWS, SOURCE_KEY_SUM])
                if data["_source_table"].null_count:  # the batch's marker row
                    data = data.filter(pc.is_valid(data["_source_table"]))
                if not data.num_rows:
                    continue
                produced = True
                yield Chunk(batch, normalize(data, batch.tables))
            if summary is None:
                raise ShardReadError("no row and no summary arrived: the result was cut short")
            yield BatchDone(batch, summary[0], summary[1] % CHECKSUM_MODULUS)
            return
        except BaseException as exc:  # connectorx panics are BaseExceptions
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            reason = permanent_reason(exc)
            if reason is not None:
                raise PermanentShardError(f"reading {batch.describe()}: {reason} ({exc})") from exc
            if delay is None:
                raise ShardReadError(
                    f"reading {batch.describe()} failed after {attempt} attempts: {exc}"
                ) from exc
            if produced:
                yield BatchRestart(batch, attempt, str(exc))
            time.sleep(delay)


def _batch_summary(raw: pa.Table, seen: tuple[int, int] | None) -> tuple[int, int]:
    """The server's (count, key sum) of the batch, which every row carries alike."""
    counts, sums = pc.unique(raw[SOURCE_ROWS]), pc.unique(raw[SOURCE_KEY_SUM])
    # SUM of integers renders without a fraction (DECIMAL(n,0) on MySQL).
    summary = (int(counts[0].as_py()), int(sums[0].as_py()))
    if len(counts) != 1 or len(sums) != 1 or seen not in (None, summary):
        raise ShardReadError(f"the batch's summary changed while it was read: {seen}, {summary}")
    return summary


_DONE = object()


def read_windows(
    shard: ShardConnection,
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
    """Rows of `tables` whose `change_column` lies in [start, end), streamed as events.

    `start`/`end` are aware instants; the shard stores naive wall-clock values in its own
    timezone, so the bounds are converted to that zone before they reach the query.
    `start=None` reads everything before `end`. At most `2 * connections` chunks wait in
    memory at any time: readers block until the consumer (the lake write) catches up.
    """
    chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS
    # Asked here, on the caller's thread: the reader threads never touch the shard's
    # SQLAlchemy connection, they open their own.
    timezone = shard.timezone
    low, high = wall_clock_bounds(timezone, start, end)
    keys = tuple(key_columns)
    read = ReadWindow(change_column, low, high, shard.dialect, keys, integer_keys(tables, keys))
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
                for event in _read_batch(shard, batch, chunk_rows, timezone, end.year):
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
