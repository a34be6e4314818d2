"""`minato metadata export`: the lake's and a shard's catalog as metadata/columns.csv."""

from pathlib import Path

import duckdb
from click.testing import CliRunner

from pipelines import demo_data
from pipelines.cli import main


def _export(*args: str) -> None:
    result = CliRunner().invoke(main, ["metadata", "export", *args])
    assert result.exit_code == 0, result.output


def test_lake_export_keeps_other_tables(minato_env, tmp_path: Path) -> None:
    minato_env.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(minato_env.duckdb_path)) as conn:
        conn.execute(
            "create schema lake; create table lake.orders (order_id varchar not null, "
            "note varchar, _business_day date, _loaded_at timestamptz); "
            "create table lake.quarantine (reason varchar)"
        )
    output = tmp_path / "columns.csv"
    output.write_text(
        "table,column,source_type,nullable,ordinal\n"
        "orders,gone,VARCHAR,YES,1\n"
        "zendesk_tickets,ticket_id,VARCHAR,YES,1\n"
    )
    _export("--source", "lake", "--output", str(output))
    assert output.read_text() == (
        "table,column,source_type,nullable,ordinal\n"
        "orders,order_id,VARCHAR,NO,1\n"
        "orders,note,VARCHAR,YES,2\n"
        "orders,_business_day,DATE,YES,3\n"
        "orders,_loaded_at,TIMESTAMP WITH TIME ZONE,YES,4\n"
        "zendesk_tickets,ticket_id,VARCHAR,YES,1\n"
    )


def test_shard_export_unions_client_tables(minato_env, tmp_path: Path) -> None:
    demo_data.write_shard(
        minato_env.shard_url("shard_01"),
        {
            "orders_101": [{"order_id": 1, "status": "x", "updated_at": "2026-01-01 00:00:00"}],
            # A newer client's table has one more column: the union has it too.
            "orders_102": [
                {"order_id": 1, "status": "x", "updated_at": "2026-01-01 00:00:00", "note": "n"}
            ],
            "products_101": [{"product_id": 1, "updated_at": "2026-01-01 00:00:00"}],
        },
    )
    output = tmp_path / "columns.csv"
    _export("--source", "shard_01", "--tables", "orders", "--output", str(output))
    lines = output.read_text().splitlines()
    assert lines[:5] == [
        "table,column,source_type,nullable,ordinal",
        "orders,order_id,bigint,,1",
        "orders,status,text,,2",
        "orders,updated_at,varchar(32),,3",
        "orders,note,text,,4",
    ]
    # Then the origin columns ingestion adds.
    assert [line.split(",")[1] for line in lines[5:]] == [
        "_business_day",
        "_shard",
        "_client_id",
        "_source_table",
        "_source_tz",
        "_loaded_at",
    ]
