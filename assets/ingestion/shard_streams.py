"""The two drivers a batch statement runs on, and the one shape their chunks are given.

MySQL/MariaDB through connectorx as an Arrow stream (no per-row Python); SQLite through
sqlite3. Either way a chunk arrives as text columns, or bytes where the source holds bytes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from assets.ingestion.checksums import crc32
from assets.ingestion.mysql_types import type_family
from assets.ingestion.shard_catalog import PhysicalTable


def stream_mysql(
    url: str, sql: str, chunk_rows: int, *, time_zone: str, lock_wait_timeout_s: int
) -> Iterator[pa.Table]:
    """`url` as connectorx spells it; TIMESTAMPs render in `time_zone` (`SET time_zone`)."""
    import connectorx

    reader = connectorx.read_sql(
        url,
        sql,
        return_type="arrow_stream",
        batch_size=chunk_rows,
        pre_execution_query=[
            f"SET time_zone = '{time_zone}'",
            f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout_s)}",
        ],
    )
    for batch in reader:
        yield pa.Table.from_batches([batch])


def stream_sqlite(path: str, sql: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Bytes from SQLite (which stores whatever it was given, valid UTF-8 or not)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.text_factory = bytes
        conn.create_function("crc32", 1, crc32, deterministic=True)
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


_ZERO_FRACTION = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\.0+$"


def normalize(data: pa.Table, tables: Sequence[PhysicalTable]) -> pa.Table:
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
