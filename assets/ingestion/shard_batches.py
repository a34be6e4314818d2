"""How a window's read is cut into batch statements, and the events reading them produces."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from assets.ingestion.shard_catalog import PhysicalTable
from assets.ingestion.shard_sql import ReadWindow, union_query

# SQLite refuses compound SELECTs of more than 500 terms (a table is two terms here); MySQL
# gains nothing past ~200 tables per statement (measured: 50..1000 is flat, 5000 is 2x slower).
DEFAULT_BATCH_SIZE = 200


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


def plan_batches(
    tables: Sequence[PhysicalTable], read: ReadWindow, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[BatchQuery]:
    """Same-layout tables together (a UNION needs one column list), `batch_size` at most."""
    groups: dict[tuple[object, ...], list[PhysicalTable]] = defaultdict(list)
    for table in tables:
        keyed = bool(table.primary_key) and set(table.primary_key) <= set(read.key_columns)
        groups[(table.columns, table.sources, keyed)].append(table)
    plan = []
    for (_, _, keyed), group in groups.items():
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
