"""Synthetic metadata for `make bench-load`: N lake tables x 20 columns, with every kind of rule.

Each table looks like a client's order table: ids, PII to mask (hashed email, dropped name),
amounts and datetimes to cast, deduplication by key, day partitions and clustering.
"""

import csv
from pathlib import Path

TEXT_COLUMNS = [f"attribute_{i:02d}" for i in range(1, 11)]
# (column, lake type); 18 source columns + 2 origin columns = 20.
COLUMNS = [
    ("id", "VARCHAR"),
    ("client_id", "VARCHAR"),
    ("customer_email", "VARCHAR"),
    ("customer_name", "VARCHAR"),
    ("status", "VARCHAR"),
    *((name, "VARCHAR") for name in TEXT_COLUMNS),
    ("amount", "VARCHAR"),
    ("created_at", "VARCHAR"),
    ("updated_at", "VARCHAR"),
    ("_business_day", "DATE"),
    ("_loaded_at", "TIMESTAMP WITH TIME ZONE"),
]
CASTS = [
    ("id", "bigint", "", "yes"),
    ("client_id", "bigint", "", ""),
    ("amount", "amount", "amount_jpy", "yes"),
    ("created_at", "datetime", "", ""),
    ("updated_at", "datetime", "", "yes"),
    ("_business_day", "keep", "business_day", ""),
]


def table_names(tables: int) -> list[str]:
    return [f"bench_{i:06d}" for i in range(tables)]


def write_metadata(folder: Path, tables: int, *, masking: bool = True) -> None:
    """Without masking, every table gives one model (no cleansing_secret twin)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = table_names(tables)

    def write(name: str, header: list[str], rows) -> None:
        with (folder / name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)

    write(
        "columns.csv",
        ["table", "column", "source_type", "nullable", "ordinal"],
        ((t, c, kind, "YES", i) for t in names for i, (c, kind) in enumerate(COLUMNS, 1)),
    )
    write(
        "tables.csv",
        ["table", "source", "timezone", "key", "description"],
        ((t, "lake", "Asia/Tokyo", "client_id, id", f"Synthetic table {t}.") for t in names),
    )
    write(
        "casting.csv",
        ["table", "column", "cast", "output_name", "not_null", "accepted_values"],
        ((t, c, kind, out, nn, "") for t in names for c, kind, out, nn in CASTS),
    )
    masks = (("customer_email", "hash", "customer_key"), ("customer_name", "drop", ""))
    write(
        "masking.csv",
        ["table", "column", "method", "output_name"],
        ((t, *mask) for t in names for mask in masks) if masking else (),
    )
    write("dedupe.csv", ["table", "order_by"], ((t, "_loaded_at desc") for t in names))
    write(
        "partitioning.csv",
        ["table", "column", "granularity", "cluster_by", "incremental"],
        ((t, "_business_day", "day", "client_id", "no") for t in names),
    )


def write_sources(path: Path, tables: int) -> None:
    """The dbt source of the synthetic lake tables (one source, N tables)."""
    lines = ["version: 2", "sources:", "  - name: lake", "    schema: lake", "    tables:"]
    lines += [f"      - name: {t}" for t in table_names(tables)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
