"""`minato metadata export`: the lake's (or a shard's) catalog as metadata/columns.csv.

- `--source lake`: `information_schema.columns` of the warehouse's `lake` schema (DuckDB) or
  dataset (BigQuery): every lake table with its origin columns, as cleansing reads it;
- `--source <shard>`: one catalog query on the shard (assets/ingestion/shard_catalog.py); a logical
  table's columns are the union over its client tables in first-seen order, followed by the
  origin columns ingestion adds. The catalog query reports no nullability: `nullable` is empty.

Rows of tables that were not exported are kept, so shards and landing files can be exported
one after the other. Rows are sorted by table and ordinal: the same catalog gives the same file.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa

from assets.ingestion.origin import ORIGIN_SCHEMA
from assets.ingestion.shard_catalog import discover_shard
from resources.shards import ShardSource
from resources.warehouse import Warehouse

HEADER = ("table", "column", "source_type", "nullable", "ordinal")
Row = tuple[str, str, str, str, int]


def lake_columns(warehouse: Warehouse) -> list[Row]:
    if warehouse.kind == "bigquery":
        catalog = warehouse.qualified("lake", "INFORMATION_SCHEMA").rstrip("`") + ".COLUMNS`"
        where = "true"
    else:
        catalog = "information_schema.columns"
        where = f"table_catalog = '{warehouse.catalog}' and table_schema = 'lake'"
    data = warehouse.query_arrow(
        "select table_name, column_name, data_type, is_nullable, ordinal_position "
        f"from {catalog} where {where} and table_name <> 'quarantine'"
    ).to_pylist()
    return [
        (
            r["table_name"],
            r["column_name"],
            r["data_type"],
            r["is_nullable"],
            int(r["ordinal_position"]),
        )
        for r in data
    ]


def _type_name(data_type: pa.DataType) -> str:
    if pa.types.is_date(data_type):
        return "DATE"
    if pa.types.is_timestamp(data_type):
        return "TIMESTAMP WITH TIME ZONE" if data_type.tz else "TIMESTAMP"
    return "VARCHAR"


def shard_columns(shards: ShardSource, shard: str, logical_tables: Sequence[str]) -> list[Row]:
    with shards.connect(shard) as conn:
        physical = discover_shard(conn, logical_tables).tables
    union: dict[str, dict[str, str]] = {name: {} for name in logical_tables}
    for table in physical:
        for column, declared in table.columns:
            union[table.logical].setdefault(column, declared)
    rows: list[Row] = []
    for logical, columns in union.items():
        if not columns:
            continue
        names = [*columns.items(), *((f.name, _type_name(f.type)) for f in ORIGIN_SCHEMA)]
        rows.extend((logical, name, declared, "", i) for i, (name, declared) in enumerate(names, 1))
    return rows


def merge_into(path: Path, rows: Iterable[Row]) -> str:
    """columns.csv text: the exported tables' rows replace theirs, other tables' rows stay."""
    new = list(rows)
    exported = {row[0] for row in new}
    kept: list[Row] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            for record in csv.DictReader(f):
                if record["table"] not in exported:
                    kept.append(
                        (
                            record["table"],
                            record["column"],
                            record["source_type"],
                            record["nullable"],
                            int(record["ordinal"]),
                        )
                    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(sorted([*kept, *new], key=lambda r: (r[0], r[4])))
    return out.getvalue()
