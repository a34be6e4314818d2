"""Row validation at ingestion: rows that cannot be loaded go to `lake.quarantine`, with why.

Nothing is dropped silently: every extracted row is either loaded or quarantined, and the
counts reconcile (`source_rows == loaded_rows + quarantined_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.ingestion.origin import ORIGIN_SCHEMA

QUARANTINE_TABLE = "quarantine"
ORIGIN_COLUMNS = frozenset(ORIGIN_SCHEMA.names)
QUARANTINE_PARTITION_COLUMNS = ("logical_table", "_business_day", "_shard")
# Shard runs of one day quarantine at once, each its own (table, shard): see PartitionTarget.
QUARANTINE_SPLIT_BY = ("logical_table", "_shard")


@dataclass(frozen=True)
class Split:
    loaded: pa.Table
    quarantined: pa.Table  # one row per (bad row, problem)
    quarantined_rows: int  # distinct bad rows


# Calendar-exact patterns (RE2, vectorised): month/day combinations that exist, Feb 29 only in
# leap years, year 0000 never (MySQL's zero date `0000-00-00` is not a day).
_YEAR = r"(?:[1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])"
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"  # every month has days 01..28
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"  # all but February have 29 and 30
    r"|(?:0[13578]|1[02])-31)"  # seven months have a 31st
)
_LEAP_DAY = r"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29"
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})"
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?"
_VALID = {
    "datetime": rf"^{_DATE}[ T]{_TIME}$",
    "date": rf"^{_DATE}$",
}
_INT64_MAX, _INT64_MIN = "9223372036854775807", "-9223372036854775808"
_UINT64_MAX = "18446744073709551615"
# Decimal text as MySQL renders it: DECIMAL(65, 30) pads every value to 30 fraction digits.
_DECIMAL = r"^-?\d+(?:\.\d+)?$"

Problem = tuple[pa.ChunkedArray, str]  # (True where the value has the problem, reason)


def _present_and(column: pa.ChunkedArray, bad: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.and_(pc.is_valid(column), pc.fill_null(bad, True))


def _problems(column: pa.ChunkedArray, kind: str) -> list[Problem]:
    """What can be wrong with a column's values for one kind of check (NULLs pass)."""
    if kind == "not_null":
        return [(pc.is_null(column), "NULL primary key")]
    if kind == "required":
        return [(pc.is_null(column), "NULL change time (in no day's window)")]
    if kind == "integer":
        if pc.all(pc.match_substring_regex(column, r"^-?\d{1,18}$")).as_py():
            return []  # the common case, in one pass (NULLs are skipped by all)
        numeric = pc.match_substring_regex(column, r"^-?\d+$")
        in_range = pc.or_(
            pc.match_substring_regex(column, r"^-?\d{1,18}$"),
            pc.or_(
                pc.and_(
                    pc.match_substring_regex(column, r"^\d{19}$"),
                    pc.less_equal(column, _INT64_MAX),
                ),
                pc.and_(
                    pc.match_substring_regex(column, r"^-\d{19}$"),
                    pc.less_equal(column, _INT64_MIN),
                ),
            ),
        )
        return [
            (_present_and(column, pc.invert(numeric)), "not an integer"),
            (_present_and(column, pc.and_(numeric, pc.invert(in_range))), "out of range for INT64"),
        ]
    if kind == "unsigned":
        # BIGINT UNSIGNED and BIT(64) reach 2^64 - 1: loaded exactly as decimal digits, like a
        # decimal beyond NUMERIC (downstream, BigQuery needs NUMERIC or BIGNUMERIC for them).
        in_range = pc.or_(
            pc.match_substring_regex(column, r"^\d{1,19}$"),
            pc.and_(
                pc.match_substring_regex(column, r"^\d{20}$"),
                pc.less_equal(column, _UINT64_MAX),
            ),
        )
        return [(_present_and(column, pc.invert(in_range)), "not an unsigned 64-bit integer")]
    if kind == "decimal":
        # Any precision is kept exactly as text: a value beyond BigQuery's NUMERIC (29 integer,
        # 9 fraction digits) is still a value, for BIGNUMERIC or an exact string downstream.
        numeric = pc.match_substring_regex(column, _DECIMAL)
        return [(_present_and(column, pc.invert(numeric)), "not a decimal number")]
    good = pc.match_substring_regex(column, _VALID[kind])
    return [(_present_and(column, pc.invert(good)), f"unparseable {kind}")]


def _utf8(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Bytes as text, and True where a value is not valid UTF-8 (that value becomes NULL)."""
    try:
        # Every value decodes: nothing is broken (a NULL is not invalid UTF-8).
        valid = pa.chunked_array([pa.array(np.zeros(len(column), dtype=bool))])
        return column.cast(pa.string()), valid
    except pa.ArrowInvalid:
        pass
    # Rare: some value is broken. Find which, value by value, only for this chunk.
    texts, broken = [], []
    for value in column.to_pylist():
        try:
            texts.append(None if value is None else value.decode())
            broken.append(False)
        except UnicodeDecodeError:
            texts.append(None)
            broken.append(True)
    return pa.chunked_array([pa.array(texts, pa.string())]), pa.chunked_array(
        [pa.array(broken, pa.bool_())]
    )


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{value!r} (hex {value.hex()})"
    return repr(value)


def split_valid_rows(
    data: pa.Table,
    *,
    logical_table: str,
    key_columns: Sequence[str],
    checks: Sequence[tuple[str, str]],
    duplicates: pa.ChunkedArray | pa.Array | None = None,
) -> Split:
    """Separate loadable rows from rows failing a check.

    `checks` are (column, kind) pairs, kind one of not_null, required, integer, decimal,
    datetime, date. Binary columns are decoded as UTF-8; a value that is not valid UTF-8 is
    quarantined. `duplicates` marks rows whose key repeats an earlier row's. The table must
    carry the lake's origin columns (`_business_day`, `_source_table`, ...).
    """
    if data.num_rows == 0:
        return Split(_decoded(data)[0], QUARANTINE_SCHEMA.empty_table(), 0)
    decoded, broken_text = _decoded(data)
    problems = [
        (column, mask, reason)
        for column, kind in checks
        for mask, reason in _problems(_column(decoded, column), kind)
    ]
    problems += [(column, mask, "invalid UTF-8") for column, mask in broken_text]
    if duplicates is not None:
        problems.append(
            (
                ",".join(key_columns),
                duplicates,
                "duplicate key (a newer or identical version of this row was loaded)",
            )
        )
    problems = [(column, mask, reason) for column, mask, reason in problems if pc.any(mask).as_py()]
    if not problems:  # the common case: no copy of the rows at all
        return Split(decoded, QUARANTINE_SCHEMA.empty_table(), 0)
    bad = pa.chunked_array([pa.array(np.zeros(data.num_rows, dtype=bool))])
    records = []
    for column, mask, reason in problems:
        bad = pc.or_(bad, mask)
        # Records show the values as received (bytes that are not UTF-8 included).
        for row in data.filter(mask).to_pylist():
            value = row.get(column, None)
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
                    "reason": reason
                    if reason.startswith("duplicate")
                    else f"{reason}: {_describe(value)}",
                    # The row as the source had it: origin columns are columns of their own,
                    # and a re-run must quarantine byte-identical rows.
                    "raw_row": json.dumps(
                        {k: v for k, v in row.items() if k not in ORIGIN_COLUMNS},
                        ensure_ascii=False,
                        default=str,
                    ),
                    "_loaded_at": row["_loaded_at"],
                }
            )
    return Split(
        loaded=decoded.filter(pc.invert(bad)),
        quarantined=pa.Table.from_pylist(records, schema=QUARANTINE_SCHEMA),
        quarantined_rows=int(pc.sum(bad).as_py() or 0),
    )


def _column(data: pa.Table, name: str) -> pa.ChunkedArray:
    """A checked column; NULL in every row of a client table that does not have it (its rows
    read NULL there in the lake too)."""
    if name in data.column_names:
        return data[name]
    return pa.chunked_array([pa.nulls(data.num_rows, pa.string())])


def _decoded(data: pa.Table) -> tuple[pa.Table, list[tuple[str, pa.ChunkedArray]]]:
    """Binary columns as text, with where each had invalid UTF-8."""
    broken = []
    for index, field in enumerate(data.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            text, mask = _utf8(data.column(index))
            data = data.set_column(index, field.name, text)
            if pc.any(mask).as_py():
                broken.append((field.name, mask))
    return data, broken


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
