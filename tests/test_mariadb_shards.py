"""The same ingestion code reads MySQL/MariaDB shards: two databases on the local MariaDB server
act as shard_01 (JST) and shard_02 (UTC) and load exactly what the SQLite shards load."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pymysql
import pytest
import yaml

from assets.ingestion.shard_tables import shard_table_assets
from pipelines import demo_data
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse
from tests.servers import require_server

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
SHARDS = ("shard_01", "shard_02")
CONFIG = demo_data.DemoConfig(
    seed=11, end_date=dt.date(2026, 3, 5), days=5, clients_per_shard=4, customers=100
)


@pytest.fixture
def mariadb_shards():
    require_server(HOST, PORT, "MariaDB")
    databases = {shard: f"minato_it_{shard}" for shard in SHARDS}
    admin = pymysql.connect(host=HOST, port=PORT, user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cursor:
            for database in databases.values():
                cursor.execute(f"DROP DATABASE IF EXISTS {database}")
                cursor.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        yield {
            shard: f"mysql+pymysql://root@{HOST}:{PORT}/{db}?charset=utf8mb4"
            for shard, db in databases.items()
        }
    finally:
        with admin.cursor() as cursor:
            for database in databases.values():
                cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def _shards_file(path: Path, urls: dict[str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "shards": [
                    {"name": s, "url": urls[s], "timezone": demo_data.SHARD_TIMEZONES[s]}
                    for s in SHARDS
                ]
            }
        )
    )
    return path


def _ingest(shards_file: Path, duckdb_path: Path, instance: dg.DagsterInstance) -> None:
    keys = [
        f"{CONFIG.first_day + dt.timedelta(days=d)}|{shard}"
        for d in range(CONFIG.days)
        for shard in SHARDS
    ]
    for key in keys:
        result = dg.materialize(
            shard_table_assets(),
            partition_key=key,
            resources={
                "shards": ShardSource(shards_file=str(shards_file)),
                "warehouse": DuckDBWarehouse(path=str(duckdb_path)),
            },
            instance=instance,
        )
        assert result.success, key


_ZERO_DATE = "unparseable datetime: '0000-00-00 00:00:00'"


def _lake(duckdb_path: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return conn.execute(
            f"SELECT * EXCLUDE (_loaded_at) FROM lake.{table} ORDER BY ALL"
        ).fetchall()


def test_mariadb_shards_load_like_sqlite_shards(mariadb_shards, tmp_path, instance):
    tables = demo_data.shard_tables(CONFIG)
    sqlite_urls = {}
    for shard in SHARDS:
        demo_data.write_shard(mariadb_shards[shard], tables[shard])
        sqlite_urls[shard] = f"sqlite:///{tmp_path}/{shard}.sqlite"
        demo_data.write_shard(sqlite_urls[shard], tables[shard])

    mysql_lake = tmp_path / "mysql.duckdb"
    sqlite_lake = tmp_path / "sqlite.duckdb"
    _ingest(_shards_file(tmp_path / "mysql.yaml", mariadb_shards), mysql_lake, instance)
    _ingest(_shards_file(tmp_path / "sqlite.yaml", sqlite_urls), sqlite_lake, instance)

    for table in ("orders", "order_items", "products"):
        mysql_rows = _lake(mysql_lake, table)
        assert mysql_rows, table
        assert mysql_rows == _lake(sqlite_lake, table), table

    # The shards' exact duplicate rows (legacy tables without a primary key) are quarantined
    # alike from both engines, the newest version of each key kept.
    quarantined = "SELECT * EXCLUDE (_loaded_at, raw_row) FROM lake.quarantine ORDER BY ALL"
    with duckdb.connect(str(sqlite_lake), read_only=True) as conn:
        sqlite_quarantine = conn.execute(quarantined).fetchall()
    with duckdb.connect(str(mysql_lake), read_only=True) as conn:
        assert conn.execute(quarantined).fetchall() == [
            row if row[7].startswith("duplicate") else (*row[:7], _ZERO_DATE)
            for row in sqlite_quarantine
        ]
        assert any(row[7].startswith("duplicate key") for row in sqlite_quarantine)
        # The impossible date: MariaDB (sql_mode='') stored it as the zero date, SQLite as
        # text; both are quarantined with the reason, never loaded.
        reasons = conn.execute(
            "SELECT _shard, column_name, reason FROM lake.quarantine "
            "WHERE reason NOT LIKE 'duplicate%' ORDER BY _shard"
        ).fetchall()
    assert reasons == [
        ("shard_01", "ordered_at", "unparseable datetime: '0000-00-00 00:00:00'"),
        ("shard_02", "ordered_at", "unparseable datetime: '0000-00-00 00:00:00'"),
    ]
