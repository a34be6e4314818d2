"""Column names in generated SQL: as they are, or quoted where they are SQL keywords.

Lake column names are plain identifiers (`resources.identifiers`), but a client's `order` or
`select` is one too, and both warehouses refuse it unquoted. The quoting is left to dbt
(`adapter.quote`: `"order"` on DuckDB, `` `order` `` on BigQuery), so one generated file serves
both targets; names that are not keywords stay unquoted, so the common case reads as before.
"""

# Reserved in DuckDB (`duckdb_keywords()`, category `reserved`) or in BigQuery (GoogleSQL's
# reserved keywords); a name in neither works unquoted on both.
RESERVED_KEYWORDS = frozenset(
    """
    all analyse analyze and any array as asc assert_rows_modified asymmetric at between both by
    case cast check collate column constraint contains create cross cube current default
    deferrable define desc describe distinct do else end enum escape except exclude exists
    extract false fetch following for foreign from full group grouping groups hash having if
    ignore in initially inner intersect interval into is join lambda lateral leading left like
    limit lookup merge natural new no not null nulls of offset on only or order outer over
    partition pivot pivot_longer pivot_wider placing preceding primary proto qualify range
    recursive references respect returning right rollup rows select set show some struct
    summarize symmetric table tablesample then to trailing treat true unbounded union unique
    unnest unpivot using variadic when where window with within
    """.split()  # noqa: SIM905 (a word list reads better as words)
)


def is_keyword(name: str) -> bool:
    return name.lower() in RESERVED_KEYWORDS


def column_sql(name: str) -> str:
    """The column as generated SQL refers to it."""
    return f"{{{{ adapter.quote('{name}') }}}}" if is_keyword(name) else name


def column_argument(name: str) -> str:
    """The column as a Jinja macro argument (`parse_amount('<column>')`): a quoted name's
    argument is the expression that quotes it."""
    return f"adapter.quote('{name}')" if is_keyword(name) else f"'{name}'"
