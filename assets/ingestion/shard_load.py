"""Loading (business day, shard) partitions of one logical lake table from the shards, streamed.

Per shard: one connection, one catalog query, then the client tables' rows changed in each
business day (by the change column, with an overlap so rows committed late are not missed;
cleansing keeps one copy per version). Chunks are validated, tagged with their origin and
appended to one open warehouse write that replaces exactly the run's partitions of
`lake.<table>`, `lake.quarantine` and `monitoring.ingestion_reconciliation`: all or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.constants import BUSINESS_TIMEZONE, LAKE_SCHEMA, MONITORING_SCHEMA
from assets.ingestion.checksums import integer_keys, key_checksum
from assets.ingestion.lake_tables import LakeTable
from assets.ingestion.mysql_types import row_check
from assets.ingestion.origin import LAKE_DAY_COLUMN, ORIGIN_SCHEMA, with_origin
from assets.ingestion.quarantine import (
    QUARANTINE_PARTITION_COLUMNS,
    QUARANTINE_SCHEMA,
    QUARANTINE_SPLIT_BY,
    QUARANTINE_TABLE,
    split_valid_rows,
)
from assets.ingestion.reconciliation import (
    RECONCILIATION_PARTITION_COLUMNS,
    RECONCILIATION_SPLIT_BY,
    RECONCILIATION_TABLE,
    Tally,
    reconciliation_rows,
)
from assets.ingestion.shard_batches import BatchDone, BatchQuery, BatchRestart, Chunk, ReadEvent
from assets.ingestion.shard_catalog import (
    PhysicalTable,
    SchemaDriftError,
    check_drift,
    discover_shard,
)
from assets.ingestion.shard_errors import PermanentShardError, permanent_reason, safe_url
from assets.ingestion.shard_reader import ShardReadError, read_windows
from assets.partitions import business_days, split_day_shard_key
from resources.shards import ShardConfigError, Shards
from resources.warehouse import PartitionSink, PartitionTarget, PartitionValues, RowScope, Warehouse

LAKE_PARTITION_COLUMNS = (LAKE_DAY_COLUMN, "_shard")
_SCOPE_COLUMNS = ("_business_day", "_shard", "_source_table")


def lake_target(table: str, partitions: Sequence[PartitionValues]) -> PartitionTarget:
    """The (day, shard) partitions of a shard lake table. These tables grow with every client
    table on every shard, so every read must name its days (`require_day_filter`)."""
    return PartitionTarget(
        LAKE_SCHEMA,
        table,
        LAKE_PARTITION_COLUMNS,
        tuple(partitions),
        split_by=("_shard",),
        require_day_filter=True,
    )


def business_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[00:00, 24:00) of a business day in Asia/Tokyo, as aware instants."""
    start = dt.datetime.combine(day, dt.time(0), ZoneInfo(BUSINESS_TIMEZONE))
    return start, start + dt.timedelta(days=1)


def extraction_window(table: LakeTable, day: dt.date) -> tuple[dt.datetime | None, dt.datetime]:
    """The change-time window a day's partition reads: the day plus the overlap before it.

    The first partition has no lower bound: a full backfill then also loads everything older
    than the partitions (the seed's 15 years of history) and rows without a change time.
    """
    start, end = business_day_bounds(day)
    if day <= business_days().start.date():
        return None, end
    return start - table.overlap, end


def partitions_by_shard(keys: Sequence[str]) -> dict[str, list[dt.date]]:
    """Group a run's multi-partition keys (`<day>|<shard>`) by shard."""
    grouped: dict[str, list[dt.date]] = defaultdict(list)
    for key in keys:
        day, shard = split_day_shard_key(key)
        grouped[shard].append(day)
    return {shard: sorted(days) for shard, days in sorted(grouped.items())}


def row_checks(table: LakeTable, layout: PhysicalTable) -> list[tuple[str, str]]:
    """What each row of a client table of this layout must satisfy: the declared key, and the
    checks its own column types call for."""
    checks = [(column, "not_null") for column in table.primary_key]
    checks.append((table.change_column, "required"))
    for name, declared in layout.columns:
        kind = row_check(declared)
        if kind is not None:
            checks.append((name, kind))
    for name in table.datetime_columns:  # declared, for sources that store dates as text
        if (name, "datetime") not in checks:
            checks.append((name, "datetime"))
    return checks


def adjacent_duplicates(
    data: pa.Table, key_columns: Sequence[str], previous: str | None
) -> tuple[pa.Array, str | None]:
    """True for a row whose (table, key) equals the row before it; rows arrive sorted by
    (table, key, newest first), so the newest version of each key is the one kept."""
    parts = [data["_source_table"]]
    parts += [data[k].cast(pa.string(), safe=False) for k in key_columns]
    keys = pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()
    if len(keys) == 0:
        return pa.array([], pa.bool_()), previous
    before = pa.concat_arrays([pa.array([previous], pa.string()), keys.slice(0, len(keys) - 1)])
    return pc.fill_null(pc.equal(keys, before), False), keys[-1].as_py()


def lake_schema(physical: Iterable[PhysicalTable]) -> pa.Schema:
    """Every column any client table has, as text, and the origin columns."""
    columns = dict.fromkeys(name for table in physical for name in table.column_names)
    return pa.schema([(name, pa.string()) for name in columns] + list(ORIGIN_SCHEMA))


@dataclass
class _BatchState:
    tally: Tally = field(default_factory=Tally)
    last_key: str | None = None


class _PartitionLoader:
    """Turns one shard's read events into lake, quarantine and tally updates."""

    def __init__(
        self,
        table: LakeTable,
        shard: str,
        timezone: str,
        physical: Sequence[PhysicalTable],
        sink: PartitionSink,
        targets: tuple[PartitionTarget, PartitionTarget],
        loaded_at: dt.datetime,
        log: Callable[[str], None],
    ) -> None:
        self.table, self.shard, self.timezone = table, shard, timezone
        self.sink = sink
        self.lake, self.quarantine = targets
        self.loaded_at = loaded_at
        self.log = log
        # Per layout: a row is checked against the types its own table declares (one client's
        # `status` may be a TIMESTAMP, another's a DATE; each keeps its own check).
        self.checks: dict[tuple[object, ...], list[tuple[str, str]]] = {}
        self.integer_keys = integer_keys(physical, table.primary_key)
        self.restarts = 0

    def _checks(self, batch: BatchQuery) -> list[tuple[str, str]]:
        layout = batch.tables[0]  # every table of a batch has one layout
        key = (layout.columns, layout.sources)
        if key not in self.checks:
            self.checks[key] = row_checks(self.table, layout)
        return self.checks[key]

    def _scope(self, day: dt.date, batch: BatchQuery) -> RowScope:
        return RowScope(_SCOPE_COLUMNS, tuple((day, self.shard, t.name) for t in batch.tables))

    def load_day(self, day: dt.date, events: Iterator[ReadEvent]) -> Tally:
        tally = Tally()
        batches: dict[int, _BatchState] = {}
        for event in events:
            state = batches.setdefault(event.batch.number, _BatchState())
            if isinstance(event, Chunk):
                self._load_chunk(day, event, state)
            elif isinstance(event, BatchRestart):
                self.sink.discard(self._scope(day, event.batch))
                batches.pop(event.batch.number)
                self.restarts += 1
                self.log(
                    f"shard {self.shard}: re-reading {event.batch.describe()} "
                    f"(attempt {event.attempt} failed: {event.error})"
                )
            elif isinstance(event, BatchDone):
                state.tally.source_rows = event.source_rows
                state.tally.source_key_sum = event.source_key_sum
                state.tally.tables_read = len(event.batch.tables)
                tally.add(batches.pop(event.batch.number).tally)
        return tally

    def _load_chunk(self, day: dt.date, chunk: Chunk, state: _BatchState) -> None:
        data = with_origin(
            chunk.data,
            _business_day=day,
            _shard=self.shard,
            _source_tz=self.timezone,
            _loaded_at=self.loaded_at,
        )
        keys = self.table.primary_key
        # Every received row counts here: it is either loaded or quarantined below.
        state.tally.received_key_sum += key_checksum(data, keys, self.integer_keys)
        duplicates = None
        if chunk.batch.ordered:
            duplicates, state.last_key = adjacent_duplicates(data, keys, state.last_key)
        split = split_valid_rows(
            data,
            logical_table=self.table.name,
            key_columns=keys,
            checks=self._checks(chunk.batch),
            duplicates=duplicates,
        )
        scope = self._scope(day, chunk.batch)
        self.sink.append(self.lake, split.loaded, scope)
        if split.quarantined.num_rows:
            self.sink.append(self.quarantine, split.quarantined, scope)
        state.tally.loaded_rows += split.loaded.num_rows
        state.tally.quarantined_rows += split.quarantined_rows


@dataclass(frozen=True)
class LoadReport:
    partitions: tuple[tuple[dt.date, str], ...]
    tallies: dict[tuple[dt.date, str], Tally]
    reconciliation: pa.Table
    drift: dict[str, Any]
    restarts: int
    discovery: dict[str, dict[str, Any]]  # per shard: tables matched, ignored, renamed

    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies.values():
            total.add(tally)
        return total


@contextlib.contextmanager
def _shard_errors(shards: Shards, shard: str) -> Iterator[None]:
    """Permanent errors fail at once, naming the shard, its URL (no password) and what to do;
    transient ones are left to the retries (per batch, then the step's RetryPolicy)."""
    try:
        yield
    except (ShardConfigError, SchemaDriftError, PermanentShardError) as exc:
        raise dg.Failure(_where(shards, shard, str(exc)), allow_retries=False) from exc
    except sa.exc.DBAPIError as exc:
        reason = permanent_reason(exc)
        if reason is None:
            raise
        message = _where(shards, shard, f"{reason} ({exc.orig})")
        raise dg.Failure(message, allow_retries=False) from exc
    except ShardReadError as exc:
        raise ShardReadError(_where(shards, shard, str(exc))) from exc


def _where(shards: Shards, shard: str, message: str) -> str:
    """`shard <name> (<url without password>): <message>`."""
    try:
        # The template: `${VARS}` stand where passwords are, and it can always be shown.
        url = safe_url(shards.spec(shard).url_template)
    except ShardConfigError:
        url = "not configured"
    return f"shard {shard} ({url}): {message.removeprefix(f'shard {shard}: ')}"


def _require_change_column(table: LakeTable, physical: Sequence[PhysicalTable]) -> None:
    """A table without the change column has no rows in any day's window: refuse to guess."""
    lacking = [t.name for t in physical if t.declared_type(table.change_column) is None]
    if lacking:
        listed = ", ".join(lacking[:10]) + (
            f" and {len(lacking) - 10} more" if len(lacking) > 10 else ""
        )
        raise SchemaDriftError(
            f"{listed} has no column {table.change_column!r}, which selects a day's rows: add "
            "it on the shard, or rename the table so it is not read as a client's "
            f"{table.source_name}"
        )


def load_partitions(
    table: LakeTable,
    shards: Shards,
    warehouse: Warehouse,
    keys: Sequence[str],
    loaded_at: dt.datetime,
    log: Callable[[str], None] = lambda message: None,
) -> LoadReport:
    """Replace the given (day, shard) partitions of `lake.<table>` from the shards."""
    by_shard = partitions_by_shard(keys)
    partitions = tuple((day, shard) for shard, days in by_shard.items() for day in days)
    scoped = tuple((table.name, day, shard) for day, shard in partitions)
    lake = lake_target(table.name, partitions)
    quarantine = PartitionTarget(
        LAKE_SCHEMA, QUARANTINE_TABLE, QUARANTINE_PARTITION_COLUMNS, scoped, QUARANTINE_SPLIT_BY
    )
    reconciliation = PartitionTarget(
        MONITORING_SCHEMA,
        RECONCILIATION_TABLE,
        RECONCILIATION_PARTITION_COLUMNS,
        scoped,
        RECONCILIATION_SPLIT_BY,
    )
    tallies: dict[tuple[dt.date, str], Tally] = {}
    drift: dict[str, Any] = {}
    discovery: dict[str, dict[str, Any]] = {}
    restarts = 0
    with warehouse.partition_sink([lake, quarantine, reconciliation]) as sink:
        # A day without rows must still replace (empty) its partitions: declare the schemas.
        sink.append(quarantine, QUARANTINE_SCHEMA.empty_table())
        for shard, days in by_shard.items():
            with _shard_errors(shards, shard), shards.connect(shard) as conn:
                found = discover_shard(conn, [table.source_name])
                physical = found.tables
                discovery[shard] = found.report()
                log(f"shard {shard}: {_summary(discovery[shard])}")
                if not physical:
                    raise SchemaDriftError(
                        f"no `{table.source_name}_<client_id>` tables found; is the shard URL "
                        "right?"
                    )
                _require_change_column(table, physical)
                drift[shard] = check_drift(shard, physical)
                sink.append(lake, lake_schema(physical).empty_table())
                loader = _PartitionLoader(
                    table, shard, conn.timezone, physical, sink, (lake, quarantine), loaded_at, log
                )
                for day in days:
                    start, end = extraction_window(table, day)
                    events = read_windows(
                        conn, physical, table.change_column, start, end, table.primary_key
                    )
                    tallies[(day, shard)] = loader.load_day(day, events)
                restarts += loader.restarts
        rows = reconciliation_rows(table.name, tallies, partitions, loaded_at)
        sink.append(reconciliation, rows)
    return LoadReport(partitions, tallies, rows, drift, restarts, discovery)


def _summary(report: dict[str, Any]) -> str:
    return (
        f"{report['tables_matched']} table(s) matched, {report['tables_ignored_count']} ignored "
        f"{list(report['tables_ignored'])[:5]}, {report['columns_renamed_count']} column "
        f"name(s) mapped to lake names {report['columns_renamed']}"
    )
