"""PostgresDestination against the real server on 127.0.0.1:5432 (database `test`).

Each test works in its own schema, created and dropped around it.
"""

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pytest
from pydantic import Field

from assets.sync import build_sync_asset, build_sync_check, sync_specs
from resources.destinations import DestinationConnectionError, PostgresDestination
from resources.notifications import Notifier
from resources.warehouse import DuckDBWarehouse
from tests.servers import require_server

HOST, PORT = "127.0.0.1", 5432
URL = f"postgresql://postgres@{HOST}:{PORT}/test"
CRM_SPEC = next(spec for spec in sync_specs if spec.name == "crm_contacts")


@pytest.fixture
def schema() -> Iterator[str]:
    require_server(HOST, PORT, "PostgreSQL")
    name = f"sync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def fetch(schema: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(URL) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return conn.execute(sql).fetchall()


def contacts(*ids: str | None, stage: str = "customer") -> pa.Table:
    return pa.table(
        {
            "contact_id": pa.array(ids, pa.string()),
            "lifecycle_stage": [stage] * len(ids),
            "lifetime_orders": pa.array([3] * len(ids), pa.int64()),
            "lifetime_gmv_jpy": [12_000.5] * len(ids),
            "last_ordered_at": pa.array([dt.datetime(2024, 5, 1, 9, 30)] * len(ids)),
            "customer_segment": ["loyal"] * len(ids),
        }
    )


@pytest.mark.postgres
def test_upsert_creates_keyed_table_and_updates_rows(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    destination.upsert("crm_contacts", ["contact_id"], contacts("c01", "c02"))
    destination.upsert("crm_contacts", ["contact_id"], contacts("c02", "c03", stage="churned"))

    assert fetch(
        schema, "SELECT contact_id, lifecycle_stage FROM crm_contacts ORDER BY contact_id"
    ) == [("c01", "customer"), ("c02", "churned"), ("c03", "churned")]
    assert fetch(
        schema,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'crm_contacts'::regclass AND i.indisprimary",
    ) == [("contact_id",)]
    types = dict(
        fetch(
            schema,
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = 'crm_contacts'",
        )
    )
    assert types["lifetime_orders"] == "bigint"
    assert types["lifetime_gmv_jpy"] == "double precision"
    assert types["last_ordered_at"] == "timestamp without time zone"
    assert fetch(schema, "SELECT last_ordered_at FROM crm_contacts WHERE contact_id = 'c01'") == [
        (dt.datetime(2024, 5, 1, 9, 30),)
    ]


@pytest.mark.postgres
def test_delete_removes_only_the_given_keys(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    destination.delete("crm_contacts", ["contact_id"], pa.table({"contact_id": ["c01"]}))
    destination.upsert("crm_contacts", ["contact_id"], contacts("c01", "c02", "c03"))
    destination.delete("crm_contacts", ["contact_id"], pa.table({"contact_id": ["c01", "c03"]}))
    assert fetch(schema, "SELECT contact_id FROM crm_contacts") == [("c02",)]


@pytest.mark.postgres
def test_a_batch_is_all_or_nothing(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    destination.upsert("crm_contacts", ["contact_id"], contacts("c01"))
    with pytest.raises(psycopg.errors.NotNullViolation):
        destination.upsert("crm_contacts", ["contact_id"], contacts("c02", None, stage="lost"))
    assert fetch(schema, "SELECT contact_id, lifecycle_stage FROM crm_contacts") == [
        ("c01", "customer")
    ]


@pytest.mark.postgres
def test_new_columns_are_added(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    destination.upsert("t", ["id"], pa.table({"id": [1], "x": ["a"]}))
    destination.upsert("t", ["id"], pa.table({"id": [1], "x": ["b"], "y": [2.5]}))
    assert fetch(schema, "SELECT id, x, y FROM t") == [(1, "b", 2.5)]


class FlakyPostgres(PostgresDestination):
    """Counts upserted keys in a file and rejects the calls listed in `fail_calls`."""

    record_path: str
    fail_calls: list[int] = Field(default_factory=list)

    def upsert(self, table: str, key_columns: Sequence[str], rows: pa.Table) -> None:
        path = Path(self.record_path)
        previous = path.read_text().splitlines() if path.exists() else []
        if len(previous) + 1 in self.fail_calls:
            path.write_text("\n".join([*previous, "rejected", ""]))
            raise RuntimeError("CRM rejected the batch")
        super().upsert(table, key_columns, rows)
        path.write_text("\n".join([*previous, ",".join(rows.column("contact_id").to_pylist()), ""]))


def sync(tmp_path: Path, schema: str, fail_calls: Sequence[int] = ()) -> dict[str, object]:
    sync_spec = CRM_SPEC.model_copy(update={"batch_size": 2})
    result = dg.materialize(
        [build_sync_asset(sync_spec), build_sync_check(sync_spec)],
        resources={
            "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
            "crm_destination": FlakyPostgres(
                url=URL,
                schema_name=schema,
                record_path=str(tmp_path / "calls.txt"),
                fail_calls=list(fail_calls),
            ),
            "notifier": Notifier(),
        },
    )
    (materialization,) = result.asset_materializations_for_node("sync__crm_contacts")
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.postgres
def test_sync_into_postgres_sends_only_differences(tmp_path: Path, schema: str) -> None:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.overwrite_table("service_crm", "service_crm_contacts", contacts("c01", "c02", "c03"))
    first = sync(tmp_path, schema)
    assert (first["rows_sent"], first["destination"]) == (3, "postgres")
    assert sync(tmp_path, schema)["rows_sent"] == 0

    source = pa.concat_tables([contacts("c01", "c03"), contacts("c04", stage="lead")])
    source = source.set_column(1, "lifecycle_stage", pa.array(["customer", "churned", "lead"]))
    warehouse.overwrite_table("service_crm", "service_crm_contacts", source)
    third = sync(tmp_path, schema)
    assert (third["rows_added"], third["rows_changed"], third["rows_removed"]) == (1, 1, 1)
    assert fetch(
        schema, "SELECT contact_id, lifecycle_stage FROM crm_contacts ORDER BY contact_id"
    ) == [("c01", "customer"), ("c03", "churned"), ("c04", "lead")]
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["c01,c02", "c03", "c03,c04"]


@pytest.mark.postgres
def test_rejected_batch_is_resent_alone(tmp_path: Path, schema: str) -> None:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.overwrite_table(
        "service_crm", "service_crm_contacts", contacts("c01", "c02", "c03", "c04", "c05")
    )
    first = sync(tmp_path, schema, fail_calls=[2])
    assert (first["rows_sent"], first["rows_failed"]) == (3, 2)
    assert fetch(schema, "SELECT contact_id FROM crm_contacts ORDER BY 1") == [
        ("c01",),
        ("c02",),
        ("c05",),
    ]
    second = sync(tmp_path, schema)
    assert (second["rows_sent"], second["rows_failed"]) == (2, 0)
    assert (tmp_path / "calls.txt").read_text().splitlines() == [
        "c01,c02",
        "rejected",
        "c05",
        "c03,c04",
    ]
    assert fetch(schema, "SELECT count(*) FROM crm_contacts") == [(5,)]


def test_connection_errors_never_show_the_password() -> None:
    destination = PostgresDestination(url="postgresql://crm:s3cr3t-pw@127.0.0.1:1/crm")
    assert "s3cr3t-pw" not in repr(destination)
    with pytest.raises(DestinationConnectionError) as error:
        destination.upsert("crm_contacts", ["contact_id"], contacts("c01"))
    assert "s3cr3t-pw" not in str(error.value)
    assert error.value.__cause__ is None
    assert error.value.__context__ is None
