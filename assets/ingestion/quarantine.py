"""Row validation at ingestion: rows that cannot be loaded go to `lake.quarantine`, with why.

Nothing is dropped silently: every extracted row is either loaded or quarantined, and the
counts reconcile (`source_rows == loaded_rows + quarantined_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

QUARANTINE_TABLE = "quarantine"
QUARANTINE_PARTITION_COLUMNS = ("logical_table", "_business_day", "_shard")

# Accepted stored formats: `YYYY-MM-DD HH:MM:SS`, optionally with fractional seconds.
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Split:
    loaded: pa.Table
    quarantined: pa.Table  # one row per (bad row, problem)
    quarantined_rows: int  # distinct bad rows


def _unparseable_datetime(column: pa.ChunkedArray) -> pa.ChunkedArray:
    head = pc.utf8_slice_codeunits(column, 0, 19)
    parsed = pc.strptime(head, format=_DATETIME_FORMAT, unit="s", error_is_null=True)
    return pc.and_(pc.is_valid(column), pc.is_null(parsed))


def split_valid_rows(
    data: pa.Table,
    *,
    logical_table: str,
    primary_key: Sequence[str],
    datetime_columns: Sequence[str],
) -> Split:
    """Separate loadable rows from rows with a NULL key or an unparseable datetime."""
    if data.num_rows == 0:
        return Split(data, QUARANTINE_SCHEMA.empty_table(), 0)
    problems: list[tuple[str, str, pa.ChunkedArray]] = []
    for column in primary_key:
        problems.append((column, "NULL primary key", pc.is_null(data[column])))
    for column in datetime_columns:
        problems.append((column, "unparseable datetime", _unparseable_datetime(data[column])))
    bad = pa.chunked_array([pa.array([False] * data.num_rows, pa.bool_())])
    for _, _, mask in problems:
        bad = pc.or_(bad, mask)
    records = []
    for column, reason, mask in problems:
        for row in data.filter(mask).to_pylist():
            records.append(
                {
                    "logical_table": logical_table,
                    "_business_day": row["_business_day"],
                    "_shard": row["_shard"],
                    "_source_table": row["_source_table"],
                    "_client_id": row["_client_id"],
                    "primary_key": "|".join(str(row[k]) for k in primary_key),
                    "column_name": column,
                    "reason": f"{reason}: {row[column]!r}",
                    "raw_row": json.dumps(row, ensure_ascii=False, default=str),
                    "_loaded_at": row["_loaded_at"],
                }
            )
    return Split(
        loaded=data.filter(pc.invert(bad)),
        quarantined=pa.Table.from_pylist(records, schema=QUARANTINE_SCHEMA),
        quarantined_rows=int(pc.sum(bad).as_py() or 0),
    )


QUARANTINE_SCHEMA = pa.schema(
    [
        ("logical_table", pa.string()),
        ("_business_day", pa.date32()),
        ("_shard", pa.string()),
        ("_source_table", pa.string()),
        ("_client_id", pa.string()),
        ("primary_key", pa.string()),
        ("column_name", pa.string()),
        ("reason", pa.string()),
        ("raw_row", pa.string()),
        ("_loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)
