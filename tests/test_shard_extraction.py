"""Extraction at scale: one catalog query per shard, batched UNION ALL reads, schema drift."""

import datetime as dt
import zlib
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pymysql
import pytest
import sqlalchemy as sa
import yaml

from assets.ingestion.checksums import key_checksum
from assets.ingestion.shard_batches import BatchDone, Chunk, plan_batches
from assets.ingestion.shard_catalog import (
    PhysicalTable,
    SchemaDriftError,
    check_drift,
    discover,
    discover_shard,
)
from assets.ingestion.shard_load import business_day_bounds
from assets.ingestion.shard_reader import read_windows
from assets.ingestion.shard_sql import ReadWindow, union_query
from assets.ingestion.shard_tables import shard_table_assets
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse
from tests.servers import require_server

ORDERS = shard_table_assets()[0]
assert ORDERS.key == dg.AssetKey(["lake", "orders"])


def _table(name: str, *columns: tuple[str, str]) -> PhysicalTable:
    logical, client = name.rsplit("_", 1)
    return PhysicalTable(logical, client, name, tuple(columns))


def test_drift_reports_missing_and_widened_columns() -> None:
    old = _table("orders_1", ("order_id", "int"), ("note", "varchar"))
    new = _table("orders_2", ("order_id", "bigint"), ("note", "text"), ("coupon", "varchar"))
    drift = check_drift("shard_01", [old, new])
    assert drift == {
        "tables": 2,
        "columns_missing_in_some_tables": {"coupon": 1},
        "columns_with_widened_types": ["note", "order_id"],
    }


def test_irreconcilable_types_name_shard_tables_column_and_types() -> None:
    tables = [
        _table("orders_1", ("ordered_at", "datetime")),
        _table("orders_7", ("ordered_at", "int")),
    ]
    with pytest.raises(SchemaDriftError) as error:
        check_drift("shard_02", tables)
    assert str(error.value) == (
        "shard shard_02: column 'ordered_at' is datetime in orders_1 but int in orders_7; "
        "these types cannot be unioned"
    )


def test_union_query_text() -> None:
    tables = [
        _table("orders_1", ("order_id", "bigint"), ("payload", "blob"), ("updated_at", "datetime")),
        _table("orders_2", ("order_id", "bigint"), ("payload", "blob"), ("updated_at", "datetime")),
    ]
    read = ReadWindow(
        "updated_at", "2026-01-01 00:00:00", "2026-01-02 00:00:00", "mysql", ("order_id",), (True,)
    )
    sql = union_query(tables, read)
    window = "`updated_at` >= '2026-01-01 00:00:00' AND `updated_at` < '2026-01-02 00:00:00'"
    # Binary as bytes (UTF-8 is checked at ingestion), anything that could break the driver as
    # text rendered by the server (text columns are read as they are).
    columns = (
        "CAST(`order_id` AS CHAR(100)) AS `order_id`, `payload` AS `payload`, "
        "CAST(`updated_at` AS CHAR(100)) AS `updated_at`"
    )
    # Each table once: its rows, with the raw key the server sums for the checksum...
    rows = [
        f"SELECT '{n}' AS _client_id, 'orders_{n}' AS _source_table, {columns}, "
        f"`order_id` AS _source_key_0 FROM `orders_{n}` WHERE {window}"
        for n in (1, 2)
    ]
    # ...and the server's own count and key sum of the whole batch on every row, in the same
    # statement and scan; a marker row of NULLs ends the batch, so the summary always arrives.
    assert sql == (
        "SELECT u.`_client_id`, u.`_source_table`, u.`order_id`, u.`payload`, u.`updated_at`, "
        "CAST(COUNT(u._source_table) OVER () AS CHAR) AS _source_rows, "
        "CAST(COALESCE(SUM(u._source_key_0) OVER (), 0) AS CHAR) AS _source_key_sum\n"
        "FROM (\n"
        + "\nUNION ALL\n".join([*rows, "SELECT NULL, NULL, NULL, NULL, NULL, NULL"])
        + "\n) AS u"
    )


def test_first_partition_reads_all_history_and_rows_without_change_time() -> None:
    tables = [_table("orders_1", ("order_id", "varchar"), ("updated_at", "datetime"))]
    read = ReadWindow("updated_at", None, "2025-01-02 00:00:00", "sqlite", ("order_id",), (False,))
    sql = union_query(tables, read)
    assert """WHERE ("updated_at" < '2025-01-02 00:00:00' OR "updated_at" IS NULL)""" in sql
    # A text key is summed as CRC32s (the same function is computed on the client).
    assert 'crc32("order_id") AS _source_key_0' in sql


def test_batches_group_same_layouts_and_bound_their_size() -> None:
    narrow = [_table(f"orders_{i}", ("a", "int")) for i in range(5)]
    wide = [_table(f"orders_{i}", ("a", "int"), ("b", "int")) for i in range(5, 8)]
    read = ReadWindow("a", "0", "1", "mysql", ("a",), (True,))
    plan = plan_batches([*narrow, *wide], read, batch_size=2)
    assert [[t.name for t in b.tables] for b in plan] == [
        ["orders_0", "orders_1"],
        ["orders_2", "orders_3"],
        ["orders_4"],
        ["orders_5", "orders_6"],
        ["orders_7"],
    ]
    # No primary key declared: duplicates are possible, so rows come sorted to expose them.
    assert all(
        b.ordered and b.sql.endswith("ORDER BY u._source_table, u.`a`, u.`a` DESC") for b in plan
    )
    keyed = [PhysicalTable("orders", "9", "orders_9", (("a", "int"),), ("a",))]
    (batch,) = plan_batches(keyed, read)
    assert not batch.ordered and "ORDER BY" not in batch.sql


def test_key_checksum_matches_the_server_side_sum() -> None:
    data = pa.table({"k": ["1", None, "-3", "18446744073709551615"], "t": ["a", "b", None, "d"]})
    # Integer keys: plain sum (BIGINT UNSIGNED beyond int64 included), mod 2**64.
    assert key_checksum(data, ["k"], [True]) == (1 - 3 + 18446744073709551615) % 2**64
    assert key_checksum(data, ["t"], [False]) == sum(zlib.crc32(c.encode()) for c in "abd")


# --- against the real MariaDB: a few hundred client tables on two shards, with drift -----------

HOST, PORT = "127.0.0.1", 3306
DAY = dt.date(2026, 1, 5)
CLIENTS_PER_SHARD = 150


@pytest.fixture
def drifting_shards(tmp_path):
    require_server(HOST, PORT, "MariaDB")
    admin = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    databases = {"shard_01": "minato_it_scale_01", "shard_02": "minato_it_scale_02"}
    zones = {"shard_01": "Asia/Tokyo", "shard_02": "UTC"}
    try:
        with admin.cursor() as cursor:
            for shard, database in databases.items():
                cursor.execute(f"DROP DATABASE IF EXISTS {database}")
                cursor.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
                # 11:00 JST on DAY, written in the shard's own zone.
                stamp = (
                    "2026-01-05 11:00:00" if zones[shard] == "Asia/Tokyo" else "2026-01-05 02:00:00"
                )
                for n in range(CLIENTS_PER_SHARD):
                    client = (1 if shard == "shard_01" else 2) * 1000 + n
                    newer = n % 3 == 0  # newer clients have a coupon column and a wider key
                    cursor.execute(
                        f"CREATE TABLE {database}.orders_{client} ("
                        f"order_id {'BIGINT' if newer else 'INT'}, status VARCHAR(20), "
                        f"note TEXT, {'coupon VARCHAR(20), ' if newer else ''}"
                        "ordered_at DATETIME, updated_at DATETIME)"
                    )
                    coupon = ", 'WINTER'" if newer else ""
                    cursor.execute(
                        f"INSERT INTO {database}.orders_{client} VALUES "
                        + ", ".join(
                            f"({row}, 'shipped', {'NULL' if row % 2 else repr('置き配')}{coupon}, "
                            f"'{stamp}', '{stamp}')"
                            for row in range(1, 4)
                        )
                    )
        shards_file = tmp_path / "shards.yaml"
        shards_file.write_text(
            yaml.safe_dump(
                {
                    "shards": [
                        {
                            "name": s,
                            "url": f"mysql+pymysql://root@{HOST}:{PORT}/{db}",
                            "timezone": zones[s],
                        }
                        for s, db in databases.items()
                    ]
                }
            )
        )
        yield shards_file, databases, admin
    finally:
        with admin.cursor() as cursor:
            for database in databases.values():
                cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def _materialize(shards_file, duckdb_path, instance, shard: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ORDERS],
        partition_key=f"{DAY}|{shard}",
        resources={
            "shards": ShardSource(shards_file=str(shards_file)),
            "warehouse": DuckDBWarehouse(path=str(duckdb_path)),
        },
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.mariadb
def test_hundreds_of_drifting_tables_on_two_shards(drifting_shards, tmp_path, instance) -> None:
    shards_file, databases, _ = drifting_shards
    source = ShardSource(shards_file=str(shards_file))
    with source.connect("shard_01") as conn:
        found = discover_shard(conn, ["orders"]).tables
        start, end = business_day_bounds(DAY)
        events = list(read_windows(conn, found, "updated_at", start, end, ["order_id"]))
    chunks = [e for e in events if isinstance(e, Chunk)]
    done = [e for e in events if isinstance(e, BatchDone)]
    assert len(found) == CLIENTS_PER_SHARD
    assert len(done) > 1  # two layouts, so at least two round trips, not one per table
    assert sum(len(d.batch.tables) for d in done) == CLIENTS_PER_SHARD
    assert sum(c.data.num_rows for c in chunks) == CLIENTS_PER_SHARD * 3
    assert sum(d.source_rows for d in done) == CLIENTS_PER_SHARD * 3
    assert sum(d.source_key_sum for d in done) == CLIENTS_PER_SHARD * (1 + 2 + 3)

    lake = tmp_path / "warehouse.duckdb"
    for shard in databases:
        result = _materialize(shards_file, lake, instance, shard)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["tables_read"].value == CLIENTS_PER_SHARD
        assert metadata["source_rows"].value == CLIENTS_PER_SHARD * 3
        drift = metadata["schema_drift"].value[shard]
        assert drift["columns_missing_in_some_tables"] == {"coupon": CLIENTS_PER_SHARD * 2 // 3}
        assert drift["columns_with_widened_types"] == ["order_id"]

    with duckdb.connect(str(lake), read_only=True) as conn:
        rows = conn.execute(
            "SELECT _shard, count(*), count(coupon), count(note), min(updated_at) "
            "FROM lake.orders GROUP BY 1 ORDER BY 1"
        ).fetchall()
    per_shard = CLIENTS_PER_SHARD * 3
    assert rows == [
        ("shard_01", per_shard, per_shard // 3, CLIENTS_PER_SHARD, "2026-01-05 11:00:00"),
        ("shard_02", per_shard, per_shard // 3, CLIENTS_PER_SHARD, "2026-01-05 02:00:00"),
    ]


@pytest.mark.mariadb
def test_irreconcilable_drift_fails_the_partition(drifting_shards, tmp_path, instance) -> None:
    shards_file, databases, admin = drifting_shards
    with admin.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {databases['shard_02']}.orders_2999 (order_id INT, status VARCHAR(20), "
            "note TEXT, ordered_at INT, updated_at DATETIME)"
        )
    result = _materialize(shards_file, tmp_path / "warehouse.duckdb", instance, "shard_02")
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    # The shard, its URL (without a password) and both tables, column and types.
    assert message == (
        f"shard shard_02 (mysql+pymysql://root@127.0.0.1:3306/{databases['shard_02']}): "
        "column 'ordered_at' is datetime in orders_2000 but int in orders_2999; these types "
        "cannot be unioned"
    )


def test_sqlite_catalog_is_one_query(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/s.sqlite")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders_1 (order_id INTEGER, updated_at TEXT)")
        conn.exec_driver_sql("CREATE TABLE orders_2 (order_id INTEGER, updated_at TEXT, x REAL)")
        conn.exec_driver_sql("CREATE TABLE unrelated (a)")
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.connect() as conn:
        found = discover(conn, ["orders"]).tables
    assert [(t.name, t.column_names) for t in found] == [
        ("orders_1", ("order_id", "updated_at")),
        ("orders_2", ("order_id", "updated_at", "x")),
    ]
    assert len(statements) == 1


# --- reconciliation: the source's own count against loaded + quarantined ----------------------


def _lake_run(instance, day: dt.date) -> dg.ExecuteInProcessResult:
    from pipelines.definitions import defs

    return defs.resolve_job_def("ingest_shards").execute_in_process(
        instance=instance, partition_key=f"{day}|shard_01", raise_on_error=False
    )


def test_reconciliation_is_recorded_and_checked(seeded_demo, minato_env, instance) -> None:
    result = _lake_run(instance, seeded_demo.last_day)
    assert result.success
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert {(c.asset_key.to_user_string(), c.passed) for c in checks} == {
        ("lake/orders", True),
        ("lake/order_items", True),
        ("lake/products", True),
    }
    with duckdb.connect(str(minato_env.duckdb_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT logical_table, shard, source_rows, loaded_rows + quarantined_rows, reconciled "
            "FROM monitoring.ingestion_reconciliation ORDER BY logical_table"
        ).fetchall()
        loaded = conn.execute(
            "SELECT count(*) FROM lake.orders WHERE _shard = 'shard_01'"
        ).fetchall()[0][0]
    assert [r[0] for r in rows] == ["order_items", "orders", "products"]
    assert all(r[1] == "shard_01" and r[2] == r[3] and r[4] for r in rows)
    assert rows[1][2] >= loaded > 0


def test_rows_lost_in_transit_fail_the_blocking_check(
    seeded_demo, minato_env, instance, monkeypatch
) -> None:
    import assets.ingestion.shard_reader as reader

    real_stream = reader._stream

    def lossy_stream(*args):
        for data in real_stream(*args):
            # A driver that silently drops the first data row of every chunk.
            first = pc.index(pc.is_valid(data["_source_table"]), True).as_py()
            if first >= 0:
                data = pa.concat_tables([data.slice(0, first), data.slice(first + 1)])
            yield data

    monkeypatch.setattr(reader, "_stream", lossy_stream)
    result = _lake_run(instance, seeded_demo.last_day)

    failed = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not e.asset_check_evaluation_data.passed
    ]
    # Products did not change that day: nothing to lose, nothing to flag.
    assert {c.asset_key.to_user_string() for c in failed} == {"lake/orders", "lake/order_items"}
    assert all(c.severity == dg.AssetCheckSeverity.ERROR for c in failed)
    with duckdb.connect(str(minato_env.duckdb_path), read_only=True) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM monitoring.ingestion_reconciliation WHERE NOT reconciled"
            ).fetchall()[0][0]
            == 2
        )


# --- timezones: declared, or read from the server; the seed's 9-hour bug ----------------------


def test_server_zone_names() -> None:
    from resources.shards import ShardConfigError, server_zone

    assert server_zone("s", "+09:00") == "Etc/GMT-9"  # POSIX sign: UTC+9
    assert server_zone("s", "+00:00") == "UTC"
    assert server_zone("s", "JST") == "Asia/Tokyo"
    assert server_zone("s", "Asia/Tokyo") == "Asia/Tokyo"
    with pytest.raises(ShardConfigError, match="declare `timezone`"):
        server_zone("s", "CEST")


def test_sqlite_shard_without_timezone_is_refused(tmp_path) -> None:
    from resources.shards import ShardConfigError

    sa.create_engine(f"sqlite:///{tmp_path}/s.sqlite").connect().close()
    shards_file = tmp_path / "shards.yaml"
    shards_file.write_text(f"shards:\n  - name: shard_01\n    url: sqlite:///{tmp_path}/s.sqlite\n")
    with (
        ShardSource(shards_file=str(shards_file)).connect("shard_01") as conn,
        pytest.raises(ShardConfigError, match="must declare timezone"),
    ):
        _ = conn.timezone


@pytest.mark.mariadb
def test_nine_hour_bug_reproduced_and_avoided_by_declaring(tmp_path, instance) -> None:
    """JST data on a restored server running in UTC: reading the zone from the server shifts
    every instant by 9 hours; a declared zone loads the same instants whatever the server says."""
    require_server(HOST, PORT, "MariaDB")
    admin = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    database = "minato_it_ninehours"
    with admin.cursor() as cursor:
        cursor.execute("SELECT @@global.time_zone")
        (original_zone,) = cursor.fetchone()
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        cursor.execute(f"CREATE DATABASE {database}")
        cursor.execute(
            f"CREATE TABLE {database}.orders_1 (order_id INT, status VARCHAR(20), "
            "ordered_at DATETIME, updated_at DATETIME)"
        )
        # 11:00 on the JST wall clock = 02:00 UTC.
        cursor.execute(
            f"INSERT INTO {database}.orders_1 VALUES "
            "(1, 'shipped', '2026-01-05 10:00:00', '2026-01-05 11:00:00')"
        )
    url = f"mysql+pymysql://root@{HOST}:{PORT}/{database}"
    declared = tmp_path / "declared.yaml"
    declared.write_text(f"shards:\n  - name: shard_01\n    url: {url}\n    timezone: Asia/Tokyo\n")
    undeclared = tmp_path / "undeclared.yaml"
    undeclared.write_text(f"shards:\n  - name: shard_01\n    url: {url}\n")

    def loaded_instant(shards_file, lake) -> dt.datetime:
        assert _materialize(shards_file, lake, instance, "shard_01").success
        with duckdb.connect(str(lake), read_only=True) as conn:
            text, zone = conn.execute("SELECT updated_at, _source_tz FROM lake.orders").fetchall()[
                0
            ]
        return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))

    truth = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)
    try:
        results = {}
        for server_zone in ("+00:00", "+09:00"):
            with admin.cursor() as cursor:
                cursor.execute(f"SET GLOBAL time_zone = '{server_zone}'")
            tag = server_zone[1:3]
            results[server_zone] = (
                loaded_instant(declared, tmp_path / f"declared_{tag}.duckdb"),
                loaded_instant(undeclared, tmp_path / f"undeclared_{tag}.duckdb"),
            )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"SET GLOBAL time_zone = '{original_zone}'")
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()

    # Declared: identical instants whatever zone the server runs in.
    assert results["+00:00"][0] == results["+09:00"][0] == truth
    # From the server: right on a JST server, 9 hours off on the restored UTC one (the bug).
    assert results["+09:00"][1] == truth
    assert results["+00:00"][1] - truth == dt.timedelta(hours=9)


@pytest.mark.mariadb
def test_timestamp_columns_render_in_the_shard_zone(tmp_path, instance) -> None:
    """MySQL converts TIMESTAMP values to the reading session's zone: the session is set to the
    shard's, so a TIMESTAMP and a DATETIME written for the same JST instant load identically."""
    require_server(HOST, PORT, "MariaDB")
    admin = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    database = "minato_it_timestamps"
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        cursor.execute(f"CREATE DATABASE {database}")
        cursor.execute(
            f"CREATE TABLE {database}.orders_1 (order_id INT, status VARCHAR(20), "
            "ordered_at DATETIME, paid_at TIMESTAMP NULL, updated_at DATETIME)"
        )
        # Written by a UTC session: 02:00 UTC is 11:00 on the JST wall clock.
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(
            f"INSERT INTO {database}.orders_1 VALUES "
            "(1, 'paid', '2026-01-05 11:00:00', '2026-01-05 02:00:00', '2026-01-05 11:00:00')"
        )
    shards_file = tmp_path / "shards.yaml"
    url = f"mysql+pymysql://root@{HOST}:{PORT}/{database}"
    shards_file.write_text(
        f"shards:\n  - name: shard_01\n    url: {url}\n    timezone: Asia/Tokyo\n"
    )
    try:
        assert _materialize(
            shards_file, tmp_path / "warehouse.duckdb", instance, "shard_01"
        ).success
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT ordered_at, paid_at FROM lake.orders").fetchall() == [
            ("2026-01-05 11:00:00", "2026-01-05 11:00:00")
        ]
