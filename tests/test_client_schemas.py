"""Real client schemas on the real MariaDB: every column type has its lake text, names follow the
naming policy (shard_catalog.py), and errors retrying cannot fix fail at once, named."""

import json
import time
from pathlib import Path

import dagster as dg
import duckdb
import pymysql
import pytest
import yaml

from assets.ingestion.lake_tables import LakeTable
from assets.ingestion.shard_errors import permanent_reason
from assets.ingestion.shard_tables import DISCOVERY_METADATA, build_shard_table_asset
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse
from tests.servers import mariadb_database

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
DATABASE = "minato_it_client_schemas"
KEY = "2026-01-05|shard_01"
TABLE = LakeTable("orders", ("order_id",), (), "Orders of the client-schema tests.")
ORDERS = build_shard_table_asset(TABLE)
IN_DAY = "'2026-01-05 10:00:00'"


@pytest.fixture
def shard(tmp_path: Path):
    with mariadb_database(DATABASE, HOST, PORT) as admin:
        cursor = admin.cursor()
        # Values are written in the shard's zone, as the shard's own application would.
        cursor.execute("SET time_zone = '+09:00'")
        yield cursor, tmp_path


def _shards_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "shards.yaml"
    path.write_text(
        yaml.safe_dump({"shards": [{"name": "shard_01", "url": url, "timezone": "Asia/Tokyo"}]})
    )
    return path


def _ingest(tmp_path: Path, url: str | None = None) -> dg.ExecuteInProcessResult:
    url = url or f"mysql+pymysql://root@{HOST}:{PORT}/{DATABASE}"
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [ORDERS],
            partition_key=KEY,
            resources={
                "shards": ShardSource(shards_file=str(_shards_file(tmp_path, url))),
                "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
            },
            instance=instance,
            raise_on_error=False,
        )


def _rows(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [failure] = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None, failure.step_failure_data.error
    return user.description or ""


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


# (column DDL, value SQL, its lake text): the table README.md documents.
TYPES = [
    ("ti TINYINT", "-128", "-128"),
    ("tu TINYINT UNSIGNED", "255", "255"),
    ("si SMALLINT", "-32768", "-32768"),
    ("mi MEDIUMINT", "8388607", "8388607"),
    ("bi BIGINT", "-9223372036854775808", "-9223372036854775808"),
    ("bu BIGINT UNSIGNED", "9223372036854775807", "9223372036854775807"),
    # Beyond INT64: loaded exactly, not quarantined.
    ("bu_max BIGINT UNSIGNED", "18446744073709551615", "18446744073709551615"),
    (
        "b64 BIT(64)",
        "b'1000000000000000000000000000000000000000000000000000000000000001'",
        "9223372036854775809",
    ),
    ("d_wide DECIMAL(65, 30)", "1.5", "1.500000000000000000000000000000"),
    ("d_money DECIMAL(10, 2)", "-12.3", "-12.30"),
    ("f FLOAT", "1.5", "1.5"),
    # The value FLOAT stores (123456792), not the cast's 6 significant digits (123457000).
    ("f_big FLOAT", "123456789", "123456792"),
    ("d_tiny DECIMAL(5, 5)", "-0.00001", "-0.00001"),  # not cut by the UNION
    ("dbl DOUBLE", "0.1", "0.1"),
    ("b1 BIT(1)", "b'1'", "1"),
    ("b8 BIT(8)", "b'10000001'", "129"),
    ("bo BOOL", "TRUE", "1"),
    ("dd DATE", "'2026-01-05'", "2026-01-05"),
    ("dt3 DATETIME(3)", "'2026-01-05 09:00:00.123'", "2026-01-05 09:00:00.123"),
    ("dt6 DATETIME(6)", "'2026-01-05 09:00:00'", "2026-01-05 09:00:00"),
    ("ts TIMESTAMP NULL", "'2026-01-05 09:30:00'", "2026-01-05 09:30:00"),
    ("tm TIME", "'-838:59:59'", "-838:59:59"),
    ("yr YEAR", "2026", "2026"),
    ("vc VARCHAR(20) CHARACTER SET utf8mb4", "'ok 🍣'", "ok 🍣"),
    ("l1 VARCHAR(20) CHARACTER SET latin1", "'café'", "café"),
    ("sj VARCHAR(20) CHARACTER SET cp932", "'日本語'", "日本語"),
    ("vb VARCHAR(20) COLLATE utf8mb4_bin", "'Bin'", "Bin"),
    ("tx TEXT", "'a\\nb'", "a\nb"),
    ("bn BINARY(4)", "'ab'", "ab\x00\x00"),
    ("vbn VARBINARY(8)", "'xyz'", "xyz"),
    ("bl BLOB", "'blob'", "blob"),
    ("en ENUM('a', 'b')", "'b'", "b"),
    ("st SET('x', 'y')", "'x,y'", "x,y"),
    ("js JSON", """'{"a": 1}'""", '{"a": 1}'),
    ("g GEOMETRY", "ST_GeomFromText('POINT(1 2)')", "POINT(1 2)"),
    ("p POINT", "ST_GeomFromText('POINT(3 4)')", "POINT(3 4)"),
    ("ls LINESTRING", "ST_GeomFromText('LINESTRING(0 0,1 1)')", "LINESTRING(0 0,1 1)"),
]


def test_every_column_type_has_its_lake_text(shard) -> None:
    cursor, tmp_path = shard
    columns = ", ".join(ddl for ddl, _, _ in TYPES)
    cursor.execute(
        f"CREATE TABLE orders_1 (order_id INT PRIMARY KEY, updated_at DATETIME, {columns})"
    )
    values = ", ".join(value for _, value, _ in TYPES)
    cursor.execute(f"INSERT INTO orders_1 VALUES (1, {IN_DAY}, {values})")
    cursor.execute(f"INSERT INTO orders_1 (order_id, updated_at) VALUES (2, {IN_DAY})")

    assert _ingest(tmp_path).success

    names = [ddl.split()[0] for ddl, _, _ in TYPES]
    loaded = _rows(tmp_path, f"SELECT {', '.join(names)} FROM lake.orders ORDER BY order_id")
    assert dict(zip(names, loaded[0], strict=True)) == {
        ddl.split()[0]: text for ddl, _, text in TYPES
    }
    assert loaded[1] == (None,) * len(TYPES)  # NULL is NULL for every type
    assert _rows(tmp_path, "SELECT count(*) FROM lake.quarantine") == [(0,)]


def test_client_tables_differ_and_still_union(shard) -> None:
    """Columns some clients lack (of any type), names that differ in case, SQL keywords,
    non-identifiers, an origin column's name, a key widened to DECIMAL, a BIT flag."""
    cursor, tmp_path = shard
    cursor.execute(
        "CREATE TABLE orders_1 (order_id INT PRIMARY KEY, updated_at DATETIME, Note TEXT, "
        "`order` INT, `gift-wrap` TINYINT, `_shard` VARCHAR(8), `金額` DECIMAL(65, 30), "
        "flag BIT(1))"
    )
    cursor.execute(
        f"INSERT INTO orders_1 VALUES (1, {IN_DAY}, 'first', 7, 1, 'x', 12345.678, b'1'), "
        f"(2, {IN_DAY}, NULL, NULL, 0, NULL, 0, b'0')"
    )
    cursor.execute(
        "CREATE TABLE orders_2 (order_id DECIMAL(20, 0) PRIMARY KEY, UPDATED_AT DATETIME, "
        "note TEXT, points INT, shipped_on DATE, rate DECIMAL(65, 30))"
    )
    cursor.execute(
        f"INSERT INTO orders_2 VALUES (3, {IN_DAY}, 'second', 10, '2026-01-04', 1.5), "
        f"(4, {IN_DAY}, NULL, NULL, NULL, NULL)"
    )

    result = _ingest(tmp_path)

    assert result.success, result.get_step_failure_events()
    rows = _rows(
        tmp_path,
        'SELECT order_id, note, "order", gift_wrap, src_shard, u91d1u984d, flag, points, '
        "shipped_on, rate FROM lake.orders ORDER BY order_id",
    )
    assert rows == [
        (
            "1",
            "first",
            "7",
            "1",
            "x",
            "12345.678000000000000000000000000000",
            "1",
            None,
            None,
            None,
        ),
        ("2", None, None, "0", None, "0.000000000000000000000000000000", "0", None, None, None),
        ("3", "second", None, None, None, None, None, "10", "2026-01-04", "1.5" + "0" * 29),
        ("4", None, None, None, None, None, None, None, None, None),
    ]
    # The key is INT in one client, DECIMAL in the other: both sides sum CRC32s, and agree.
    assert _rows(
        tmp_path,
        "SELECT source_rows, loaded_rows, quarantined_rows, reconciled "
        "FROM monitoring.ingestion_reconciliation",
    ) == [(4, 4, 0, True)]
    [event] = result.get_asset_materialization_events()
    discovery = event.materialization.metadata[DISCOVERY_METADATA].value["shard_01"]
    assert discovery["columns_renamed"] == {
        "orders_1.Note": "note",
        "orders_1._shard": "src_shard",
        "orders_1.gift-wrap": "gift_wrap",
        "orders_1.金額": "u91d1u984d",
        "orders_2.UPDATED_AT": "updated_at",
    }


def test_table_names_follow_the_policy_and_are_reported(shard) -> None:
    cursor, tmp_path = shard
    for table in ("Orders_77", "orders_5", "orders_backup", "orders_5_old"):
        cursor.execute(f"CREATE TABLE {table} (order_id INT PRIMARY KEY, updated_at DATETIME)")
        cursor.execute(f"INSERT INTO {table} VALUES (1, {IN_DAY})")

    result = _ingest(tmp_path)

    assert result.success
    assert _rows(tmp_path, "SELECT _client_id, _source_table FROM lake.orders ORDER BY 1") == [
        ("5", "orders_5"),
        ("77", "Orders_77"),  # matched case-insensitively
    ]
    [event] = result.get_asset_materialization_events()
    discovery = event.materialization.metadata[DISCOVERY_METADATA].value["shard_01"]
    assert discovery["tables_matched"] == 2
    assert discovery["tables_ignored"] == {
        "orders_5_old": "not named <logical table>_<client id>",
        "orders_backup": "not named <logical table>_<client id>",
    }

    cursor.execute("CREATE TABLE orders_0005 (order_id INT, updated_at DATETIME)")
    collision = _ingest(tmp_path)
    assert _failure(collision).endswith(
        "tables orders_0005 and orders_5 are both client 5's orders: rename or drop one of them "
        "on the shard"
    )
    assert _retries(collision) == 0


def test_two_columns_of_one_lake_name_are_refused_at_once(shard) -> None:
    cursor, tmp_path = shard
    cursor.execute(
        "CREATE TABLE orders_1 (order_id INT PRIMARY KEY, updated_at DATETIME, "
        "`gift-wrap` INT, gift_wrap INT)"
    )

    result = _ingest(tmp_path)

    assert _failure(result) == (
        f"shard shard_01 (mysql+pymysql://root@{HOST}:{PORT}/{DATABASE}): table orders_1: "
        "columns 'gift-wrap' and 'gift_wrap' would both be lake column 'gift_wrap'; rename one "
        "of them on the shard"
    )
    assert _retries(result) == 0


def test_a_table_without_the_change_column_is_refused_at_once(shard) -> None:
    cursor, tmp_path = shard
    cursor.execute("CREATE TABLE orders_1 (order_id INT PRIMARY KEY, updated_at DATETIME)")
    cursor.execute("CREATE TABLE orders_2 (order_id INT PRIMARY KEY, changed DATETIME)")

    result = _ingest(tmp_path)

    assert "orders_2 has no column 'updated_at', which selects a day's rows" in _failure(result)
    assert _retries(result) == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"mysql+pymysql://root:wrong@{HOST}:{PORT}/{DATABASE}",
            "authentication failed: check the user and the password variable in the URL",
        ),
        (
            f"mysql+pymysql://nobody@{HOST}:{PORT}/{DATABASE}",
            "authentication failed: check the user and the password variable in the URL",
        ),
        (
            f"mysql+pymysql://root@{HOST}:{PORT}/minato_no_such_database",
            "the database does not exist: check the database name in the URL",
        ),
    ],
)
def test_permanent_errors_fail_at_once_naming_shard_url_and_action(
    shard, url: str, expected: str
) -> None:
    _, tmp_path = shard
    started = time.monotonic()

    result = _ingest(tmp_path, url)

    message = _failure(result)
    shown = url.replace(":wrong@", ":***@")
    assert message.startswith(f"shard shard_01 ({shown}): {expected} (")
    assert "wrong" not in message
    assert _retries(result) == 0
    # No retry loop: far below the 64 s that retrying these took (a bound, not a benchmark).
    assert time.monotonic() - started < 30


def test_a_corrupt_sqlite_shard_fails_at_once(tmp_path: Path) -> None:
    shard_file = tmp_path / "shard_01.sqlite"
    shard_file.write_bytes(b"this is not a database" * 100)

    result = _ingest(tmp_path, f"sqlite:///{shard_file}")

    assert _failure(result) == (
        f"shard shard_01 (sqlite:///{shard_file}): the SQLite file is not a database or is "
        "damaged: restore the shard's file (file is not a database)"
    )
    assert _retries(result) == 0


def test_quarantined_rows_keep_their_source_column_names(shard) -> None:
    """The raw row in the quarantine is the row as received, under the lake's names."""
    cursor, tmp_path = shard
    cursor.execute("SET SESSION sql_mode = ''")
    cursor.execute(
        "CREATE TABLE orders_1 (order_id INT PRIMARY KEY, updated_at DATETIME, `Ship-Date` DATE)"
    )
    cursor.execute(f"INSERT INTO orders_1 VALUES (1, {IN_DAY}, '0000-00-00')")

    assert _ingest(tmp_path).success

    [(column, reason, raw)] = _rows(
        tmp_path, "SELECT column_name, reason, raw_row FROM lake.quarantine"
    )
    assert (column, reason) == ("ship_date", "unparseable date: '0000-00-00'")
    assert json.loads(raw)["ship_date"] == "0000-00-00"


def test_a_typo_in_the_shards_file_fails_at_once_naming_line_and_key(tmp_path: Path) -> None:
    """`timezon:` used to be ignored, and the server's zone used: the seed's 9-hour bug."""
    shards_file = tmp_path / "shards.yaml"
    shards_file.write_text(
        "shards:\n  - name: shard_01\n    url: sqlite:///nowhere.sqlite\n    timezon: UTC\n"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [ORDERS],
            partition_key=KEY,
            resources={
                "shards": ShardSource(shards_file=str(shards_file)),
                "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
            },
            instance=instance,
            raise_on_error=False,
        )

    assert _failure(result).endswith(
        f"{shards_file}:4: shard 'shard_01': key 'timezon': unknown key; allowed: name, url, "
        "timezone, size"
    )
    assert _retries(result) == 0


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (pymysql.err.OperationalError(1045, "Access denied for user 'etl'"), True),
        (pymysql.err.OperationalError(1049, "Unknown database 'ec'"), True),
        (pymysql.err.OperationalError(1044, "Access denied to database 'ec'"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to server during query"), False),
        (pymysql.err.OperationalError(2006, "Server has gone away"), False),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), False),
        (pymysql.err.OperationalError(1213, "Deadlock found"), False),
        (pymysql.err.OperationalError(1040, "Too many connections"), False),
        # connectorx reports the server's error as text.
        (RuntimeError("timed out waiting for connection: MySqlError { ERROR 1698 (28000) }"), True),
        (RuntimeError("MySqlError { ERROR 1927 (70100): Connection was killed }"), False),
        (RuntimeError("Communication link failure"), False),
    ],
)
def test_errors_are_told_apart_by_the_servers_error_number(
    error: BaseException, permanent: bool
) -> None:
    assert (permanent_reason(error) is not None) == permanent
