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

from assets.sync.assets import build_sync_asset, build_sync_check
from assets.sync.specs import sync_specs
from resources.destinations import (
    Batch,
    BatchRejectedError,
    DestinationConnectionError,
    PostgresDestination,
    Rejection,
)
from resources.notifications import Notifier
from resources.warehouse import DuckDBWarehouse
from tests.servers import require_server
from tests.tables import replace_table

HOST, PORT = "127.0.0.1", 5432
URL = f"postgresql://postgres@{HOST}:{PORT}/test"
CRM_SPEC = next(spec for spec in sync_specs() if spec.name == "crm_contacts")


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


def write(
    destination: PostgresDestination, operation: str, rows: pa.Table, table: str = "crm_contacts"
) -> list[Rejection]:
    key = rows.schema.names[0]
    return destination.write(Batch(table, (key,), operation, rows, "test"))  # type: ignore[arg-type]


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
    write(destination, "upsert", table="crm_contacts", rows=contacts("c01", "c02"))
    write(destination, "upsert", table="crm_contacts", rows=contacts("c02", "c03", stage="churned"))

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
    write(destination, "delete", table="crm_contacts", rows=pa.table({"contact_id": ["c01"]}))
    write(destination, "upsert", table="crm_contacts", rows=contacts("c01", "c02", "c03"))
    write(
        destination, "delete", table="crm_contacts", rows=pa.table({"contact_id": ["c01", "c03"]})
    )
    assert fetch(schema, "SELECT contact_id FROM crm_contacts") == [("c02",)]


@pytest.mark.postgres
def test_a_batch_is_all_or_nothing(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    write(destination, "upsert", table="crm_contacts", rows=contacts("c01"))
    with pytest.raises(BatchRejectedError, match="null value"):
        write(destination, "upsert", table="crm_contacts", rows=contacts("c02", None, stage="lost"))
    assert fetch(schema, "SELECT contact_id, lifecycle_stage FROM crm_contacts") == [
        ("c01", "customer")
    ]


@pytest.mark.postgres
def test_new_columns_are_added(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    write(destination, "upsert", table="t", rows=pa.table({"id": [1], "x": ["a"]}))
    write(destination, "upsert", table="t", rows=pa.table({"id": [1], "x": ["b"], "y": [2.5]}))
    assert fetch(schema, "SELECT id, x, y FROM t") == [(1, "b", 2.5)]


class FlakyPostgres(PostgresDestination):
    """Writes the keys of every call to a file and refuses batches holding `refuse_keys`."""

    record_path: str
    refuse_keys: list[str] = Field(default_factory=list)

    def write(self, batch: Batch) -> list[Rejection]:
        path = Path(self.record_path)
        previous = path.read_text().splitlines() if path.exists() else []
        keys = batch.rows.column("contact_id").to_pylist()
        if set(keys) & set(self.refuse_keys):
            path.write_text("\n".join([*previous, "rejected", ""]))
            raise BatchRejectedError("CRM rejected the batch")
        rejections = super().write(batch)
        path.write_text("\n".join([*previous, ",".join(keys), ""]))
        return rejections


def sync(tmp_path: Path, schema: str, refuse_keys: Sequence[str] = ()) -> dict[str, object]:
    sync_spec = CRM_SPEC.model_copy(update={"batch_size": 2})
    result = dg.materialize(
        [build_sync_asset(sync_spec), build_sync_check(sync_spec)],
        resources={
            "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
            "crm_destination": FlakyPostgres(
                url=URL,
                schema_name=schema,
                record_path=str(tmp_path / "calls.txt"),
                refuse_keys=list(refuse_keys),
            ),
            "notifier": Notifier(),
        },
    )
    (materialization,) = result.asset_materializations_for_node("sync__crm_contacts")
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.postgres
def test_sync_into_postgres_sends_only_differences(tmp_path: Path, schema: str) -> None:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    replace_table(warehouse, "service_crm", "service_crm_contacts", contacts("c01", "c02", "c03"))
    first = sync(tmp_path, schema)
    assert (first["rows_sent"], first["destination"]) == (3, "postgres")
    assert sync(tmp_path, schema)["rows_sent"] == 0

    source = pa.concat_tables([contacts("c01", "c03"), contacts("c04", stage="lead")])
    source = source.set_column(1, "lifecycle_stage", pa.array(["customer", "churned", "lead"]))
    replace_table(warehouse, "service_crm", "service_crm_contacts", source)
    third = sync(tmp_path, schema)
    assert (third["rows_added"], third["rows_changed"], third["rows_removed"]) == (1, 1, 1)
    assert fetch(
        schema, "SELECT contact_id, lifecycle_stage FROM crm_contacts ORDER BY contact_id"
    ) == [("c01", "customer"), ("c03", "churned"), ("c04", "lead")]
    # Upserts, then the delete of c02 (mirror).
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls == ["c01,c02", "c03", "c03,c04", "c02"]


@pytest.mark.postgres
def test_refused_record_is_isolated_and_retried(tmp_path: Path, schema: str) -> None:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    replace_table(
        warehouse,
        "service_crm",
        "service_crm_contacts",
        contacts("c01", "c02", "c03", "c04", "c05"),
    )
    first = sync(tmp_path, schema, refuse_keys=["c03"])
    assert (first["rows_sent"], first["rows_failed"]) == (4, 1)
    assert fetch(schema, "SELECT contact_id FROM crm_contacts ORDER BY 1") == [
        ("c01",),
        ("c02",),
        ("c04",),
        ("c05",),
    ]
    second = sync(tmp_path, schema)
    assert (second["rows_sent"], second["rows_failed"]) == (1, 0)
    assert (tmp_path / "calls.txt").read_text().splitlines() == [
        "c01,c02",
        "rejected",  # c03 and c04: split
        "rejected",  # c03 alone: kept in the rejected-rows table
        "c04",
        "c05",
        "c03",  # retried by the next run
    ]
    assert fetch(schema, "SELECT count(*) FROM crm_contacts") == [(5,)]


def test_connection_errors_never_show_the_password() -> None:
    destination = PostgresDestination(url="postgresql://crm:s3cr3t-pw@127.0.0.1:1/crm")
    assert "s3cr3t-pw" not in repr(destination)
    with pytest.raises(DestinationConnectionError) as error:
        write(destination, "upsert", table="crm_contacts", rows=contacts("c01"))
    assert "s3cr3t-pw" not in str(error.value)
    assert error.value.__cause__ is None
    assert error.value.__context__ is None


@pytest.mark.postgres
def test_insert_and_update_modes_and_csv_nulls(schema: str) -> None:
    destination = PostgresDestination(url=URL, schema_name=schema)
    rows = pa.table({"id": ["a", "b"], "note": ["", None], "n": pa.array([1, None], pa.int64())})
    assert write(destination, "insert", table="t", rows=rows) == []
    # '' and NULL stay apart through the CSV COPY.
    assert fetch(schema, "SELECT id, note, n FROM t ORDER BY id") == [
        ("a", "", 1),
        ("b", None, None),
    ]
    changed = pa.table({"id": ["a", "c"], "note": ["x", "y"], "n": pa.array([2, 3], pa.int64())})
    assert write(destination, "insert", table="t", rows=changed) == []  # a is left as it was
    assert write(destination, "update", table="t", rows=changed.slice(0, 1)) == []
    missing = pa.table({"id": ["d", "a"], "note": ["z", "w"], "n": pa.array([4, 5], pa.int64())})
    (refused,) = write(destination, "update", table="t", rows=missing)
    assert refused.index == 0
    assert "mode update never creates records" in refused.reason
    assert fetch(schema, "SELECT id, note, n FROM t ORDER BY id") == [
        ("a", "w", 5),
        ("b", None, None),
        ("c", "y", 3),
    ]
