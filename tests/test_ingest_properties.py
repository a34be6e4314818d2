"""Property-based tests of shard ingestion against the real MariaDB (hypothesis).

Each example draws 2-6 client tables `orders_<client_id>` (also `Orders_7`, `orders_0042`) on
one shard database, sometimes beside a look-alike that is no client's (`orders_backup`): a base
schema (the `order_id` key, usually an INT/BIGINT primary key, and `updated_at`) varied per
client table (columns added, dropped, reordered, widened, renamed in case; reserved words,
non-identifier names, names like the origin columns; MariaDB's types and charsets; a column
of one kind in one client and of another the lake unions with in the next, e.g. DATE and
DATETIME), and 0-20 rows per table with random values (NULLs, type extremes, emoji, control
characters, zero dates), most inside the tested business day and some outside. One
(day, shard) partition of `lake/orders` is then materialized and the property checked:

- the run succeeds and the blocking `reconciles_with_source` check passes;
- every source row in the day's window is in `lake.orders` or in `lake.quarantine`, exactly
  once (rows, not keys: a table without a primary key may hold a key twice);
- no row outside the window is loaded or quarantined;
- each loaded value is the source value in the lake's text representation
  (`expected_lake_text`), each quarantined row has the problems the README lists;
- `monitoring.ingestion_reconciliation` shows source_rows = loaded_rows + quarantined_rows.

Profiles: `ci` (default, 20 derandomized examples) and `nightly` (300 random examples), chosen
by `HYPOTHESIS_PROFILE`; `make fuzz-ingest` runs the nightly one. A failing example is shrunk
and printed as the SQL script that recreates the shard (paste it into `mysql`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pymysql
import pymysql.converters
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assets.ingestion.shard_reader as shard_reader
import assets.ingestion.shard_tables as shard_tables
from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from assets.ingestion.origin import ORIGIN_SCHEMA
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse
from tests.servers import require_server

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
SHARD = "shard_01"
TIMEZONE = "Asia/Tokyo"
SESSION_ZONE = "+09:00"  # Tokyo has no daylight saving time: TIMESTAMPs render in this offset
DAY = dt.date(2026, 3, 10)
PARTITION_KEY = f"{DAY}|{SHARD}"
# README "The asset graph", step 2: a day's partition reads the Asia/Tokyo day plus the 30
# minutes before it. The shard writes Tokyo wall-clock time, so these are its naive bounds.
WINDOW_LOW = dt.datetime.combine(DAY, dt.time(0)) - dt.timedelta(minutes=30)
WINDOW_HIGH = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(0))
ORDERS_TABLE = next(t for t in SHARD_LAKE_TABLES if t.name == "orders")
KEY = "order_id"
CHANGE = "updated_at"
ORIGIN_NAMES = frozenset(ORIGIN_SCHEMA.names)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
# ci: seeded (the same examples every run) and bounded, one failure shrunk and shown;
# nightly: new examples every night, every distinct failure shrunk and shown, each with a blob
# that `@reproduce_failure` replays. No example database is written into the checkout.
settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=_HEALTH,
)
settings.register_profile(
    "nightly",
    max_examples=300,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_HEALTH,
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- Types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlType:
    """A declared MariaDB column type and what its values are."""

    ddl: str  # as written in CREATE TABLE
    kind: str  # integer decimal float double bit datetime date time year text binary enum set json
    low: int = 0  # integer range
    high: int = 0
    precision: int = 0  # decimal (p, s); bit width in `precision`
    scale: int = 0  # decimal scale; fractional second digits of datetime and time
    length: int = 0  # characters or bytes; 0: a TEXT/BLOB type
    timestamp: bool = False
    members: tuple[str, ...] = ()  # enum / set

    def readback(self, quoted: str) -> str:
        """How the test reads the true stored value (pymysql, typed): FLOAT exactly as
        stored, BIT as its unsigned number (the client library would give bytes)."""
        if self.kind == "float":
            return f"CAST({quoted} AS DOUBLE)"
        if self.kind == "bit":
            return f"CAST({quoted} AS UNSIGNED)"
        return quoted


_INTEGERS = {
    "TINYINT": 8,
    "SMALLINT": 16,
    "MEDIUMINT": 24,
    "INT": 32,
    "BIGINT": 64,
}


def _integer_type(base: str, unsigned: bool) -> SqlType:
    bits = _INTEGERS[base]
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return SqlType(f"{base} UNSIGNED" if unsigned else base, "integer", low, high)


BOOL = SqlType("BOOL", "integer", -128, 127)
DECIMAL_20_0 = SqlType("DECIMAL(20,0)", "decimal", precision=20, scale=0)


def _decimal_type(precision: int, scale: int) -> SqlType:
    return SqlType(f"DECIMAL({precision},{scale})", "decimal", precision=precision, scale=scale)


CHARSETS = ("utf8mb4", "latin1", "cp932")
ENUM_MEMBERS = ("new", "paid", "発送済", "😀")
SET_MEMBERS = ("gift", "express", "返品")

integer_bases = st.sampled_from(["INT", "MEDIUMINT", "SMALLINT", "TINYINT", "BIGINT"])
integer_types = st.builds(_integer_type, integer_bases, st.booleans())
decimal_types = st.one_of(
    st.sampled_from([(10, 2), (65, 30), (38, 9), (20, 0), (12, 4), (5, 5)]),
    st.integers(1, 65).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, min(p, 30)))),
).map(lambda ps: _decimal_type(*ps))
fsp = st.sampled_from([0, 6, 3, 1, 2, 4, 5])
datetime_types = st.one_of(
    fsp.map(lambda n: SqlType("DATETIME" + (f"({n})" if n else ""), "datetime", scale=n)),
    fsp.map(
        lambda n: SqlType(
            "TIMESTAMP" + (f"({n})" if n else ""), "datetime", scale=n, timestamp=True
        )
    ),
)


@st.composite
def text_types(draw: st.DrawFn) -> SqlType:
    base, length = draw(
        st.sampled_from(
            [
                ("VARCHAR", 50),
                ("VARCHAR", 10),
                ("TEXT", 0),
                ("CHAR", 10),
                ("VARCHAR", 255),
                ("TINYTEXT", 0),
                ("MEDIUMTEXT", 0),
                ("CHAR", 1),
            ]
        )
    )
    charset = draw(st.sampled_from(CHARSETS))
    ddl = f"{base}({length})" if length else base
    return SqlType(f"{ddl} CHARACTER SET {charset}", "text", length=length)


binary_types = st.sampled_from(
    [
        SqlType("VARBINARY(16)", "binary", length=16),
        SqlType("BLOB", "binary"),
        SqlType("BINARY(4)", "binary", length=4),
        SqlType("VARBINARY(255)", "binary", length=255),
    ]
)


def _members_ddl(base: str, members: Sequence[str]) -> str:
    return f"{base}(" + ", ".join(f"'{m}'" for m in members) + ")"


# A logical column keeps one kind in every client table; each table draws its own type of
# that kind (INT in one, BIGINT or DECIMAL(20,0) in the next: widening, not a new meaning).
KIND_TYPES: dict[str, st.SearchStrategy[SqlType]] = {
    "text": text_types(),
    "integer": st.one_of(integer_types, st.just(BOOL), st.just(DECIMAL_20_0)),
    "decimal": decimal_types,
    "float": st.sampled_from(
        [SqlType("DOUBLE", "double"), SqlType("FLOAT", "float")]
    ),  # FLOAT -> DOUBLE widening
    "bit": st.one_of(st.sampled_from([1, 8, 64]), st.integers(1, 64)).map(
        lambda n: SqlType(f"BIT({n})", "bit", precision=n)
    ),
    "datetime": datetime_types,
    "date": st.just(SqlType("DATE", "date")),
    "time": fsp.map(lambda n: SqlType("TIME" + (f"({n})" if n else ""), "time", scale=n)),
    "year": st.just(SqlType("YEAR", "year")),
    "binary": binary_types,
    "enum": st.just(SqlType(_members_ddl("ENUM", ENUM_MEMBERS), "enum", members=ENUM_MEMBERS)),
    "set": st.just(SqlType(_members_ddl("SET", SET_MEMBERS), "set", members=SET_MEMBERS)),
    "json": st.just(SqlType("JSON", "json")),
}
KEY_TYPES = st.sampled_from(
    [
        _integer_type("INT", False),
        _integer_type("BIGINT", False),
        _integer_type("INT", False),
        _integer_type("BIGINT", False),
        _integer_type("INT", True),
        _integer_type("BIGINT", True),
        DECIMAL_20_0,
    ]
)
CHANGE_TYPES = st.sampled_from(
    [
        SqlType("DATETIME", "datetime"),
        SqlType("DATETIME", "datetime"),
        SqlType("DATETIME(6)", "datetime", scale=6),
        SqlType("TIMESTAMP", "datetime", timestamp=True),
        SqlType("TIMESTAMP(6)", "datetime", scale=6, timestamp=True),
    ]
)

# Names of the base schema (besides the key and the change column) and of added columns.
# `ordered_at` is a declared datetime column of lake/orders, so it is always a datetime.
BASE_NAMES = ("note", "amount", "ordered_at", "status", "customer_email")
ADDED_NAMES = (
    "coupon",
    "order",
    "select",
    "group",
    "gift-wrap",
    "金額",
    "ship to",
    "_shard",
    "_client_id",
    "_source_table",
    "_loaded_at",
    "_source_rows",  # the name of the summary rows' count column in the read statement
    "note",
    "amount",
)
FIXED_KINDS = {"ordered_at": "datetime"}
KINDS = tuple(KIND_TYPES)
# Kinds a client may declare instead, within what the lake unions (mysql_types: numbers of any
# kind; text with temporal): `amount` INT here and DOUBLE there, `shipped` DATE here and
# DATETIME there. Every value is then checked by its own table's declared type (README, "Bad
# input": "The checks follow the source's declared column types").
PARTNER_KINDS = {
    "integer": ("decimal", "float", "bit"),
    "decimal": ("integer", "float"),
    "float": ("integer", "decimal"),
    "bit": ("integer",),
    "datetime": ("date", "text"),
    "date": ("datetime", "text"),
    "time": ("text",),
    "year": ("text",),
    "text": ("datetime", "date", "enum"),
    "enum": ("text", "set"),
    "set": ("text", "enum"),
    "json": ("text",),
    "binary": (),
}
# Tables that look like client tables but are not `orders_<client id>`: never read.
DECOY_NAMES = ("orders_backup", "orders_2024_old", "Orders_archive", "orders_7_tmp")


# --- Values -------------------------------------------------------------------------------

# Characters of every kind: ASCII, accents, CJK, emoji (4-byte UTF-8), control characters.
_CHARACTERS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(["a", " ", "é", "ｶ", "発", "😀", "\x00", "\x01", "\t", "\n", "\\", "'"]),
)
texts = st.one_of(
    st.text(_CHARACTERS, max_size=8),
    st.sampled_from(["", "ok", "😀🍣", "trailing  ", "カタカナ", "\x07bell", "Ünïcödé"]),
)


def _datetime_text(value: dt.datetime, digits: int) -> str:
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return text + f".{value.microsecond:06d}"[: digits + 1] if digits else text


# Strategies are built once per type (functools.cache): building them afresh in every draw
# tripled the time hypothesis spends generating and shrinking an example.
@functools.cache
def datetime_values(sql_type: SqlType) -> st.SearchStrategy[str]:
    if sql_type.timestamp:  # TIMESTAMP's range, in the +09:00 session
        valid = st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2037, 12, 31))
        invalid = st.just("0000-00-00 00:00:00")
    else:
        valid = st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59))
        # sql_mode='' stores the zero date and zero month/day parts (no NO_ZERO_IN_DATE).
        invalid = st.sampled_from(
            ["0000-00-00 00:00:00", "2026-00-10 10:00:00", "2026-03-00 10:00:00"]
        )
    ordinary = st.integers(0, 86_399 * 10**6).map(
        lambda us: dt.datetime(2026, 3, 10) + dt.timedelta(microseconds=us)
    )
    return (
        st.one_of(ordinary, valid, ordinary).map(lambda v: _datetime_text(v, sql_type.scale))
        | invalid
    )


def _time_text(microseconds: int, digits: int) -> str:
    sign = "-" if microseconds < 0 else ""
    seconds, fraction = divmod(abs(microseconds), 10**6)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + f".{fraction:06d}"[: digits + 1] if digits else text


_TIME_LIMIT = (838 * 3600 + 59 * 60 + 59) * 10**6


def _json_values() -> st.SearchStrategy[str]:
    scalars = st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX) | texts
    tree = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=6,
    )
    return tree.map(lambda v: json.dumps(v, ensure_ascii=False))


@functools.cache
def values(sql_type: SqlType) -> st.SearchStrategy[object]:
    """Values to insert (rendered as SQL literals by `sql_literal`); NULL sometimes."""
    kind = sql_type.kind
    if kind == "integer":
        low, high = sql_type.low, sql_type.high
        some = st.one_of(st.integers(max(low, 0), min(high, 1000)), st.integers(low, high))
        some |= st.sampled_from(sorted({0, 1, low, high}))
    elif kind == "decimal":
        p, s = sql_type.precision, sql_type.scale
        # Ordinary amounts (12.50 in a DECIMAL(65,30) too), and any value of the type.
        ordinary = st.integers(-(10**7) + 1, 10**7 - 1).map(
            lambda unscaled: Decimal(unscaled).scaleb(-min(s, 2))
        )
        extreme = st.integers(-(10**p) + 1, 10**p - 1) | st.sampled_from([10**p - 1, 1 - 10**p])
        some = ordinary | extreme.map(lambda unscaled: Decimal(unscaled).scaleb(-s))
    elif kind in ("float", "double"):
        width = 32 if kind == "float" else 64
        some = st.sampled_from([0.5, 1.25, -3.0, 100.0, 0.1]) | st.floats(
            width=width, allow_nan=False, allow_infinity=False
        )
    elif kind == "bit":
        top = 2**sql_type.precision - 1
        some = st.sampled_from(sorted({0, 1, top})) | st.integers(0, top)
    elif kind == "datetime":
        some = datetime_values(sql_type)
    elif kind == "date":
        some = st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)).map(str) | st.sampled_from(
            ["0000-00-00", "2026-02-00", "2026-00-01", "2026-03-10"]
        )
    elif kind == "time":
        some = st.integers(-_TIME_LIMIT, _TIME_LIMIT).map(
            lambda us: _time_text(us, sql_type.scale)
        ) | st.sampled_from(["00:00:00", "-838:59:59", "838:59:59", "12:30:00"])
    elif kind == "year":
        some = st.sampled_from([2026, 0, 1901, 2155]) | st.integers(1901, 2155)
    elif kind == "text":
        some = texts
    elif kind == "binary":
        limit = sql_type.length or 32
        some = st.one_of(
            texts.map(lambda t: t.encode()[:limit]),
            st.binary(max_size=min(limit, 12)),
        )
    elif kind == "enum":
        some = st.sampled_from([*sql_type.members, ""])
    elif kind == "set":
        some = st.lists(st.sampled_from(sql_type.members), unique=True).map(",".join)
    else:  # json
        some = _json_values()
    return st.one_of(some, some, some, st.none())


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value, "f")  # never `1E+5`: that literal would be a DOUBLE
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'" if value else "''"
    return "'" + pymysql.converters.escape_string(str(value)) + "'"


@functools.cache
def change_times(sql_type: SqlType, inside: bool) -> st.SearchStrategy[object]:
    """`updated_at` inside the day's window [WINDOW_LOW, WINDOW_HIGH) or outside it."""
    digits = sql_type.scale
    if inside:
        span = int((WINDOW_HIGH - WINDOW_LOW).total_seconds()) * 10**6 - 1
        edges = [WINDOW_LOW, WINDOW_HIGH - dt.timedelta(seconds=1)]
        if digits == 6:
            edges.append(WINDOW_HIGH - dt.timedelta(microseconds=1))
        moment = st.sampled_from(edges) | st.integers(0, span).map(
            lambda us: WINDOW_LOW + dt.timedelta(microseconds=us)
        )
        return moment.map(lambda v: _datetime_text(v, digits))
    edges = [WINDOW_HIGH, WINDOW_LOW - dt.timedelta(seconds=1), WINDOW_LOW - dt.timedelta(days=1)]
    if digits == 6:
        edges.append(WINDOW_LOW - dt.timedelta(microseconds=1))
    outside = st.sampled_from(edges) | st.integers(1, 10**6).flatmap(
        lambda s: st.sampled_from(
            [WINDOW_HIGH + dt.timedelta(seconds=s), WINDOW_LOW - dt.timedelta(seconds=s)]
        )
    )
    zero = ["0000-00-00 00:00:00"] if not sql_type.timestamp else []
    return outside.map(lambda v: _datetime_text(v, digits)) | st.sampled_from([None, *zero])


# --- Scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str  # as declared in this client table
    sql_type: SqlType

    @property
    def quoted(self) -> str:
        return f"`{self.name}`"


@dataclass(frozen=True)
class ClientTable:
    name: str  # `orders_<client id>`, in any case, the id maybe zero-padded
    client_id: int
    columns: tuple[Column, ...]
    primary_key: bool
    rows: tuple[tuple[object, ...], ...]  # in column order

    def column(self, logical: str) -> Column:
        return next(c for c in self.columns if c.name.lower() == logical)

    @property
    def ddl(self) -> str:
        columns = []
        for c in self.columns:
            null = "NULL DEFAULT NULL" if c.sql_type.timestamp else "NULL"
            columns.append(f"{c.quoted} {c.sql_type.ddl} {null}")
        if self.primary_key:
            columns.append(f"PRIMARY KEY ({self.column(KEY).quoted})")
        return f"CREATE TABLE `{self.name}` ({', '.join(columns)}) DEFAULT CHARSET=utf8mb4"

    @property
    def insert(self) -> str | None:
        if not self.rows:
            return None
        names = ", ".join(c.quoted for c in self.columns)
        rows = ",\n  ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in self.rows)
        return f"INSERT INTO `{self.name}` ({names}) VALUES\n  {rows}"


@dataclass(frozen=True)
class Scenario:
    tables: tuple[ClientTable, ...]
    decoys: tuple[ClientTable, ...] = ()  # not client tables: nothing of them is loaded

    def script(self) -> str:
        lines = [f"SET SESSION sql_mode = ''; SET time_zone = '{SESSION_ZONE}';"]
        for table in (*self.tables, *self.decoys):
            lines.append(table.ddl + ";")
            if table.insert:
                lines.append(table.insert + ";")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Scenario(  -- business day {DAY}, Asia/Tokyo shard\n{self.script()}\n)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints a falsifying scenario as its SQL script


@functools.cache
def _spelling(name: str) -> st.SearchStrategy[str]:
    """The name as written, usually as is; sometimes in another case (`Note`, `NOTE`)."""
    return st.sampled_from([name, name, name, name.title(), name.upper()])


@functools.cache
def _change_values(sql_type: SqlType) -> st.SearchStrategy[object]:
    """Mostly inside the window, sometimes outside."""
    return st.sampled_from([True, True, True, True, False]).flatmap(
        lambda inside: change_times(sql_type, inside)
    )


@functools.cache
def _pools(sql_type: SqlType) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(values(sql_type), min_size=1, max_size=6).map(tuple)


@functools.cache
def _kind_or_partner(kind: str) -> st.SearchStrategy[str]:
    return st.sampled_from([kind] * 6 + list(PARTNER_KINDS[kind]))


@st.composite
def client_tables(
    draw: st.DrawFn, client_id: int, base: Sequence[str], kind_of: Callable[[str], str]
) -> ClientTable:
    name = draw(
        st.sampled_from(
            [f"orders_{client_id}"] * 3 + [f"Orders_{client_id}", f"orders_{client_id:04d}"]
        )
    )
    key = Column(draw(st.sampled_from([KEY, KEY, KEY, KEY, "Order_ID"])), draw(KEY_TYPES))
    change = Column(
        draw(st.sampled_from([CHANGE, CHANGE, CHANGE, "Updated_At"])), draw(CHANGE_TYPES)
    )
    columns = [key, change]
    # Each choice below shrinks to the plain case (first element): kept, not added, as is.
    kept = [logical for logical in base if draw(st.sampled_from([True, True, True, False]))]
    added = [logical for logical in ADDED_NAMES if draw(st.sampled_from([False] * 8 + [True]))]
    for logical in dict.fromkeys([*kept, *added]):
        kind = kind_of(logical)
        if logical not in FIXED_KINDS:  # usually the name's kind, sometimes a partner
            kind = draw(_kind_or_partner(kind))
        columns.append(Column(draw(_spelling(logical)), draw(KIND_TYPES[kind])))
    columns = draw(st.permutations(columns))
    primary_key = draw(st.sampled_from([True, True, True, False]))

    count = draw(st.integers(0, 20))
    if primary_key:  # unique by construction: the type's extremes, then 1, 2, 3, ...
        special = draw(st.lists(values(key.sql_type), max_size=3))
        keys: list[object] = list(dict.fromkeys(int(v) for v in special if v is not None))
        keys += itertools.islice((k for k in itertools.count(1) if k not in keys), count)
        keys = keys[:count]
    else:  # a legacy table: keys may repeat, or be NULL
        keys = draw(st.lists(st.sampled_from([1, 2, 3, None]), min_size=count, max_size=count))
    row_values = []
    for column in columns:
        if column is change:
            row_values.append(_change_values(change.sql_type))
        elif column is not key:
            # A few values per column, each row picks one: rows stay cheap to draw, so tables
            # of 20 rows fit in hypothesis's budget (drawing every value made most tables tiny).
            pool = draw(_pools(column.sql_type))
            row_values.append(st.sampled_from(pool))
    position = columns.index(key)
    rows = []
    for key_value in keys:
        others = list(draw(st.tuples(*row_values)))
        rows.append((*others[:position], key_value, *others[position:]))
    if not primary_key:
        # Versions of a key changed at the same instant are exact copies: which of two
        # different ones is "the newest" would be up to the server's sort, and not repeatable.
        at = columns.index(change)
        first: dict[tuple[object, object], tuple[object, ...]] = {}
        rows = [first.setdefault((row[position], row[at]), row) for row in rows]
    return ClientTable(name, client_id, tuple(columns), primary_key, tuple(rows))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # Client ids unique by construction (no rejected examples while shrinking): 1, 2, 3, ...
    steps = draw(st.lists(st.integers(1, 300), min_size=2, max_size=6))
    ids = list(itertools.accumulate(steps))
    kinds: dict[str, str] = {}

    def kind_of(name: str) -> str:
        if name not in kinds:
            kinds[name] = FIXED_KINDS.get(name) or draw(st.sampled_from(KINDS))
        return kinds[name]

    base = [logical for logical in BASE_NAMES if draw(st.sampled_from([False, False, True]))]
    tables = tuple(draw(client_tables(cid, base, kind_of)) for cid in ids)
    decoys = []
    for decoy in draw(st.lists(st.sampled_from(DECOY_NAMES), max_size=1)):
        like = tables[0]  # a copy of a client's table under a name that is not a client's
        decoys.append(ClientTable(decoy, 0, like.columns, like.primary_key, like.rows))
    return Scenario(tables, tuple(decoys))


# --- Expectations -------------------------------------------------------------------------

LOAD, QUARANTINE, EITHER = "load", "quarantine", "either"
# ASSUMED (README: FLOAT -> "the server's shortest text"): the lake's text for a FLOAT names
# the stored single-precision value. MariaDB's own text has 6 significant digits, so FLOAT
# 123456792 reads `123457000`, another number. False accepts MariaDB's text instead.
FLOAT_TEXT_ROUND_TRIPS = True


@dataclass(frozen=True)
class Expected:
    """What the lake should do with one source value."""

    outcome: str  # LOAD, QUARANTINE, or EITHER where the README leaves it open
    texts: tuple[str | None, ...] = ()  # acceptable lake texts (compare="text")
    compare: str = "text"  # text | decimal | float32 | float64
    value: Any = None

    def matches(self, lake: object) -> bool:
        if self.compare == "text":
            return lake in self.texts
        if lake is None:
            return False
        try:
            if self.compare == "decimal":
                return Decimal(str(lake)) == self.value
            number = float(str(lake))
        except (ValueError, decimal.InvalidOperation):
            return False
        if self.compare == "float32":
            return np.float32(number) == np.float32(self.value)
        return number == self.value

    def describe(self) -> str:
        wanted = self.texts if self.compare == "text" else f"{self.compare} == {self.value!r}"
        return f"{self.outcome}: {wanted}"


def expected_lake_text(sql_type: SqlType, value: object) -> Expected:
    """The lake's text for a value as MariaDB stores it (`value`: read back by pymysql).

    The README says: all columns are text, "other columns are rendered as text by the server",
    binary as bytes, and quarantine for a datetime or date that does not exist, bytes that are
    not UTF-8, an integer beyond INT64 or a decimal beyond NUMERIC(38, 9). Where it says
    nothing, the choices below are this test's (ASSUMED: ...).
    """
    if value is None:
        return Expected(LOAD, (None,))
    kind = sql_type.kind
    if kind == "integer":
        text = str(value)
        # README: a BIGINT UNSIGNED beyond INT64 is loaded exactly, as decimal digits.
        return Expected(LOAD, (text,))
    if kind == "decimal":
        # The exact number, whatever the precision (README: "A decimal of any precision is a
        # value, loaded exactly"): DECIMAL(65,30) 1.5 may read `1.500000000000000000000000000000`.
        return Expected(LOAD, compare="decimal", value=value)
    if kind == "float":
        if FLOAT_TEXT_ROUND_TRIPS:
            return Expected(LOAD, compare="float32", value=value)
        # MariaDB's own text for FLOAT: 6 significant digits.
        return Expected(LOAD, compare="float64", value=float(f"{value:.6g}"))
    if kind == "double":
        return Expected(LOAD, compare="float64", value=value)  # MariaDB prints DOUBLE exactly
    if kind == "bit":
        # README: BIT as its unsigned integer value in decimal text (the server's CAST gives
        # raw bytes: BIT(1) 1 is "\x01"), up to 2^64 - 1 for BIT(64).
        return Expected(LOAD, (str(value),))
    if kind == "datetime":
        if not isinstance(value, dt.datetime):  # the zero date, zero month or day
            return Expected(QUARANTINE)
        # The server's text with the declared fractional digits; an all-zero fraction trimmed
        # (README: one spelling per instant). TIMESTAMP in the shard's zone.
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if sql_type.scale and value.microsecond:
            text += f".{value.microsecond:06d}"[: sql_type.scale + 1]
        return Expected(LOAD, (text,))
    if kind == "date":
        if not isinstance(value, dt.date):
            return Expected(QUARANTINE)
        return Expected(LOAD, (value.isoformat(),))
    if kind == "time":
        # README: "as MySQL writes them": `-838:59:59`, TIME(3) `12:00:00.500` and
        # `12:00:00.000` (the all-zero fraction is dropped for dates and datetimes only).
        assert isinstance(value, dt.timedelta)
        microseconds = value // dt.timedelta(microseconds=1)
        return Expected(LOAD, (_time_text(microseconds, sql_type.scale),))
    if kind == "year":
        return Expected(LOAD, (f"{value:04d}",))  # ASSUMED: the server's 4 digits, `0000`
    if kind == "binary":
        try:
            return Expected(LOAD, (value.decode("utf-8"),))  # type: ignore[union-attr]
        except UnicodeDecodeError:
            return Expected(QUARANTINE)
    # text, enum, set, json: as stored (JSON is LONGTEXT on MariaDB: its text, unparsed).
    return Expected(LOAD, (value,))


# --- The shard, the run and the lake ----------------------------------------------------


@dataclass
class SourceRow:
    table: ClientTable
    values: dict[str, object]  # declared column name -> value read back
    expected: dict[str, Expected] = field(default_factory=dict)

    @property
    def key(self) -> int | None:
        value = self.values[self.table.column(KEY).name]
        return None if value is None else int(value)  # type: ignore[call-overload]

    @property
    def change(self) -> object:
        return self.values[self.table.column(CHANGE).name]

    @property
    def in_window(self) -> bool:
        change = self.change
        return isinstance(change, dt.datetime) and WINDOW_LOW <= change < WINDOW_HIGH

    @property
    def problems(self) -> set[str]:
        """Lake columns the row must be quarantined for."""
        found = {lake_name(n) for n, e in self.expected.items() if e.outcome == QUARANTINE}
        if self.key is None:
            found.add(KEY)
        return found

    @property
    def maybe_problems(self) -> set[str]:
        return {lake_name(n) for n, e in self.expected.items() if e.outcome == EITHER}

    def describe(self) -> str:
        shown = {n: v for n, v in self.values.items()}
        return f"{self.table.name} {shown!r}"


def _key_of(text: object) -> int | str | None:
    """A key as the lake or the quarantine spells it, comparable with `SourceRow.key`."""
    if text is None:
        return None
    try:
        return int(Decimal(str(text)))
    except (decimal.InvalidOperation, ValueError):
        return f"<not a number: {text!r}>"


class ShardDatabase:
    """One MariaDB database acting as shard_01, recreated for every example."""

    def __init__(
        self,
        admin: pymysql.Connection,
        database: str,
        workdir: Path,
        asset: dg.AssetsDefinition,
    ) -> None:
        self.admin, self.database, self.workdir, self.asset = admin, database, workdir, asset
        self.examples = itertools.count()
        self.shards_file = workdir / "shards.yaml"
        url = f"mysql+pymysql://root@{HOST}:{PORT}/{database}?charset=utf8mb4"
        self.shards_file.write_text(
            yaml.safe_dump({"shards": [{"name": SHARD, "url": url, "timezone": TIMEZONE}]})
        )

    def create(self, scenario: Scenario) -> list[SourceRow]:
        """The scenario's tables with their rows; every row as MariaDB stored it."""
        with self.admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
            cursor.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            cursor.execute(f"USE `{self.database}`")
            # Lax, like the old servers that stored zero dates; the reader's zone.
            cursor.execute("SET SESSION sql_mode = ''")
            cursor.execute(f"SET time_zone = '{SESSION_ZONE}'")
            rows = []
            for table in scenario.tables:
                cursor.execute(table.ddl)
                if table.insert:
                    cursor.execute(table.insert)
                exprs = ", ".join(c.sql_type.readback(c.quoted) for c in table.columns)
                cursor.execute(f"SELECT {exprs} FROM `{table.name}`")
                for stored in cursor.fetchall():
                    names = [c.name for c in table.columns]
                    rows.append(SourceRow(table, dict(zip(names, stored, strict=True))))
            for decoy in scenario.decoys:
                cursor.execute(decoy.ddl)
                if decoy.insert:
                    cursor.execute(decoy.insert)
        return rows

    def ingest(self, instance: dg.DagsterInstance) -> tuple[dg.ExecuteInProcessResult, Path]:
        lake = self.workdir / f"lake_{next(self.examples)}.duckdb"
        result = dg.materialize(
            [self.asset],
            partition_key=PARTITION_KEY,
            resources={
                "shards": ShardSource(shards_file=str(self.shards_file)),
                "warehouse": DuckDBWarehouse(path=str(lake)),
            },
            instance=instance,
            raise_on_error=False,
        )
        return result, lake


@pytest.fixture
def shard_database(minato_env, tmp_path, monkeypatch):
    require_server(HOST, PORT, "MariaDB")
    # A failing example must fail at once: batches are still retried, without the waits
    # (0.5 + 2 + 8 s), and the lake/orders asset is built as shard_tables builds it but without
    # the step's RetryPolicy (5 + 10 + 20 s of backoff; run config cannot switch it off).
    monkeypatch.setattr(shard_reader, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    monkeypatch.setattr(shard_tables, "INGESTION_RETRY_POLICY", None)
    orders = shard_tables.build_shard_table_asset(ORDERS_TABLE)
    admin = pymysql.connect(
        host=HOST, port=PORT, user="root", password="", autocommit=True, charset="utf8mb4"
    )
    database = f"minato_it_props_{os.getpid()}"
    try:
        yield ShardDatabase(admin, database, tmp_path, orders)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


# --- Failures: one exception class per kind of failure, so hypothesis reports (and shrinks)
# each distinct class separately instead of only the first one it meets.

_FAILURE_CLASSES: dict[str, type[AssertionError]] = {}


def _fail(category: str, message: str) -> None:
    name = "".join(part[:1].upper() + part[1:] for part in category.split("_"))
    cls = _FAILURE_CLASSES.setdefault(category, type(f"{name}Failure", (AssertionError,), {}))
    raise cls(message)


def _innermost_error(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None:
                return error.cls_name or "Error", error.message.strip()
    return "RunFailure", "the run failed without a step failure"


def _lake_rows(lake: Path, table: str) -> tuple[list[str], list[dict[str, Any]]]:
    with duckdb.connect(str(lake), read_only=True) as conn:
        relation = conn.sql(f"SELECT * FROM {table}")
        return list(relation.columns), relation.to_arrow_table().to_pylist()


# Names the lake and the reading statement use themselves: a client column cannot have them.
RESERVED_NAMES = ORIGIN_NAMES | {"_source_rows", "_source_key_sum"}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def lake_name(source: str) -> str:
    """The lake column of a source column, by the naming policy of the module doc of
    assets/ingestion/shard_catalog.py: lower case (MySQL names are case-insensitive, `Note` and
    `note` are one column), other ASCII characters `_` (`gift-wrap` -> `gift_wrap`), other
    characters `u<code point>` (`金額` -> `u91d1u984d`), `c_` before a leading digit, `src`
    before a name the lake uses itself (`_shard` -> `src_shard`)."""
    name = "".join(
        c if c in _SAFE else "_" if c.isascii() else f"u{ord(c):04x}" for c in source.lower()
    )
    if not name or name[0].isdigit():
        name = "c_" + name
    return "src" + name if name in RESERVED_NAMES else name


def _distinct_quarantined(records: list[dict[str, Any]]) -> int:
    """Rows behind quarantine records (one record per problem): identical rows count once per
    copy, so count each problem's records per raw row and take the largest."""
    by_row: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for record in records:
        reason = record["reason"].split(":")[0]
        by_row[record["raw_row"]][(record["column_name"], reason)] += 1
    return sum(max(problems.values()) for problems in by_row.values())


def _show(rows: Sequence[object], limit: int = 6) -> str:
    shown = [f"    {row!r}" for row in rows[:limit]]
    if len(rows) > limit:
        shown.append(f"    ... and {len(rows) - limit} more")
    return "\n".join(shown) or "    (none)"


# --- The property ---------------------------------------------------------------------------


@settings(PROFILE)
@given(scenario=scenarios())
def test_every_row_of_the_day_is_loaded_or_quarantined_exactly_once(
    shard_database: ShardDatabase, instance: dg.DagsterInstance, scenario: Scenario
) -> None:
    source = shard_database.create(scenario)
    result, lake = shard_database.ingest(instance)
    try:
        _check(scenario, source, result, lake)
    finally:
        lake.unlink(missing_ok=True)


def _check(
    scenario: Scenario, source: list[SourceRow], result: dg.ExecuteInProcessResult, lake: Path
) -> None:
    script = scenario.script()
    if not result.success:
        cls_name, message = _innermost_error(result)
        _fail(f"run_failed_{cls_name}", f"the partition failed: {cls_name}: {message}\n{script}")

    checks = result.get_asset_check_evaluations()
    if not checks or not all(c.passed for c in checks):
        _fail("check_failed", f"reconciles_with_source did not pass: {checks}\n{script}")

    # Where each column of each client table lands in the lake.
    lake_columns, lake_rows = _lake_rows(lake, "lake.orders")
    _, quarantine = _lake_rows(lake, "lake.quarantine")
    mapping: dict[tuple[str, str], str] = {}
    for table in scenario.tables:
        for column in table.columns:
            name = lake_name(column.name)
            if name not in lake_columns:
                _fail(
                    "lake_column_missing",
                    f"no lake column {name!r} for {table.name}.{column.name} "
                    f"(lake.orders has {lake_columns})\n{table.ddl}\n\n{script}",
                )
            mapping[(table.name, column.name)] = name

    for row in source:
        row.expected = {
            column.name: expected_lake_text(column.sql_type, row.values[column.name])
            for column in row.table.columns
        }

    window = [r for r in source if r.in_window]
    tables = {t.name: t for t in scenario.tables}
    problems: list[tuple[str, str]] = []

    # Group lake rows and quarantine records by (table, key).
    lake_by: dict[tuple[str, object], list[dict[str, Any]]] = defaultdict(list)
    for lake_row in lake_rows:
        table = tables.get(lake_row["_source_table"])
        key = None if table is None else lake_row.get(mapping[(table.name, table.column(KEY).name)])
        lake_by[(lake_row["_source_table"], _key_of(key))].append(lake_row)
    quarantine_by: dict[tuple[str, object], list[dict[str, Any]]] = defaultdict(list)
    for record in quarantine:
        key = json.loads(record["primary_key"])[0]
        quarantine_by[(record["_source_table"], _key_of(key))].append(record)
    source_by: dict[tuple[str, object], list[SourceRow]] = defaultdict(list)
    for row in window:
        source_by[(row.table.name, row.key)].append(row)

    # Nothing outside the window, and nothing from elsewhere.
    for group, found in lake_by.items():
        if group not in source_by:
            outside = [r.describe() for r in source if (r.table.name, r.key) == group]
            problems.append(
                (
                    "loaded_outside_window",
                    f"{group}: {len(found)} lake row(s) but no source row in the window "
                    f"[{WINDOW_LOW}, {WINDOW_HIGH}):\n  lake:\n{_show(found)}\n"
                    f"  source rows outside the window:\n{_show(outside)}",
                )
            )
    for group, found in quarantine_by.items():
        if group not in source_by:
            problems.append(
                (
                    "quarantined_outside_window",
                    f"{group}: quarantined but no source row in the window:\n{_show(found)}",
                )
            )

    # Every row of the window exactly once, each value as the source holds it.
    for (table_name, key), rows in source_by.items():
        table = tables[table_name]
        loaded = lake_by.get((table_name, key), [])
        records = quarantine_by.get((table_name, key), [])
        quarantined = _distinct_quarantined(records)
        header = f"{table.ddl}\nkey {key!r}:\n  source:\n{_show([r.describe() for r in rows])}"
        seen = f"  lake:\n{_show(loaded)}\n  quarantine:\n{_show(records)}"
        if len(loaded) + quarantined != len(rows):
            problems.append(
                (
                    "not_exactly_once",
                    f"{len(rows)} source row(s) but {len(loaded)} loaded + {quarantined} "
                    f"quarantined\n{header}\n{seen}",
                )
            )
            continue
        if key is None or len(rows) > 1:
            problems.extend(_check_duplicates(table, key, rows, loaded, mapping, header, seen))
            continue
        (row,) = rows
        must, may = row.problems, row.maybe_problems
        if loaded and must:
            problems.append(
                (
                    f"not_quarantined_{_kind_of(row, must)}",
                    f"loaded, but should be quarantined for {sorted(must)}\n{header}\n{seen}",
                )
            )
        elif loaded:
            problems.extend(_compare_values(row, loaded[0], lake_columns, mapping, header))
        else:
            blamed = {str(r["column_name"]).lower() for r in records}
            unexpected, missing = blamed - must - may, must - blamed
            if unexpected or missing:
                # A problem not recorded is the same failure as a bad value loaded.
                category = (
                    f"quarantined_wrongly_{_kind_of(row, unexpected)}"
                    if unexpected
                    else f"not_quarantined_{_kind_of(row, missing)}"
                )
                problems.append(
                    (
                        category,
                        f"quarantined for {sorted(blamed)}, expected {sorted(must)} "
                        f"(optional {sorted(may)})\n"
                        + "".join(
                            f"  expected {n}: {e.describe()}\n"
                            for n, e in row.expected.items()
                            if lake_name(n) in unexpected | missing
                        )
                        + f"{header}\n{seen}",
                    )
                )

    # Reconciliation for the partition, as the monitoring table shows it.
    _, reconciliation = _lake_rows(lake, "monitoring.ingestion_reconciliation")
    mine = [
        r
        for r in reconciliation
        if (r["logical_table"], r["business_day"], r["shard"]) == ("orders", DAY, SHARD)
    ]
    loaded_total, quarantined_total = len(lake_rows), _distinct_quarantined(quarantine)
    want = (len(window), loaded_total, quarantined_total, True)
    got = [
        (r["source_rows"], r["loaded_rows"], r["quarantined_rows"], r["reconciled"]) for r in mine
    ]
    if got != [want]:
        problems.append(
            (
                "reconciliation",
                f"monitoring.ingestion_reconciliation (source, loaded, quarantined, reconciled) "
                f"is {got}, expected [{want}] ({len(window)} source rows in the window)",
            )
        )

    if problems:
        category = problems[0][0]
        details = "\n\n".join(f"[{c}] {m}" for c, m in problems[:8])
        more = f"\n\n... and {len(problems) - 8} more" if len(problems) > 8 else ""
        _fail(category, f"{len(problems)} problem(s):\n\n{details}{more}\n\nSCRIPT:\n{script}")


def _kind_of(row: SourceRow, columns: set[str]) -> str:
    """The source type kind of the first of `columns`, to tell failure classes apart."""
    for column in row.table.columns:
        if lake_name(column.name) in columns:
            return column.sql_type.kind
    return "key"


def _compare_values(
    row: SourceRow,
    lake_row: dict[str, Any],
    lake_columns: Sequence[str],
    mapping: dict[tuple[str, str], str],
    header: str,
    *,
    skip_quarantined: bool = False,
) -> list[tuple[str, str]]:
    problems = []
    table = row.table
    mapped = {mapping[(table.name, c.name)] for c in table.columns}
    for column in table.columns:
        expected = row.expected[column.name]
        if skip_quarantined and expected.outcome == QUARANTINE:
            continue
        lake_value = lake_row[mapping[(table.name, column.name)]]
        if not expected.matches(lake_value):
            problems.append(
                (
                    f"value_{column.sql_type.kind}",
                    f"{table.name}.{column.name} {column.sql_type.ddl}: source "
                    f"{row.values[column.name]!r}, lake {lake_value!r}, expected "
                    f"{expected.describe()}\n{header}",
                )
            )
    for name in lake_columns:  # columns of other client tables read NULL here
        if name not in mapped and name not in ORIGIN_NAMES and lake_row[name] is not None:
            problems.append(
                (
                    "value_from_nowhere",
                    f"lake column {name!r} is {lake_row[name]!r} for a row of {table.name}, "
                    f"which has no such column\n{header}",
                )
            )
    origin = {
        "_business_day": DAY,
        "_shard": SHARD,
        "_client_id": str(table.client_id),
        "_source_table": table.name,
        "_source_tz": TIMEZONE,
    }
    for name, want in origin.items():
        if lake_row.get(name) != want:
            problems.append(
                (
                    "origin_column",
                    f"origin column {name} is {lake_row.get(name)!r}, expected {want!r}\n{header}",
                )
            )
    return problems


def _check_duplicates(
    table: ClientTable,
    key: object,
    rows: list[SourceRow],
    loaded: list[dict[str, Any]],
    mapping: dict[tuple[str, str], str],
    header: str,
    seen: str,
) -> list[tuple[str, str]]:
    """A key that repeats (a table without a primary key) or is NULL: the newest version is
    loaded if it is valid, every other row quarantined (README "Bad input")."""
    if key is None:
        if loaded:
            return [("null_key_loaded", f"a row with a NULL key was loaded\n{header}\n{seen}")]
        return []
    newest_time = max(r.change for r in rows)  # type: ignore[type-var]
    newest = [r for r in rows if r.change == newest_time]
    valid = [r for r in newest if not r.problems]
    if len(loaded) > 1:
        return [("duplicate_key_loaded_twice", f"key loaded {len(loaded)} times\n{header}\n{seen}")]
    if not loaded:
        if valid and len(valid) == len(newest) and not any(r.maybe_problems for r in valid):
            return [
                ("newest_version_not_loaded", f"no version of the key loaded\n{header}\n{seen}")
            ]
        return []
    columns = list(loaded[0])
    differences = [
        _compare_values(r, loaded[0], columns, mapping, header, skip_quarantined=True)
        for r in newest
    ]
    matched = [r for r, found in zip(newest, differences, strict=True) if not found]
    if any(not r.problems for r in matched):
        return []
    if matched:  # the newest version, loaded although it has a problem
        row = matched[0]
        return [
            (
                f"not_quarantined_{_kind_of(row, row.problems)}",
                f"the newest version was loaded, but should be quarantined for "
                f"{sorted(row.problems)}\n{header}\n{seen}",
            )
        ]
    # No newest version has these values: an older version was loaded, or a value differs
    # (then the closest version's first difference names the class, e.g. value_float).
    closest = min(differences, key=len)
    older = any(f"{table.name}.{table.column(CHANGE).name} " in m for _, m in closest)
    category = "duplicate_wrong_version" if older else closest[0][0]
    return [
        (
            category,
            f"the loaded row is not a valid newest version\n{header}\n{seen}\n"
            + "\n".join(message for _, message in closest),
        )
    ]
