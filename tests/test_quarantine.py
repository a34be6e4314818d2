"""Rows that cannot be loaded go to `lake.quarantine` with a reason; counts always reconcile."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets.ingestion.quarantine import QUARANTINE_SCHEMA, split_valid_rows
from assets.ingestion.shard_tables import shard_table_assets
from pipelines import demo_data
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse

ORDERS = dg.AssetKey(["lake", "orders"])
ORDERS_ASSET = next(a for a in shard_table_assets() if a.key == ORDERS)
PARTITION = "2026-01-02|shard_02"
LOADED_AT = dt.datetime(2026, 1, 3, 1, 0, tzinfo=dt.UTC)


def order(order_id: int | None, ordered_at: str, updated_at: str = "2026-01-02 03:00:00") -> dict:
    return {
        "order_id": order_id,
        "customer_name": "鈴木 花子",
        "customer_email": "suzuki.00001@example.jp",
        "customer_phone": "090-0000-0001",
        "status": "shipped",
        "total_amount": "2980",
        "shipping_prefecture": "大阪府",
        "note": None,
        "ordered_at": ordered_at,
        "updated_at": updated_at,
    }


# A UTC shard: 2026-01-02 03:00 UTC is noon JST on 2 January, all rows are in the partition.
SHARD_ROWS = {
    "orders_201": [
        order(1, "2026-01-02 01:00:00"),
        order(2, "2026-02-30 25:61:00"),
        order(3, "0000-00-00 00:00:00"),
        order(4, "不明"),
        order(None, "2026-01-02 02:00:00"),
        order(6, "2026-01-02T02:30:00.123456"),
    ],
    "orders_202": [order(1, "2026-02-30 12:00:00"), order(2, "2026-01-02 00:10:00")],
}


@pytest.fixture
def shard_source(tmp_path: Path) -> ShardSource:
    path = tmp_path / "shard_02.sqlite"
    demo_data.write_shard(f"sqlite:///{path}", SHARD_ROWS)
    shards_file = tmp_path / "shards.yaml"
    shards_file.write_text(
        f"shards:\n  - name: shard_02\n    url: sqlite:///{path}\n    timezone: UTC\n",
        encoding="utf-8",
    )
    return ShardSource(shards_file=str(shards_file))


def materialize(source: ShardSource, warehouse: DuckDBWarehouse, instance) -> dict[str, int]:
    result = dg.materialize(
        [ORDERS_ASSET],
        resources={"shards": source, "warehouse": warehouse},
        partition_key=PARTITION,
        instance=instance,
    )
    assert result.success
    event = instance.get_latest_materialization_event(ORDERS)
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == PARTITION
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def quarantine_rows(warehouse: DuckDBWarehouse) -> list[tuple]:
    table = warehouse.query_arrow(
        "SELECT logical_table, strftime(_business_day, '%Y-%m-%d'), _shard, _source_table, "
        "_client_id, primary_key, column_name, reason FROM lake.quarantine "
        "ORDER BY _source_table, primary_key, column_name"
    )
    return [tuple(row.values()) for row in table.to_pylist()]


def lake_rows(warehouse: DuckDBWarehouse) -> list[tuple[str, str]]:
    table = warehouse.query_arrow(
        "SELECT _source_table, order_id FROM lake.orders ORDER BY _source_table, order_id"
    )
    return [tuple(row.values()) for row in table.to_pylist()]


EXPECTED_QUARANTINE = [
    (
        "orders",
        "2026-01-02",
        "shard_02",
        "orders_201",
        "201",
        '["2"]',
        "ordered_at",
        "unparseable datetime: '2026-02-30 25:61:00'",
    ),
    (
        "orders",
        "2026-01-02",
        "shard_02",
        "orders_201",
        "201",
        '["3"]',
        "ordered_at",
        "unparseable datetime: '0000-00-00 00:00:00'",
    ),
    (
        "orders",
        "2026-01-02",
        "shard_02",
        "orders_201",
        "201",
        '["4"]',
        "ordered_at",
        "unparseable datetime: '不明'",
    ),
    (
        "orders",
        "2026-01-02",
        "shard_02",
        "orders_201",
        "201",
        "[null]",
        "order_id",
        "NULL primary key: None",
    ),
    (
        "orders",
        "2026-01-02",
        "shard_02",
        "orders_202",
        "202",
        '["1"]',
        "ordered_at",
        "unparseable datetime: '2026-02-30 12:00:00'",
    ),
]


def test_bad_rows_are_quarantined_not_loaded(
    minato_env, shard_source: ShardSource, instance: dg.DagsterInstance
) -> None:
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))

    metadata = materialize(shard_source, warehouse, instance)

    assert quarantine_rows(warehouse) == EXPECTED_QUARANTINE
    assert lake_rows(warehouse) == [("orders_201", "1"), ("orders_201", "6"), ("orders_202", "2")]
    assert metadata["source_rows"] == 8
    assert metadata["loaded_rows"] == 3
    assert metadata["quarantined_rows"] == 5
    assert metadata["source_rows"] == metadata["loaded_rows"] + metadata["quarantined_rows"]
    assert metadata["dagster/row_count"] == 3
    assert metadata["tables_read"] == 2
    # The raw row is kept for whoever fixes the source, with its origin.
    raw = warehouse.query_arrow(
        "SELECT raw_row FROM lake.quarantine WHERE _source_table = 'orders_201' "
        "AND primary_key = '[\"4\"]'"
    )
    assert json.loads(raw.column(0)[0].as_py())["ordered_at"] == "不明"


def test_rerunning_a_partition_does_not_duplicate(
    minato_env, shard_source: ShardSource, instance: dg.DagsterInstance
) -> None:
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))
    first = materialize(shard_source, warehouse, instance)

    second = materialize(shard_source, warehouse, instance)

    assert {k: second[k] for k in ("source_rows", "loaded_rows", "quarantined_rows")} == {
        k: first[k] for k in ("source_rows", "loaded_rows", "quarantined_rows")
    }
    assert quarantine_rows(warehouse) == EXPECTED_QUARANTINE
    assert lake_rows(warehouse) == [("orders_201", "1"), ("orders_201", "6"), ("orders_202", "2")]


def test_fixed_source_row_leaves_quarantine_on_rerun(
    minato_env, tmp_path: Path, shard_source: ShardSource, instance: dg.DagsterInstance
) -> None:
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))
    materialize(shard_source, warehouse, instance)
    fixed = {**SHARD_ROWS, "orders_202": [order(1, "2026-02-28 12:00:00"), order(2, "2026-01-02")]}
    demo_data.write_shard(f"sqlite:///{tmp_path / 'shard_02.sqlite'}", fixed)

    metadata = materialize(shard_source, warehouse, instance)

    # orders_202/1 is now valid; orders_202/2 has a date without a time: quarantined instead.
    assert [row[3:8] for row in quarantine_rows(warehouse) if row[3] == "orders_202"] == [
        ("orders_202", "202", '["2"]', "ordered_at", "unparseable datetime: '2026-01-02'")
    ]
    assert ("orders_202", "1") in lake_rows(warehouse)
    assert ("orders_202", "2") not in lake_rows(warehouse)
    assert metadata["quarantined_rows"] == 5


# --- split_valid_rows ---------------------------------------------------------------------------


def with_origin(**columns: list) -> pa.Table:
    n = len(next(iter(columns.values())))
    return pa.table(
        {
            **{name: pa.array(values, pa.string()) for name, values in columns.items()},
            "_business_day": pa.array([dt.date(2026, 1, 2)] * n, pa.date32()),
            "_shard": pa.array(["shard_01"] * n, pa.string()),
            "_client_id": pa.array(["101"] * n, pa.string()),
            "_source_table": pa.array(["t_101"] * n, pa.string()),
            "_loaded_at": pa.array([LOADED_AT] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def bad_values(values: list, kind: str) -> list:
    """The values that `kind` rejects (each row keyed by its position)."""
    ids = [str(i) for i in range(len(values))]
    split = split_valid_rows(
        with_origin(id=ids, value=values),
        logical_table="t",
        key_columns=("id",),
        checks=[("value", kind)],
    )
    assert split.loaded.num_rows + split.quarantined_rows == len(values)
    keys = [json.loads(k) for k in split.quarantined.column("primary_key").to_pylist()]
    rejected = [values[int(i)] for [i] in keys]
    assert split.loaded.column("value").to_pylist() == [v for v in values if v not in rejected]
    return rejected


def test_datetime_kind() -> None:
    accepted = [
        "2026-01-02 08:30:00",
        "2026-01-02T08:30:00",
        "2026-01-02 08:30:00.123456",
        "2026-01-02T08:30:00.5",
        "2024-02-29 23:59:59",
        None,  # NULL is a missing value, not a bad one (not_null checks it if it must be set)
    ]
    rejected = [
        "2026-02-30 25:61:00",
        "0000-00-00 00:00:00",
        "不明",
        "2026-02-30 12:00:00",  # strptime would roll this over to 2 March
        "2025-02-29 00:00:00",
        "2026-01-02 24:00:00",
        "2026-01-02",
        "2026/01/02 08:30:00",
        "",
        "02-01-2026 08:30:00",
    ]

    assert bad_values(accepted + rejected, "datetime") == rejected


def test_date_kind() -> None:
    accepted = ["2026-01-02", "2024-02-29", None]
    rejected = ["2026-02-30", "2025-02-29", "2026-01-02 00:00:00", "2026/01/02", "20260102", "x"]

    assert bad_values(accepted + rejected, "date") == rejected


def test_integer_kind() -> None:
    accepted = ["0", "12", "-3", "00042", None]
    rejected = ["1,280", "1.5", "12x", " 12", "", "一", "+5"]

    assert bad_values(accepted + rejected, "integer") == rejected


def test_not_null_kind() -> None:
    accepted = ["a", "", "None"]
    rejected = [None]

    assert bad_values(accepted + rejected, "not_null") == rejected


def test_quarantine_record_fields_and_distinct_row_count() -> None:
    data = with_origin(
        id=["1", None, "3"],
        ordered_at=["2026-01-02 01:00:00", "2026-13-01 00:00:00", "2026-01-02 01:00:00"],
        clicks=["5", "x", "7"],
    )

    split = split_valid_rows(
        data,
        logical_table="orders",
        key_columns=("id",),
        checks=[("id", "not_null"), ("ordered_at", "datetime"), ("clicks", "integer")],
    )

    # One bad row, three problems: three records, one quarantined row.
    assert split.quarantined_rows == 1
    assert split.loaded.column("id").to_pylist() == ["1", "3"]
    assert split.loaded.schema == data.schema
    assert split.quarantined.schema == QUARANTINE_SCHEMA
    records = split.quarantined.to_pylist()
    assert [(r["column_name"], r["reason"]) for r in records] == [
        ("id", "NULL primary key: None"),
        ("ordered_at", "unparseable datetime: '2026-13-01 00:00:00'"),
        ("clicks", "not an integer: 'x'"),
    ]
    for record in records:
        assert record["primary_key"] == "[null]"
        assert record["logical_table"] == "orders"
        assert record["_business_day"] == dt.date(2026, 1, 2)
        assert record["_shard"] == "shard_01"
        assert record["_source_table"] == "t_101"
        assert record["_client_id"] == "101"
        assert record["_loaded_at"] == LOADED_AT
        assert json.loads(record["raw_row"])["clicks"] == "x"


def test_primary_key_is_a_json_array_of_the_key_values() -> None:
    data = with_origin(
        date=["2026-11-18", "2026-11-18", None],
        page=["/pricing", "None", "None"],
        clicks=["12x", "x", "y"],
    )

    split = split_valid_rows(
        data,
        logical_table="search_console_pages",
        key_columns=("date", "page"),
        checks=[("clicks", "integer")],
    )

    keys = split.quarantined.column("primary_key").to_pylist()
    # In key-column order; a NULL stays distinct from the text "None".
    assert keys == [
        '["2026-11-18", "/pricing"]',
        '["2026-11-18", "None"]',
        '[null, "None"]',
    ]
    assert [json.loads(k) for k in keys] == [
        ["2026-11-18", "/pricing"],
        ["2026-11-18", "None"],
        [None, "None"],
    ]


def test_primary_key_of_a_non_string_key_is_its_text() -> None:
    data = with_origin(value=["x"]).append_column(
        "day", pa.array([dt.date(2026, 1, 2)], pa.date32())
    )

    split = split_valid_rows(
        data, logical_table="t", key_columns=("day",), checks=[("value", "integer")]
    )

    assert split.quarantined.column("primary_key").to_pylist() == ['["2026-01-02"]']


def test_empty_input_gives_empty_split() -> None:
    data = with_origin(id=[], value=[])

    split = split_valid_rows(
        data, logical_table="t", key_columns=("id",), checks=[("value", "datetime")]
    )

    assert split.loaded.num_rows == 0
    assert split.quarantined.num_rows == 0
    assert split.quarantined.schema == QUARANTINE_SCHEMA
    assert split.quarantined_rows == 0
