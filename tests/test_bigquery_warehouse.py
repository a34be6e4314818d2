"""BigQueryWarehouse against a fake client (the exact requests are asserted), and the partition
predicate / literal rendering of both dialects."""

import datetime as dt
import io
import socket
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from sqlglot import exp

from assets.ingestion.quarantine import QUARANTINE_SPLIT_BY
from assets.ingestion.reconciliation import (
    RECONCILIATION_ARROW_SCHEMA,
    RECONCILIATION_PARTITION_COLUMNS,
    RECONCILIATION_SPLIT_BY,
)
from resources.identifiers import InvalidIdentifierError
from resources.warehouse import (
    BigQueryWarehouse,
    DuckDBWarehouse,
    PartitionTarget,
    PartitionWrite,
    RowScope,
    partition_predicate,
    sql_literal,
)
from resources.warehouse.bigquery import _bigquery_schema, _bigquery_type
from resources.warehouse.bigquery_labels import label_value
from resources.warehouse.datasets import datasets
from tests.tables import replace_table

PROJECT = "minato-prod"
# What tables.get answers for the types Minato writes.
LEGACY_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


# What a finished query job reports (load jobs report no bytes billed).
QUERY_STATISTICS = {"total_bytes_processed": 100, "total_bytes_billed": 10485760, "slot_millis": 7}


class FakeJob:
    def __init__(
        self,
        error: Exception | None = None,
        rows: pa.Table | None = None,
        statistics: dict[str, int] | None = None,
    ) -> None:
        self.error = error
        self.rows = rows
        for name, value in (statistics or {}).items():
            setattr(self, name, value)

    def result(self) -> "FakeJob":
        if self.error is not None:
            raise self.error
        return self

    def to_arrow(self) -> pa.Table:
        assert self.rows is not None
        return self.rows


class FakeBigQueryClient:
    """Records what the warehouse asks BigQuery to do, in order; fails on request. Tables it
    created (or that a test puts in `tables`) exist, in that order of creation, and gain the
    columns an `ALTER TABLE … ADD COLUMN` adds; others raise NotFound."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.tables: dict[str, list[bigquery.SchemaField]] = {}  # table id -> columns
        self.views: set[str] = set()  # view ids
        self.require_filter: set[str] = set()  # table ids that refuse queries without a day filter
        self.num_rows: dict[str, int] = {}  # table id -> rows, as table metadata reports them
        self.datasets: set[str] = set()  # dataset ids that exist
        self.loads: list[dict[str, Any]] = []
        self.queries: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, bool]] = []
        self.fail_query: Exception | None = None
        self.fail_load_number: int | None = None
        self.query_rows: pa.Table | None = None
        # A parallel writer's move, right after a table (by name) is created.
        self.after_create: Callable[[str], None] | None = None

    def get_dataset(self, reference):
        if reference.dataset_id not in self.datasets:
            raise NotFound(reference.dataset_id)
        return bigquery.Dataset(reference)

    def create_dataset(self, dataset, exists_ok=False) -> None:
        self.datasets.add(dataset.dataset_id)
        self.calls.append(
            (
                "create_dataset",
                dataset.dataset_id,
                dataset.location,
                dataset.description,
                dataset.labels,
                exists_ok,
            )
        )

    def create_table(self, table, exists_ok=False) -> None:
        if table.view_query:
            self.calls.append(("create_view", table.table_id, table.view_query, exists_ok))
            self.views.add(f"{table.project}.{table.dataset_id}.{table.table_id}")
            return
        partitioning = table.time_partitioning
        self.calls.append(
            (
                "create_table",
                table.table_id,
                partitioning.field if partitioning else None,
                table.clustering_fields,
                table.expires is not None,
                exists_ok,
            )
        )
        table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
        self.tables.setdefault(table_id, list(table.schema))
        if table.require_partition_filter:
            self.require_filter.add(table_id)
        if self.after_create is not None:
            self.after_create(table.table_id)

    def list_tables(self, dataset: str) -> list[bigquery.table.TableListItem]:
        self.calls.append(("list_tables", dataset))
        return [
            bigquery.table.TableListItem(
                {
                    "tableReference": dict(
                        zip(("projectId", "datasetId", "tableId"), table_id.split("."), strict=True)
                    ),
                    "type": "VIEW" if table_id in self.views else "TABLE",
                }
            )
            for table_id in [*self.tables, *self.views]
            if table_id.rsplit(".", 1)[0] == dataset
        ]

    def get_table(self, table_id):
        self.calls.append(("get_table", table_id))
        if table_id in self.views:
            view = bigquery.Table(table_id)
            view._properties["type"] = "VIEW"
            return view
        if table_id not in self.tables:
            raise NotFound(table_id)
        # BigQuery answers in legacy type names (INTEGER for INT64); creation order is the
        # order of `tables`.
        schema = [
            bigquery.SchemaField(f.name, LEGACY_TYPES.get(f.field_type, f.field_type))
            for f in self.tables[table_id]
        ]
        table = bigquery.Table(table_id, schema=schema)
        table._properties["type"] = "TABLE"
        table.require_partition_filter = table_id in self.require_filter
        table._properties["numRows"] = str(self.num_rows.get(table_id, 0))
        table._properties["creationTime"] = str(1_000 * list(self.tables).index(table_id))
        return table

    def update_table(self, table, fields):
        self.calls.append(("update_table", table.table_id, fields))
        if table.require_partition_filter:
            self.require_filter.add(f"{table.project}.{table.dataset_id}.{table.table_id}")
        return table

    def load_table_from_file(self, file_obj, destination, job_config=None) -> FakeJob:
        self.loads.append(
            {
                "destination": destination,
                "source_format": job_config.source_format,
                "write_disposition": job_config.write_disposition,
                "labels": job_config.labels,
                "data": file_obj.read(),
            }
        )
        self.calls.append(("load", destination.split(".")[-1].rsplit("_", 1)[0]))
        if self.fail_load_number == len(self.loads):
            return FakeJob(error=RuntimeError("load failed"))
        return FakeJob()

    def query(self, sql, job_config=None) -> FakeJob:
        # What the client would send: the job resource's `maximumBytesBilled` (int64 as text).
        sent = job_config.to_api_repr()
        self.queries.append(
            {
                "sql": sql,
                "maximum_bytes_billed": sent["query"].get("maximumBytesBilled"),
                "labels": sent.get("labels", {}),
            }
        )
        self.calls.append(("query", sql.split(" ", 2)[0] + " " + sql.split(" ", 2)[1]))
        if sql.startswith("ALTER TABLE ") and self.fail_query is None:
            alter = sqlglot.parse_one(sql, read="bigquery")
            columns = self.tables[".".join(p.name for p in alter.this.parts)]
            for action in alter.args["actions"]:
                columns.append(
                    bigquery.SchemaField(action.name, action.args["kind"].sql("bigquery"))
                )
        return FakeJob(error=self.fail_query, rows=self.query_rows, statistics=QUERY_STATISTICS)

    def delete_table(self, table, not_found_ok=False) -> None:
        self.deleted.append((table, not_found_ok))


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeBigQueryClient:
    client = FakeBigQueryClient()
    monkeypatch.setattr(BigQueryWarehouse, "_client", lambda self: client)
    # Each test is a fresh process as far as "datasets ensured once" goes.
    monkeypatch.setattr("resources.warehouse.bigquery._DATASETS_ENSURED", set())
    return client


def warehouse(**settings: Any) -> BigQueryWarehouse:
    return BigQueryWarehouse(project=PROJECT, dataset_prefix="prod_", **settings)


ORDERS = pa.table(
    {
        "order_id": pa.array(["1", "2"], pa.string()),
        "ordered_at": pa.array(["2026-01-02 08:30:00", None], pa.string()),
        "_business_day": pa.array([dt.date(2026, 1, 2)] * 2, pa.date32()),
        "_shard": pa.array(["shard_01", "shard_01"], pa.string()),
        "_loaded_at": pa.array(
            [dt.datetime(2026, 1, 3, 1, 0, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")
        ),
    }
)
QUARANTINE = pa.table(
    {
        "logical_table": pa.array(["orders"], pa.string()),
        "_business_day": pa.array([dt.date(2026, 1, 2)], pa.date32()),
        "_shard": pa.array(["shard_01"], pa.string()),
        "reason": pa.array(["unparseable datetime: 'it''s'"], pa.string()),
    }
)
WRITES = [
    PartitionWrite(
        "lake",
        "orders",
        ORDERS,
        ("_business_day", "_shard"),
        ((dt.date(2026, 1, 2), "shard_01"), (dt.date(2026, 1, 3), "shard_01")),
        ("_shard",),
    ),
    PartitionWrite(
        "lake",
        "quarantine",
        QUARANTINE,
        ("logical_table", "_business_day", "_shard"),
        (("orders", dt.date(2026, 1, 2), "shard_01"), ("orders", dt.date(2026, 1, 3), None)),
        QUARANTINE_SPLIT_BY,
    ),
]


def test_first_write_creates_datasets_and_partitioned_targets_then_one_script(
    fake_client: FakeBigQueryClient,
) -> None:
    warehouse(maximum_bytes_billed=10**9).replace_partitions_atomically(WRITES)

    staging = [load["destination"] for load in fake_client.loads]
    assert len(staging) == 2
    assert staging[0].startswith(f"{PROJECT}.prod_lake._staging_orders_")
    assert staging[1].startswith(f"{PROJECT}.prod_lake._staging_quarantine_")
    assert len(set(staging)) == 2
    staging_names = [name.split(".")[-1] for name in staging]
    assert fake_client.calls == [
        # Every dataset of the catalog, with the prefix, location, description and labels.
        *[
            (
                "create_dataset",
                f"prod_{spec.name}",
                "asia-northeast1",
                spec.description,
                {
                    "minato_layer": spec.layer,
                    "minato_pii": str(spec.pii).lower(),
                    "minato_env": "dev",
                },
                True,
            )
            for spec in datasets()
        ],
        # Per target: a typed staging table with an expiry, one load, then its physical tables
        # (one per shard, created day-partitioned and clustered on first write, with the
        # columns of their siblings, listed before and after) and the view reading them under
        # the target's name, all outside the transaction.
        ("create_table", staging_names[0], None, None, True, False),
        ("load", "_staging_orders"),
        ("get_table", f"{PROJECT}.prod_lake.orders__shard_01"),
        ("list_tables", f"{PROJECT}.prod_lake"),
        ("create_table", "orders__shard_01", "_business_day", ["_shard"], False, True),
        ("list_tables", f"{PROJECT}.prod_lake"),
        ("get_table", f"{PROJECT}.prod_lake.orders__shard_01"),
        ("get_table", f"{PROJECT}.prod_lake.orders"),
        ("create_view", "orders", f"SELECT * FROM `{PROJECT}.prod_lake.orders__*`", True),
        ("create_table", staging_names[1], None, None, True, False),
        ("load", "_staging_quarantine"),
        ("get_table", f"{PROJECT}.prod_lake.quarantine__orders__shard_01"),
        # A NULL shard (a landed file's rows) is the empty part of the name.
        ("get_table", f"{PROJECT}.prod_lake.quarantine__orders__"),
        ("list_tables", f"{PROJECT}.prod_lake"),
        (
            "create_table",
            "quarantine__orders__shard_01",
            "_business_day",
            ["logical_table", "_shard"],
            False,
            True,
        ),
        (
            "create_table",
            "quarantine__orders__",
            "_business_day",
            ["logical_table", "_shard"],
            False,
            True,
        ),
        ("list_tables", f"{PROJECT}.prod_lake"),
        ("get_table", f"{PROJECT}.prod_lake.quarantine__orders__shard_01"),
        ("get_table", f"{PROJECT}.prod_lake.quarantine__orders__"),
        ("get_table", f"{PROJECT}.prod_lake.quarantine"),
        ("create_view", "quarantine", f"SELECT * FROM `{PROJECT}.prod_lake.quarantine__*`", True),
        ("query", "BEGIN TRANSACTION;\nDELETE"),
    ]
    orders = f"`{PROJECT}.prod_lake.orders__shard_01`"
    quarantine = f"`{PROJECT}.prod_lake.quarantine__orders__shard_01`"
    quarantine_null = f"`{PROJECT}.prod_lake.quarantine__orders__`"
    # Column names are quoted: a client's column may be called `order` or `select`.
    orders_columns = "`order_id`, `ordered_at`, `_business_day`, `_shard`, `_loaded_at`"
    quarantine_columns = "`logical_table`, `_business_day`, `_shard`, `reason`"
    orders_rows = (
        "(_business_day = '2026-01-02' AND _shard = 'shard_01') "
        "OR (_business_day = '2026-01-03' AND _shard = 'shard_01')"
    )
    quarantine_rows = (
        "(logical_table = 'orders' AND _business_day = '2026-01-02' AND _shard = 'shard_01')"
    )
    null_rows = "(logical_table = 'orders' AND _business_day = '2026-01-03' AND _shard IS NULL)"
    expected = "\n".join(
        [
            "BEGIN TRANSACTION;",
            f"DELETE FROM {orders} WHERE {orders_rows};",
            f"INSERT INTO {orders} ({orders_columns}) SELECT {orders_columns} "
            f"FROM `{staging[0]}` WHERE {orders_rows};",
            f"DELETE FROM {quarantine} WHERE {quarantine_rows};",
            f"INSERT INTO {quarantine} ({quarantine_columns}) SELECT {quarantine_columns} "
            f"FROM `{staging[1]}` WHERE {quarantine_rows};",
            f"DELETE FROM {quarantine_null} WHERE {null_rows};",
            f"INSERT INTO {quarantine_null} ({quarantine_columns}) SELECT {quarantine_columns} "
            f"FROM `{staging[1]}` WHERE {null_rows};",
            "COMMIT TRANSACTION;",
        ]
    )
    assert fake_client.queries == [
        {"sql": expected, "maximum_bytes_billed": "1000000000", "labels": {"minato_env": "dev"}}
    ]
    assert fake_client.deleted == [(staging[0], True), (staging[1], True)]


def test_shards_of_one_day_touch_disjoint_tables(fake_client: FakeBigQueryClient) -> None:
    """Parallel shard runs without conflicts: each run's transaction mutates only its own
    shard's physical tables, so no two runs of one day ever mutate the same table."""
    mutated: dict[str, set[str]] = {}
    for shard in ("shard_01", "shard_02", "shard_03"):
        fake_client.queries.clear()
        rows = ORDERS.set_column(3, "_shard", pa.array([shard] * 2))
        day = dt.date(2026, 1, 2)
        warehouse().replace_partitions_atomically(
            [
                PartitionWrite(
                    "lake",
                    "orders",
                    rows,
                    ("_business_day", "_shard"),
                    ((day, shard),),
                    ("_shard",),
                ),
                PartitionWrite(
                    "lake",
                    "quarantine",
                    QUARANTINE.slice(0, 0),
                    ("logical_table", "_business_day", "_shard"),
                    (("orders", day, shard),),
                    QUARANTINE_SPLIT_BY,
                ),
                PartitionWrite(
                    "monitoring",
                    "ingestion_reconciliation",
                    RECONCILIATION_ARROW_SCHEMA.empty_table(),
                    RECONCILIATION_PARTITION_COLUMNS,
                    (("orders", day, shard),),
                    RECONCILIATION_SPLIT_BY,
                ),
            ]
        )
        [script] = [q["sql"] for q in fake_client.queries]
        mutated[shard] = {
            s.find(exp.Table).name
            for s in sqlglot.parse(script, read="bigquery")
            if isinstance(s, exp.Delete | exp.Insert)
        }
    assert mutated == {
        shard: {
            f"orders__{shard}",
            f"quarantine__orders__{shard}",
            f"ingestion_reconciliation__orders__{shard}",
        }
        for shard in mutated
    }
    # The view is created once, then only looked up.
    assert [c[1] for c in fake_client.calls if c[0] == "create_view"] == [
        "orders",
        "quarantine",
        "ingestion_reconciliation",
    ]


def test_a_table_left_from_before_the_split_is_refused_before_anything_is_written(
    fake_client: FakeBigQueryClient,
) -> None:
    """`lake.orders` written as one table by an older Minato: the per-shard tables would be
    read by nobody, so the write stops with what to do, before the transaction."""
    fake_client.tables[f"{PROJECT}.prod_lake.orders"] = _bigquery_schema(ORDERS.schema)

    with pytest.raises(RuntimeError, match=r"prod_lake\.orders is a table; Minato now writes"):
        warehouse().replace_partitions_atomically(WRITES[:1])

    assert fake_client.queries == []
    assert len(fake_client.deleted) == 1  # the staging table


def test_a_partition_value_that_cannot_name_a_table_is_refused(
    fake_client: FakeBigQueryClient,
) -> None:
    write = PartitionWrite(
        "lake",
        "orders",
        ORDERS,
        ("_business_day", "_shard"),
        ((dt.date(2026, 1, 2), "a-b"),),
        ("_shard",),
    )
    with pytest.raises(ValueError, match="orders: partition value 'a-b' cannot name"):
        warehouse().replace_partitions_atomically([write])
    assert fake_client.queries == []


def test_existing_datasets_are_looked_up_not_created(fake_client: FakeBigQueryClient) -> None:
    """A writer with only dataEditor on existing datasets must never ask to create them."""
    fake_client.datasets = {f"prod_{spec.name}" for spec in datasets()}

    warehouse().replace_partitions_atomically(WRITES)

    assert not [call for call in fake_client.calls if call[0] == "create_dataset"]


def test_datasets_are_ensured_once_per_process(fake_client: FakeBigQueryClient) -> None:
    warehouse().replace_partitions_atomically(WRITES)
    fake_client.calls.clear()

    warehouse().replace_partitions_atomically(WRITES)

    assert not [call for call in fake_client.calls if call[0] == "create_dataset"]
    # The targets exist now: looked up, neither created nor altered.
    assert [call for call in fake_client.calls if call[1] in ("orders", "quarantine")] == []
    assert [call[1] for call in fake_client.calls if call[0] == "query"] == [
        "BEGIN TRANSACTION;\nDELETE"
    ]


def test_script_parses_as_googlesql(fake_client: FakeBigQueryClient) -> None:
    writes = [
        PartitionWrite("lake", "orders_by_shard", ORDERS, ("_shard",), (("it's \\ shard",),)),
        *WRITES,
    ]
    warehouse().replace_partitions_atomically(writes)
    [query] = fake_client.queries

    statements = sqlglot.parse(query["sql"], read="bigquery")

    assert [type(s) for s in statements] == [
        exp.Transaction,
        *[exp.Delete, exp.Insert] * 4,
        exp.Commit,
    ]
    # The escaped literal reads back as the original value, quote and backslash included.
    literals = [lit.this for lit in statements[1].find_all(exp.Literal) if lit.is_string]
    assert literals == ["it's \\ shard"]


def test_columns_new_in_the_data_take_one_alter_before_the_transaction(
    fake_client: FakeBigQueryClient,
) -> None:
    """Schema drift: the target exists without `coupon` and `discount`; one ALTER (one table
    metadata update, however many columns) adds both, older rows read NULL."""
    fake_client.tables[f"{PROJECT}.prod_lake.orders"] = _bigquery_schema(ORDERS.schema)
    drifted = ORDERS.append_column(
        "coupon", pa.array([None, "SPRING26"], pa.string())
    ).append_column("discount", pa.array([None, "150.00"], pa.string()).cast(pa.decimal128(12, 2)))
    write = PartitionWrite("lake", "orders", drifted, ("_shard",), (("shard_01",),))

    warehouse().replace_partitions_atomically([write])

    [load] = fake_client.loads
    staging = load["destination"]
    orders = f"`{PROJECT}.prod_lake.orders`"
    columns = (
        "`order_id`, `ordered_at`, `_business_day`, `_shard`, `_loaded_at`, `coupon`, `discount`"
    )
    assert [query["sql"] for query in fake_client.queries] == [
        f"ALTER TABLE {orders} ADD COLUMN IF NOT EXISTS `coupon` STRING, "
        "ADD COLUMN IF NOT EXISTS `discount` NUMERIC;",
        "\n".join(
            [
                "BEGIN TRANSACTION;",
                f"DELETE FROM {orders} WHERE (_shard = 'shard_01');",
                f"INSERT INTO {orders} ({columns}) SELECT {columns} FROM `{staging}`;",
                "COMMIT TRANSACTION;",
            ]
        ),
    ]
    [alter] = sqlglot.parse(fake_client.queries[0]["sql"], read="bigquery")
    assert [a.name for a in alter.args["actions"]] == ["coupon", "discount"]
    assert fake_client.deleted == [(staging, True)]


LAKE = f"{PROJECT}.prod_lake"
DAY = dt.date(2026, 1, 2)
# A client of one shard added an INT column.
WITH_POINTS = ORDERS.append_column("points", pa.array([7, None], pa.int64()))


def _existing_shard_tables(client: FakeBigQueryClient, rows: pa.Table, shards: range) -> None:
    """The physical tables of `lake.orders` for `shards` and its view, as earlier writes left
    them (with `rows`' columns); the datasets exist."""
    client.datasets = {f"prod_{spec.name}" for spec in datasets()}
    for n in shards:
        client.tables[f"{LAKE}.orders__shard_{n:02d}"] = _bigquery_schema(rows.schema)
    client.views.add(f"{LAKE}.orders")


def _write_shard(shard: str, rows: pa.Table) -> None:
    rows = rows.set_column(3, "_shard", pa.array([shard] * len(rows)))
    warehouse().replace_partitions_atomically(
        [
            PartitionWrite(
                "lake", "orders", rows, ("_business_day", "_shard"), ((DAY, shard),), ("_shard",)
            )
        ]
    )


def _columns(client: FakeBigQueryClient, table: str) -> list[tuple[str, str]]:
    return [(f.name, f.field_type) for f in client.tables[f"{LAKE}.{table}"]]


def test_a_column_new_on_one_shard_is_added_to_every_shard_table(
    fake_client: FakeBigQueryClient,
) -> None:
    """Schema drift on shard_02 of four: its table and each sibling get the column by one ALTER
    each (the view shows the newest table's columns, and any of them may be the newest); a
    second look at all four finds nothing left, then the one script runs."""
    _existing_shard_tables(fake_client, ORDERS, range(1, 5))

    _write_shard("shard_02", WITH_POINTS)

    shard = [f"{LAKE}.orders__shard_{n:02d}" for n in range(5)]
    assert fake_client.calls[2:] == [  # after the staging table and its load
        ("get_table", shard[2]),
        ("list_tables", LAKE),
        ("get_table", shard[1]),
        ("get_table", shard[3]),
        ("get_table", shard[4]),
        *[("query", "ALTER TABLE")] * 4,
        ("list_tables", LAKE),
        ("get_table", shard[2]),
        ("get_table", shard[1]),
        ("get_table", shard[3]),
        ("get_table", shard[4]),
        ("get_table", f"{LAKE}.orders"),
        ("query", "BEGIN TRANSACTION;\nDELETE"),
    ]
    assert [q["sql"] for q in fake_client.queries[:4]] == [
        f"ALTER TABLE `{shard[n]}` ADD COLUMN IF NOT EXISTS `points` INT64;" for n in (2, 1, 3, 4)
    ]
    for n in range(1, 5):
        assert _columns(fake_client, f"orders__shard_{n:02d}")[-1] == ("points", "INT64")


def test_a_new_shard_table_is_created_with_the_columns_its_siblings_gained(
    fake_client: FakeBigQueryClient,
) -> None:
    """shard_04's first write lacks `points`, which the three older tables have: its table,
    the newest and so the one whose columns the view shows, is created with `points` too;
    nothing is altered."""
    _existing_shard_tables(fake_client, WITH_POINTS, range(1, 4))

    _write_shard("shard_04", ORDERS)

    shard = [f"{LAKE}.orders__shard_{n:02d}" for n in range(5)]
    assert fake_client.calls[2:] == [
        ("get_table", shard[4]),
        ("list_tables", LAKE),
        ("get_table", shard[1]),
        ("get_table", shard[2]),
        ("get_table", shard[3]),
        ("create_table", "orders__shard_04", "_business_day", ["_shard"], False, True),
        ("list_tables", LAKE),
        ("get_table", shard[4]),
        ("get_table", shard[1]),
        ("get_table", shard[2]),
        ("get_table", shard[3]),
        ("get_table", f"{LAKE}.orders"),
        ("query", "BEGIN TRANSACTION;\nDELETE"),
    ]
    assert _columns(fake_client, "orders__shard_04") == _columns(fake_client, "orders__shard_01")
    assert _columns(fake_client, "orders__shard_04")[-1] == ("points", "INT64")
    # The write inserts its own columns; `points` reads NULL for its rows.
    [script] = [q["sql"] for q in fake_client.queries]
    assert "`points`" not in script


def test_a_column_added_by_a_parallel_writer_while_creating_is_picked_up(
    fake_client: FakeBigQueryClient,
) -> None:
    """Between the first look at the siblings and the creation of shard_04's table, another
    shard's writer adds `coupon` to shard_01's table: the second look finds it and adds it to
    the new table and to the siblings still without it (ADD COLUMN IF NOT EXISTS: harmless
    where that writer is quicker)."""
    _existing_shard_tables(fake_client, ORDERS, range(1, 4))

    def parallel_writer(created: str) -> None:
        if created == "orders__shard_04":
            fake_client.tables[f"{LAKE}.orders__shard_01"].append(
                bigquery.SchemaField("coupon", "STRING")
            )

    fake_client.after_create = parallel_writer

    _write_shard("shard_04", ORDERS)

    assert [q["sql"] for q in fake_client.queries[:-1]] == [
        f"ALTER TABLE `{LAKE}.orders__shard_{n:02d}` ADD COLUMN IF NOT EXISTS `coupon` STRING;"
        for n in (4, 2, 3)
    ]
    for n in range(1, 5):
        assert _columns(fake_client, f"orders__shard_{n:02d}")[-1] == ("coupon", "STRING")


def test_without_drift_a_write_only_looks_at_its_own_table(
    fake_client: FakeBigQueryClient,
) -> None:
    """The common case: no new column, no new table: one tables.get, no listing, no ALTER."""
    _existing_shard_tables(fake_client, WITH_POINTS, range(1, 5))

    _write_shard("shard_02", WITH_POINTS)
    _write_shard("shard_03", ORDERS)  # a write without a column the tables have

    staging = ("create_table", "load")  # the staging table and its load, per write
    assert [c for c in fake_client.calls if c[0] not in staging] == [
        ("get_table", f"{LAKE}.orders__shard_02"),
        ("get_table", f"{LAKE}.orders"),
        ("query", "BEGIN TRANSACTION;\nDELETE"),
        ("get_table", f"{LAKE}.orders__shard_03"),
        ("get_table", f"{LAKE}.orders"),
        ("query", "BEGIN TRANSACTION;\nDELETE"),
    ]
    created = [c[1] for c in fake_client.calls if c[0] == "create_table"]
    assert created == [staging.split(".")[-1] for staging, _ in fake_client.deleted]


def test_a_column_with_another_type_on_a_sibling_is_refused_before_any_change(
    fake_client: FakeBigQueryClient,
) -> None:
    """shard_01's table has `points` as text; shard_02's client sends integers: the view could
    not read the column, so the write stops, naming the table, the column and both types."""
    _existing_shard_tables(fake_client, ORDERS, range(1, 4))
    fake_client.tables[f"{LAKE}.orders__shard_01"].append(bigquery.SchemaField("points", "STRING"))

    with pytest.raises(ValueError) as refused:
        _write_shard("shard_02", WITH_POINTS)

    assert str(refused.value) == (
        "lake.orders: column 'points' is STRING in prod_lake.orders__shard_01 but INT64 in "
        "this write; the view over its physical tables cannot read one column with two types "
        "(cast the data, or convert the tables' column to one type)"
    )
    assert fake_client.queries == []
    assert _columns(fake_client, "orders__shard_02") == _columns(fake_client, "orders__shard_03")


def test_streamed_chunks_are_one_load_per_table_and_a_discarded_scope_never_leaves(
    fake_client: FakeBigQueryClient,
) -> None:
    """Chunks of one partition (a later one with a drifted column) become one Parquet load job;
    a scope taken back mid-write (a source read that failed and is read again) is not in it."""
    target = PartitionTarget("lake", "orders", ("_shard",), (("shard_01",),))
    retried = RowScope(("_source_table",), (("orders_2",),))
    with warehouse().partition_sink([target]) as sink:
        sink.append(target, ORDERS.slice(0, 1))
        sink.append(target, ORDERS.slice(1, 1), retried)
        sink.discard(retried)
        sink.append(target, ORDERS.slice(1, 1).append_column("coupon", pa.array(["WINTER"])))

    [load] = fake_client.loads
    loaded = pq.read_table(io.BytesIO(load["data"]))
    assert loaded.column_names == [*ORDERS.column_names, "coupon"]
    assert loaded.to_pydict()["order_id"] == ["1", "2"]
    assert loaded.to_pydict()["coupon"] == [None, "WINTER"]
    # The target is created from the union of the chunks' columns.
    assert [f.name for f in fake_client.tables[f"{PROJECT}.prod_lake.orders"]] == [
        *ORDERS.column_names,
        "coupon",
    ]


def test_a_target_without_any_append_is_refused(fake_client: FakeBigQueryClient) -> None:
    target = PartitionTarget("lake", "orders", ("_shard",), (("shard_01",),))
    with (
        pytest.raises(ValueError, match="append an empty table to declare its schema"),
        warehouse().partition_sink([target]),
    ):
        pass
    assert fake_client.queries == []


@pytest.mark.parametrize(
    ("arrow_type", "bigquery_type"),
    [
        (pa.string(), "STRING"),
        (pa.large_string(), "STRING"),
        (pa.int8(), "INT64"),
        (pa.int32(), "INT64"),
        (pa.int64(), "INT64"),
        (pa.float32(), "FLOAT64"),
        (pa.float64(), "FLOAT64"),
        (pa.bool_(), "BOOL"),
        (pa.date32(), "DATE"),
        (pa.timestamp("us", tz="UTC"), "TIMESTAMP"),
        (pa.timestamp("us", tz="Asia/Tokyo"), "TIMESTAMP"),
        (pa.timestamp("us"), "DATETIME"),
        (pa.decimal128(12, 2), "NUMERIC"),
        (pa.binary(), "BYTES"),
    ],
)
def test_bigquery_type(arrow_type: pa.DataType, bigquery_type: str) -> None:
    assert _bigquery_type(arrow_type) == bigquery_type


@pytest.mark.parametrize(
    "arrow_type", [pa.list_(pa.string()), pa.struct([("a", pa.int64())])], ids=str
)
def test_bigquery_type_rejects_unsupported_arrow_types(arrow_type: pa.DataType) -> None:
    with pytest.raises(TypeError) as raised:
        _bigquery_type(arrow_type)

    assert str(raised.value) == f"no BigQuery column type for Arrow type {arrow_type}"


def test_unsupported_column_type_fails_before_any_script_runs(
    fake_client: FakeBigQueryClient,
) -> None:
    tagged = ORDERS.append_column("tags", pa.array([["a"], []], pa.list_(pa.string())))
    write = PartitionWrite("lake", "orders", tagged, ("_shard",), (("shard_01",),))

    with pytest.raises(TypeError, match="no BigQuery column type for Arrow type list<"):
        warehouse().replace_partitions_atomically([write])

    # Refused while typing the staging table: nothing was created, loaded or run.
    assert fake_client.loads == fake_client.queries == []
    assert [call[0] for call in fake_client.calls if call[0] != "create_dataset"] == []
    # The staging name it had chosen is cleaned up all the same (not found is fine).
    [(staging, not_found_ok)] = fake_client.deleted
    assert staging.startswith(f"{PROJECT}.prod_lake._staging_orders_") and not_found_ok


def test_staging_tables_are_deleted_when_the_script_fails(
    fake_client: FakeBigQueryClient,
) -> None:
    fake_client.fail_query = RuntimeError("Transaction is aborted due to concurrent update")

    with pytest.raises(RuntimeError, match="concurrent update"):
        warehouse().replace_partitions_atomically(WRITES)

    staging = [load["destination"] for load in fake_client.loads]
    assert fake_client.deleted == [(name, True) for name in staging]
    assert len(fake_client.queries) == 1


def test_staging_tables_are_deleted_when_a_load_fails(fake_client: FakeBigQueryClient) -> None:
    fake_client.fail_load_number = 2

    with pytest.raises(RuntimeError, match="load failed"):
        warehouse().replace_partitions_atomically(WRITES)

    staging = [load["destination"] for load in fake_client.loads]
    assert len(staging) == 2
    assert fake_client.deleted == [(name, True) for name in staging]
    assert fake_client.queries == []  # nothing ran: the target tables are untouched


def test_loads_are_parquet_that_round_trips(fake_client: FakeBigQueryClient) -> None:
    warehouse().replace_partitions_atomically(WRITES)

    assert [load["source_format"] for load in fake_client.loads] == [
        bigquery.SourceFormat.PARQUET,
        bigquery.SourceFormat.PARQUET,
    ]
    assert [load["write_disposition"] for load in fake_client.loads] == [
        bigquery.WriteDisposition.WRITE_TRUNCATE,
        bigquery.WriteDisposition.WRITE_TRUNCATE,
    ]
    loaded = [pq.read_table(io.BytesIO(load["data"])) for load in fake_client.loads]
    assert loaded[0].equals(ORDERS)
    assert loaded[1].equals(QUARANTINE)


def test_query_and_execute_carry_the_cost_guard(fake_client: FakeBigQueryClient) -> None:
    fake_client.query_rows = pa.table({"n": [3]})
    wh = warehouse(maximum_bytes_billed=5_000_000)

    assert wh.query_arrow("SELECT 3 AS n").equals(pa.table({"n": [3]}))
    wh.execute("DROP TABLE IF EXISTS `minato-prod.prod_lake.tmp`")

    labels = {"minato_env": "dev"}  # outside a Dagster run: no asset, partition or run
    assert fake_client.queries == [
        {"sql": "SELECT 3 AS n", "maximum_bytes_billed": "5000000", "labels": labels},
        {
            "sql": "DROP TABLE IF EXISTS `minato-prod.prod_lake.tmp`",
            "maximum_bytes_billed": "5000000",
            "labels": labels,
        },
    ]


def test_the_cost_guard_defaults_to_the_setting_dbt_reads_too(
    fake_client: FakeBigQueryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_client.query_rows = pa.table({"n": [1]})
    monkeypatch.delenv("MINATO_BIGQUERY_MAX_BYTES_BILLED", raising=False)
    warehouse().query_arrow("SELECT 1 AS n")
    monkeypatch.setenv("MINATO_BIGQUERY_MAX_BYTES_BILLED", "2000")
    warehouse().query_arrow("SELECT 1 AS n")

    assert [q["maximum_bytes_billed"] for q in fake_client.queries] == ["100000000000", "2000"]


def test_qualified_names_use_project_and_prefix() -> None:
    assert warehouse().qualified("lake", "orders") == "`minato-prod.prod_lake.orders`"
    assert BigQueryWarehouse(project=PROJECT).qualified("fact", "fact_orders") == (
        "`minato-prod.fact.fact_orders`"
    )
    assert warehouse().kind == "bigquery"
    with pytest.raises(InvalidIdentifierError):
        warehouse().qualified("lake", "orders`; DROP TABLE x; --")
    with pytest.raises(InvalidIdentifierError):
        warehouse().qualified("lake.other", "orders")
    with pytest.raises(InvalidIdentifierError):
        BigQueryWarehouse(project=PROJECT, dataset_prefix="prod-").qualified("lake", "orders")


def test_constructing_the_resource_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the resource and its job config must not reach Google (nothing is faked here)."""

    def no_network(*args: object) -> None:
        raise AssertionError(f"network access: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    wh = warehouse(maximum_bytes_billed=123)

    config = wh._job_config()

    assert isinstance(config, bigquery.QueryJobConfig)
    assert config.maximum_bytes_billed == 123
    assert config.to_api_repr()["query"]["maximumBytesBilled"] == "123"


# --- partition_predicate and sql_literal ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "duckdb_literal", "bigquery_literal"),
    [
        (None, "NULL", "NULL"),
        (True, "TRUE", "TRUE"),
        (False, "FALSE", "FALSE"),
        (42, "42", "42"),
        (-1.5, "-1.5", "-1.5"),
        ("shard_01", "'shard_01'", "'shard_01'"),
        ("it's", "'it''s'", "'it\\'s'"),
        ("back\\slash", "'back\\slash'", "'back\\\\slash'"),
        ("東京都", "'東京都'", "'東京都'"),
        (dt.date(2026, 1, 2), "'2026-01-02'", "'2026-01-02'"),
        (dt.datetime(2026, 1, 2, 8, 30), "'2026-01-02T08:30:00'", "'2026-01-02T08:30:00'"),
    ],
)
def test_sql_literal(value: object, duckdb_literal: str, bigquery_literal: str) -> None:
    assert sql_literal(value, dialect="duckdb") == duckdb_literal
    assert sql_literal(value, dialect="bigquery") == bigquery_literal


@pytest.mark.parametrize(
    "value", ["it's", "'; DROP TABLE lake.orders; --", "a''b", "back\\slash", "東京都"]
)
def test_duckdb_reads_the_literal_back(value: str) -> None:
    with duckdb.connect() as conn:
        (read,) = conn.execute(f"SELECT {sql_literal(value, dialect='duckdb')}").fetchone()
    assert read == value


@pytest.mark.parametrize("value", ["it's", "'; DROP TABLE x; --", "back\\slash", "a\\'b"])
def test_googlesql_literal_parses_back(value: str) -> None:
    [statement] = sqlglot.parse(f"SELECT {sql_literal(value, dialect='bigquery')}", read="bigquery")
    [literal] = list(statement.find_all(exp.Literal))
    assert literal.this == value


def test_partition_predicate_for_both_dialects() -> None:
    partitions = [(dt.date(2026, 1, 2), "it's"), (dt.date(2026, 1, 3), None)]

    assert partition_predicate(["_business_day", "_shard"], partitions, dialect="duckdb") == (
        "(_business_day = '2026-01-02' AND _shard = 'it''s') "
        "OR (_business_day = '2026-01-03' AND _shard IS NULL)"
    )
    assert partition_predicate(["_business_day", "_shard"], partitions, dialect="bigquery") == (
        "(_business_day = '2026-01-02' AND _shard = 'it\\'s') "
        "OR (_business_day = '2026-01-03' AND _shard IS NULL)"
    )
    assert partition_predicate(["a"], [], dialect="duckdb") == "FALSE"
    assert partition_predicate([], [()], dialect="bigquery") == "TRUE"
    with pytest.raises(ValueError, match="does not match columns"):
        partition_predicate(["a", "b"], [("x",)], dialect="duckdb")
    with pytest.raises(InvalidIdentifierError):
        partition_predicate(["a; DROP TABLE t"], [("x",)], dialect="duckdb")


def test_duckdb_predicate_selects_exactly_the_partitions(tmp_path) -> None:
    wh = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    replace_table(
        wh,
        "lake",
        "t",
        pa.table(
            {
                "_business_day": pa.array(
                    [dt.date(2026, 1, 2), dt.date(2026, 1, 2), dt.date(2026, 1, 3)], pa.date32()
                ),
                "_shard": pa.array(["it's", "other", None], pa.string()),
            }
        ),
    )
    predicate = partition_predicate(
        ["_business_day", "_shard"],
        [(dt.date(2026, 1, 2), "it's"), (dt.date(2026, 1, 3), None)],
        dialect="duckdb",
    )

    rows = wh.query_arrow(f"SELECT _shard FROM lake.t WHERE {predicate} ORDER BY _shard")

    assert rows.column("_shard").to_pylist() == ["it's", None]


def test_jobs_inside_a_run_carry_labels_and_their_costs_reach_the_materialization(
    fake_client: FakeBigQueryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINATO_ENV", "prod")
    partitions = dg.MultiPartitionsDefinition(
        {
            "business_day": dg.StaticPartitionsDefinition(["2026-11-26"]),
            "shard": dg.StaticPartitionsDefinition(["shard_02"]),
        }
    )

    @dg.asset(key=["lake", "orders"], partitions_def=partitions)
    def orders(warehouse: BigQueryWarehouse) -> None:
        warehouse.replace_partitions_atomically(WRITES[:1])

    key = dg.MultiPartitionKey({"business_day": "2026-11-26", "shard": "shard_02"})
    result = dg.materialize([orders], partition_key=key, resources={"warehouse": warehouse()})

    expected = {
        "minato_env": "prod",
        "minato_asset": "lake_orders",
        # `2026-11-26|shard_02`: `|` is not allowed in a label value.
        "minato_partition": "2026-11-26_shard_02",
        "dagster_run_id": result.run_id,
    }
    assert [load["labels"] for load in fake_client.loads] == [expected]
    assert [query["labels"] for query in fake_client.queries] == [expected]
    # The materialization records what its jobs cost: one load and one script.
    [materialization] = result.asset_materializations_for_node("lake__orders")
    assert {k: v.value for k, v in materialization.metadata.items()} == {
        "bigquery_jobs": 2,
        "bigquery_bytes_processed": 100,
        "bigquery_bytes_billed": 10485760,
        "bigquery_slot_ms": 7,
    }


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("2026-11-26|shard_02", "2026-11-26_shard_02"),
        ("lake/Orders", "lake_orders"),
        ("x" * 80, "x" * 63),
        ("日本", "__"),
    ],
)
def test_label_values_are_sanitised(value: str, label: str) -> None:
    assert label_value(value) == label


def test_every_delete_prunes_to_the_partitions_of_its_target(
    fake_client: FakeBigQueryClient,
) -> None:
    """Partition pruning: in every branch of each DELETE, the target's day-partitioning column
    is compared with a literal, so BigQuery scans only the days being replaced."""
    warehouse().replace_partitions_atomically(WRITES)

    partitioned_by = {
        call[1]: call[2] for call in fake_client.calls if call[0] == "create_table" and call[2]
    }
    assert partitioned_by == {
        "orders__shard_01": "_business_day",
        "quarantine__orders__shard_01": "_business_day",
        "quarantine__orders__": "_business_day",
    }
    [script] = [q["sql"] for q in fake_client.queries]
    deletes = [s for s in sqlglot.parse(script, read="bigquery") if isinstance(s, exp.Delete)]
    assert len(deletes) == 3
    for delete in deletes:
        column = partitioned_by[delete.this.name]
        branches = (
            list(delete.args["where"].this.flatten())
            if isinstance(delete.args["where"].this, exp.Or)
            else [delete.args["where"].this]
        )
        for branch in branches:
            compared = [
                eq
                for eq in branch.find_all(exp.EQ)
                if eq.this.name == column and isinstance(eq.expression, exp.Literal)
            ]
            assert compared, f"{delete.this.name}: {branch.sql('bigquery')} scans every day"
