"""SQL text shared by the warehouse engines: literals and partition predicates per dialect."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from resources.identifiers import validate_identifier

PartitionValues = tuple[Any, ...]


def sql_literal(value: Any, *, dialect: str) -> str:
    """Render a partition value as a SQL literal of the given dialect (`duckdb` | `bigquery`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    text = str(value)
    if dialect == "bigquery":
        # GoogleSQL strings take backslash escapes; a doubled quote would end the literal.
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    # DuckDB follows standard SQL: the only escape is a doubled quote.
    return "'" + text.replace("'", "''") + "'"


def quoted(column: str, quote: str = '"') -> str:
    """A validated column name, quoted so that SQL keywords (`order`, `select`) stay names."""
    return f"{quote}{validate_identifier(column, what='column')}{quote}"


def partition_predicate(
    columns: Sequence[str], partitions: Sequence[PartitionValues], *, dialect: str
) -> str:
    """`(a = 'x' AND b = 'y') OR (...)`: the rows that belong to the given partitions.

    Tuple-IN is not portable to BigQuery, an OR of conjunctions is.
    """
    if not partitions:
        return "FALSE"
    if not columns:
        return "TRUE"  # an unpartitioned table: the one "partition" is all of it
    for column in columns:
        validate_identifier(column, what="partition column")
    terms = []
    for values in partitions:
        if len(values) != len(columns):
            raise ValueError(f"partition {values!r} does not match columns {list(columns)!r}")
        terms.append(
            "("
            + " AND ".join(
                f"{c} IS NULL" if v is None else f"{c} = {sql_literal(v, dialect=dialect)}"
                for c, v in zip(columns, values, strict=True)
            )
            + ")"
        )
    return " OR ".join(terms)
