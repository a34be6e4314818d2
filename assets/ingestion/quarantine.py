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


@dataclass(frozen=True)
class Split:
    loaded: pa.Table
    quarantined: pa.Table  # one row per (bad row, problem)
    quarantined_rows: int  # distinct bad rows


_PATTERNS = {
    "datetime": (r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", "%Y-%m-%d %H:%M:%S", 19),
    "date": (r"^\d{4}-\d{2}-\d{2}$", "%Y-%m-%d", 10),
}


def _problem_mask(column: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    """True where the value is present but cannot become the declared type."""
    if kind == "not_null":
        return pc.is_null(column)
    if kind == "integer":
        integer = pc.fill_null(pc.match_substring_regex(column, r"^-?\d+$"), True)
        return pc.invert(integer)
    pattern, fmt, width = _PATTERNS[kind]
    head = pc.replace_substring(pc.utf8_slice_codeunits(column, 0, width), "T", " ")
    parsed = pc.strptime(head, format=fmt, unit="s", error_is_null=True)
    # strptime normalises impossible dates (02-30 becomes 03-02): a value is valid only if it
    # survives the round trip unchanged.
    round_trip = pc.strftime(parsed, format=fmt)
    good = pc.and_(pc.match_substring_regex(column, pattern), pc.equal(round_trip, head))
    return pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(good, False)))


_REASONS = {
    "not_null": "NULL primary key",
    "integer": "not an integer",
    "datetime": "unparseable datetime",
    "date": "unparseable date",
}


def split_valid_rows(
    data: pa.Table,
    *,
    logical_table: str,
    key_columns: Sequence[str],
    checks: Sequence[tuple[str, str]],
) -> Split:
    """Separate loadable rows from rows failing a check.

    `checks` are (column, kind) pairs, kind one of not_null, integer, datetime, date. The
    table must carry the lake's origin columns (`_business_day`, `_source_table`, ...).
    """
    if data.num_rows == 0:
        return Split(data, QUARANTINE_SCHEMA.empty_table(), 0)
    masks = [(column, kind, _problem_mask(data[column], kind)) for column, kind in checks]
    bad = pa.chunked_array([pa.array([False] * data.num_rows, pa.bool_())])
    records = []
    for column, kind, mask in masks:
        bad = pc.or_(bad, mask)
        for row in data.filter(mask).to_pylist():
            records.append(
                {
                    "logical_table": logical_table,
                    "_business_day": row["_business_day"],
                    "_shard": row.get("_shard"),
                    "_source_table": row["_source_table"],
                    "_client_id": row.get("_client_id"),
                    # JSON keeps a NULL key distinct from the text "None".
                    "primary_key": json.dumps([row[k] for k in key_columns], default=str),
                    "column_name": column,
                    "reason": f"{_REASONS[kind]}: {row[column]!r}",
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
