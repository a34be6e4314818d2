"""Bad data and faults against the real MariaDB: what cannot be loaded is quarantined with its
reason, a connection killed mid-read or a lock wait is retried without doubling a row, and a
table that keeps failing is named while the partition stays exactly as it was."""

import datetime as dt
import threading

import dagster as dg
import duckdb
import pytest
import yaml

import assets.ingestion.shard_reader as reader
from assets.ingestion.lake_tables import LakeTable
from assets.ingestion.shard_load import load_partitions
from assets.ingestion.shard_reader import ShardReadError
from assets.ingestion.shard_tables import build_shard_table_asset
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse
from tests.servers import mariadb_database

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
DATABASE = "minato_it_faults"
DAY = dt.date(2026, 1, 5)
KEY = f"{DAY}|shard_01"
TABLE = LakeTable("orders", ("order_id",), ("ordered_at",), "Orders for the fault tests.")
ORDERS = build_shard_table_asset(TABLE)


@pytest.fixture
def shard(tmp_path):
    shards_file = tmp_path / "shards.yaml"
    url = f"mysql+pymysql://root@{HOST}:{PORT}/{DATABASE}"
    shards_file.write_text(
        yaml.safe_dump({"shards": [{"name": "shard_01", "url": url, "timezone": "Asia/Tokyo"}]})
    )
    with mariadb_database(DATABASE, HOST, PORT) as admin:
        try:
            yield admin, ShardSource(shards_file=str(shards_file))
        finally:
            with admin.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")


def _materialize(source: ShardSource, lake, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ORDERS],
        partition_key=KEY,
        resources={"shards": source, "warehouse": DuckDBWarehouse(path=str(lake))},
        instance=instance,
        raise_on_error=False,
    )


def _scalar_rows(lake, sql: str) -> list[tuple]:
    with duckdb.connect(str(lake), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _reconciliation(lake) -> list[tuple]:
    return _scalar_rows(
        lake,
        "SELECT source_rows, loaded_rows, quarantined_rows, "
        "source_key_checksum = loaded_key_checksum, reconciled "
        "FROM monitoring.ingestion_reconciliation",
    )


def test_bad_rows_are_quarantined_with_shard_table_key_column_and_reason(
    shard, tmp_path, instance
) -> None:
    admin, source = shard
    with admin.cursor() as cursor:
        # Old servers and lax sql_modes stored all of this; the lake must not lose any of it.
        cursor.execute("SET SESSION sql_mode = ''")
        # No primary key: a legacy table may hold the same key twice.
        cursor.execute(
            "CREATE TABLE orders_7 (order_id BIGINT UNSIGNED, amount DECIMAL(40, 5), "
            "ordered_at DATETIME, shipped_on DATE, payload VARBINARY(16), note VARCHAR(20), "
            "updated_at DATETIME)"
        )
        good = "10.50000, '2026-01-05 09:00:00', '2026-01-05', 'ok', 'ようこそ'"
        cursor.execute(
            "INSERT INTO orders_7 VALUES "
            f"(1, {good}, '2026-01-05 11:00:00'), "
            "(2, 1, '0000-00-00 00:00:00', NULL, NULL, NULL, '2026-01-05 11:00:00'), "
            "(3, 1, '2026-01-05 09:00:00', '0000-00-00', NULL, NULL, '2026-01-05 11:00:00'), "
            "(4, 1, '2026-01-05 09:00:00', NULL, 0xFF41, NULL, '2026-01-05 11:00:00'), "
            "(18446744073709551615, 1, '2026-01-05 09:00:00', NULL, NULL, NULL, "
            "'2026-01-05 11:00:00'), "
            "(6, 123456789012345678901234567890.5, '2026-01-05 09:00:00', NULL, NULL, NULL, "
            "'2026-01-05 11:00:00'), "
            f"(NULL, {good}, '2026-01-05 11:00:00'), "
            f"(8, {good}, '2026-01-05 11:00:00'), "
            f"(8, {good}, '2026-01-05 12:00:00')"
        )
    lake = tmp_path / "warehouse.duckdb"
    assert _materialize(source, lake, instance).success

    assert _scalar_rows(
        lake, "SELECT order_id, updated_at, note FROM lake.orders ORDER BY ALL"
    ) == [
        ("1", "2026-01-05 11:00:00", "ようこそ"),
        # A BIGINT UNSIGNED beyond INT64 is a value: kept exactly, as text.
        ("18446744073709551615", "2026-01-05 11:00:00", None),
        # A decimal beyond BigQuery's NUMERIC is a value: kept exactly, as text.
        ("6", "2026-01-05 11:00:00", None),
        ("8", "2026-01-05 12:00:00", "ようこそ"),  # the newest version of the duplicated key
    ]
    assert _scalar_rows(lake, "SELECT amount FROM lake.orders WHERE order_id = '6'") == [
        ("123456789012345678901234567890.50000",)
    ]
    quarantined = _scalar_rows(
        lake,
        "SELECT _shard, _source_table, primary_key, column_name, reason "
        "FROM lake.quarantine ORDER BY column_name, primary_key",
    )
    where = ("shard_01", "orders_7")
    duplicate = "duplicate key (a newer or identical version of this row was loaded)"
    assert quarantined == [
        (*where, '["8"]', "order_id", duplicate),
        (*where, "[null]", "order_id", "NULL primary key: None"),
        (*where, '["2"]', "ordered_at", "unparseable datetime: '0000-00-00 00:00:00'"),
        (*where, '["4"]', "payload", "invalid UTF-8: b'\\xffA' (hex ff41)"),
        (*where, '["3"]', "shipped_on", "unparseable date: '0000-00-00'"),
    ]
    # Every source row is loaded or quarantined, and the key checksums agree (the NULL key
    # and the unsigned 64-bit key included).
    assert _reconciliation(lake) == [(9, 4, 5, True, True)]


def _big_table(admin, rows: int) -> None:
    with admin.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE orders_1 (order_id BIGINT PRIMARY KEY, status VARCHAR(20), "
            "ordered_at DATETIME, updated_at DATETIME)"
        )
        cursor.execute(
            f"INSERT INTO orders_1 SELECT seq, 'shipped', '2026-01-05 09:00:00', "
            f"'2026-01-05 11:00:00' FROM seq_1_to_{rows}"
        )


def test_connection_killed_mid_read_is_retried_without_doubling_rows(
    shard, tmp_path, instance, monkeypatch
) -> None:
    admin, source = shard
    _big_table(admin, 200_000)
    monkeypatch.setattr(reader, "DEFAULT_CHUNK_ROWS", 2_000)
    real_stream = reader._stream
    calls = []

    def killed_on_first_attempt(*args):
        calls.append(args)
        for number, data in enumerate(real_stream(*args)):
            yield data
            if len(calls) == 1 and number == 1:
                # From a second connection, as an operator or a failover would.
                with admin.cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE info LIKE '%_source_key_sum%' AND id <> CONNECTION_ID()"
                    )
                    for (thread,) in cursor.fetchall():
                        cursor.execute(f"KILL {thread}")

    monkeypatch.setattr(reader, "_stream", killed_on_first_attempt)
    lake = tmp_path / "warehouse.duckdb"
    result = _materialize(source, lake, instance)

    assert result.success
    assert len(calls) == 2  # the kill really broke the first read
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["batch_restarts"].value == 1
    # The rows of the broken attempt were taken back: every key exactly once.
    assert _scalar_rows(lake, "SELECT count(*), count(DISTINCT order_id) FROM lake.orders") == [
        (200_000, 200_000)
    ]
    assert _reconciliation(lake) == [(200_000, 200_000, 0, True, True)]


def test_lock_wait_timeout_is_retried(shard, tmp_path, instance, monkeypatch) -> None:
    admin, source = shard
    _big_table(admin, 10)
    monkeypatch.setattr(reader, "LOCK_WAIT_TIMEOUT_S", 1)
    attempts = []
    real_stream = reader._stream

    def counted(*args):
        attempts.append(args)
        yield from real_stream(*args)

    monkeypatch.setattr(reader, "_stream", counted)
    with admin.cursor() as cursor:
        cursor.execute("LOCK TABLES orders_1 WRITE")  # e.g. a long ALTER TABLE
    threading.Timer(2.0, lambda: admin.cursor().execute("UNLOCK TABLES")).start()

    lake = tmp_path / "warehouse.duckdb"
    assert _materialize(source, lake, instance).success
    assert len(attempts) >= 2
    assert _reconciliation(lake) == [(10, 10, 0, True, True)]


def test_table_that_keeps_failing_is_named_and_the_partition_is_left_as_it_was(
    shard, tmp_path, instance, monkeypatch
) -> None:
    admin, source = shard
    _big_table(admin, 5_000)
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    assert _materialize(source, tmp_path / "warehouse.duckdb", instance).success
    before = _scalar_rows(tmp_path / "warehouse.duckdb", "SELECT count(*) FROM lake.orders")

    with admin.cursor() as cursor:
        cursor.execute("UPDATE orders_1 SET status = 'cancelled'")
    monkeypatch.setattr(reader, "DEFAULT_CHUNK_ROWS", 1_000)
    monkeypatch.setattr(reader, "RETRY_DELAYS_S", (0.01, 0.01))
    real_stream = reader._stream

    def broken_after_one_chunk(*args):
        stream = real_stream(*args)
        yield next(stream)
        raise RuntimeError("Communication link failure")

    monkeypatch.setattr(reader, "_stream", broken_after_one_chunk)
    with pytest.raises(ShardReadError) as error:
        load_partitions(TABLE, source, warehouse, [KEY], dt.datetime.now(dt.UTC))

    assert str(error.value) == (
        f"shard shard_01 (mysql+pymysql://root@{HOST}:{PORT}/{DATABASE}): reading orders_1 "
        "failed after 3 attempts: "
        "Communication link failure"
    )
    # Nothing of the failed run is visible: the partition is exactly the earlier load.
    assert _scalar_rows(tmp_path / "warehouse.duckdb", "SELECT count(*) FROM lake.orders") == before
    assert _scalar_rows(
        tmp_path / "warehouse.duckdb", "SELECT DISTINCT status FROM lake.orders"
    ) == [("shipped",)]
