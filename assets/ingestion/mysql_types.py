"""What ingestion knows about the column types shards declare (MySQL, and SQLite's affinities).

One table says, per base type name (`varchar` of `varchar(20)`), three things: its family (types
of one family may widen between clients and still share a lake column), the row check its text
must pass at ingestion, and whether MySQL text of that type is read as it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Type:
    family: str
    check: str | None = None  # kind of row check (assets/ingestion/quarantine.py), if any
    # Text the driver decodes without fail, exactly as stored: read natively (a CAST would cost
    # the server a conversion per value). Everything else is rendered as text by the server, so
    # a zero date, a DECIMAL(65) or a BIGINT UNSIGNED (a DECIMAL once in a UNION) cannot break
    # the driver.
    native_text: bool = False
    # Where `CAST(x AS CHAR)` would not give the value's meaning, how the server renders it:
    # `number` (BIT: its unsigned value, `x + 0`; the cast gives raw bytes such as '\x01'),
    # `float` (FLOAT: through DOUBLE, since the cast keeps 6 significant digits and 123456792
    # would read 123457000) or `wkt` (spatial: `ST_AsText(x)`, not the internal format).
    render: str | None = None


_TYPES = {
    "tinyint": _Type("integer", "integer"),
    "smallint": _Type("integer", "integer"),
    "mediumint": _Type("integer", "integer"),
    "int": _Type("integer", "integer"),
    "integer": _Type("integer", "integer"),
    "bigint": _Type("integer", "integer"),
    "bit": _Type("integer", "integer", render="number"),
    "decimal": _Type("number", "decimal"),
    "numeric": _Type("number", "decimal"),
    "float": _Type("number", render="float"),
    "double": _Type("number"),
    "real": _Type("number"),
    "char": _Type("text", native_text=True),
    "varchar": _Type("text", native_text=True),
    "tinytext": _Type("text", native_text=True),
    "text": _Type("text", native_text=True),
    "mediumtext": _Type("text", native_text=True),
    "longtext": _Type("text", native_text=True),
    "enum": _Type("text"),
    "set": _Type("text"),
    "json": _Type("text"),  # MySQL's JSON; MariaDB reports its JSON columns as longtext
    "": _Type("text"),  # SQLite columns declared without a type
    "datetime": _Type("temporal", "datetime"),
    "timestamp": _Type("temporal", "datetime"),
    "date": _Type("temporal", "date"),
    "time": _Type("temporal"),
    "year": _Type("temporal"),
    "binary": _Type("binary"),
    "varbinary": _Type("binary"),
    "blob": _Type("binary"),
    "tinyblob": _Type("binary"),
    "mediumblob": _Type("binary"),
    "longblob": _Type("binary"),
    **dict.fromkeys(
        (
            "geometry",
            "point",
            "linestring",
            "polygon",
            "multipoint",
            "multilinestring",
            "multipolygon",
            "geometrycollection",
        ),
        _Type("spatial", render="wkt"),
    ),
}

# Families a text lake can union without losing meaning: numbers of any kind, and SQLite's
# text dates with MySQL's DATETIMEs (both arrive as text). Other families never mix.
_UNIONABLE_FAMILIES = {frozenset({"integer", "number"}), frozenset({"text", "temporal"})}


def _base(declared: str) -> str:
    # `bigint unsigned`: the catalog marks unsigned integers (shard_catalog._MYSQL_CATALOG).
    return declared.split("(")[0].strip().removesuffix(" unsigned")


def type_family(declared: str) -> str:
    """`integer`, `number`, `text`, `temporal` or `binary`; an unknown type is its own family,
    so it only reconciles with itself."""
    known = _TYPES.get(_base(declared))
    return known.family if known else _base(declared)


def unionable(declared: str, other: str) -> bool:
    """Whether two client tables may declare a column with these types and share a lake column."""
    families = frozenset({type_family(declared), type_family(other)})
    return len(families) == 1 or families in _UNIONABLE_FAMILIES


def row_check(declared: str) -> str | None:
    """The check a column's text must pass at ingestion (`integer`, `unsigned`, `decimal`,
    `datetime`, `date`), or None for a type whose text is loaded as it is."""
    known = _TYPES.get(_base(declared))
    if known is None:
        return None
    # Unsigned integers and BIT(n) reach 2^64 - 1, beyond INT64: checked as unsigned.
    if known.check == "integer" and (_base(declared) == "bit" or "unsigned" in declared):
        return "unsigned"
    return known.check


def rendering(declared: str) -> str | None:
    """`number`, `float`, `wkt`, or None for a type the server renders with a plain cast."""
    known = _TYPES.get(_base(declared))
    return known.render if known else None


def read_as_text(declared: str) -> bool:
    """Whether MySQL hands this type's values over as text unchanged (see `_Type.native_text`)."""
    known = _TYPES.get(_base(declared))
    return known is not None and known.native_text
