"""Reverse ETL end to end on the embedded stack: DuckDB warehouse -> SQLite destination."""

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import sqlglot
from pydantic import Field

from assets.sync import (
    CHECK_NAME,
    SyncSpec,
    SyncSpecError,
    build_sync_asset,
    build_sync_check,
    load_sync_specs,
    sync_assets,
    sync_checks,
    sync_specs,
)
from assets.sync.diff import check_source_keys, pending_removals, pending_upserts
from resources.destinations import SQLiteDestination
from resources.notifications import Notifier
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse

MART = dg.AssetKey(["service_crm", "service_crm_contacts"])
SYNC = dg.AssetKey(["sync", "crm_contacts"])
CRM_SPEC = next(spec for spec in sync_specs if spec.name == "crm_contacts")

CONTACT_SCHEMA = pa.schema(
    [
        ("contact_id", pa.string()),
        ("lifecycle_stage", pa.string()),
        ("lifetime_orders", pa.int64()),
        ("lifetime_gmv_jpy", pa.float64()),
        ("last_ordered_at", pa.timestamp("us")),
        ("customer_segment", pa.string()),
    ]
)


def contact(contact_id: str | None, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "contact_id": contact_id,
        "lifecycle_stage": "customer",
        "lifetime_orders": 3,
        "lifetime_gmv_jpy": 12_000.5,
        "last_ordered_at": dt.datetime(2024, 5, 1, 9, 30),
        "customer_segment": "loyal",
    }
    row.update(changes)
    return row


def contacts(*ids: str | None) -> list[dict[str, object]]:
    return [contact(contact_id) for contact_id in ids]


class RecordingDestination(SQLiteDestination):
    """SQLite that writes every call to a JSON-lines file and can reject chosen calls."""

    record_path: str
    fail_calls: list[int] = Field(default_factory=list)

    def _record(self, op: str, keys: Sequence[str], ok: bool) -> None:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"op": op, "keys": list(keys), "ok": ok}) + "\n")

    def _call_number(self) -> int:
        path = Path(self.record_path)
        return 1 + (len(path.read_text().splitlines()) if path.exists() else 0)

    def upsert(self, table: str, key_columns: Sequence[str], rows: pa.Table) -> None:
        rejected = self._call_number() in self.fail_calls
        self._record("upsert", rows.column("contact_id").to_pylist(), ok=not rejected)
        if rejected:
            raise RuntimeError("CRM rejected the batch")
        super().upsert(table, key_columns, rows)

    def delete(self, table: str, key_columns: Sequence[str], keys: pa.Table) -> None:
        self._record("delete", keys.column("contact_id").to_pylist(), ok=True)
        super().delete(table, key_columns, keys)


class RecordingNotifier(Notifier):
    record_path: str

    def send(self, text: str) -> None:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
        self.crm_path = tmp_path / "crm.sqlite"
        self.calls_path = tmp_path / "calls.jsonl"
        self.alerts_path = tmp_path / "alerts.txt"

    def set_source(self, rows: list[dict[str, object]]) -> None:
        table = pa.Table.from_pylist(rows, schema=CONTACT_SCHEMA)
        self.warehouse.overwrite_table("service_crm", "service_crm_contacts", table)

    def sync(
        self, spec: SyncSpec = CRM_SPEC, fail_calls: Sequence[int] = ()
    ) -> dg.ExecuteInProcessResult:
        destination = RecordingDestination(
            path=str(self.crm_path), record_path=str(self.calls_path), fail_calls=list(fail_calls)
        )
        return dg.materialize(
            [dg.AssetSpec(MART), build_sync_asset(spec), build_sync_check(spec)],
            resources={
                "warehouse": self.warehouse,
                "crm_destination": destination,
                "notifier": RecordingNotifier(record_path=str(self.alerts_path)),
            },
            selection=[SYNC],
            raise_on_error=False,
        )

    def calls(self) -> list[dict[str, object]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines()]

    def alerts(self) -> list[str]:
        return self.alerts_path.read_text().splitlines() if self.alerts_path.exists() else []

    def crm_rows(self) -> dict[str, tuple[object, ...]]:
        with sqlite3.connect(self.crm_path) as conn:
            return {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT contact_id, lifecycle_stage, lifetime_orders, lifetime_gmv_jpy, "
                    "last_ordered_at, customer_segment FROM crm_contacts"
                )
            }

    def state_keys(self) -> list[str]:
        table = self.warehouse.query_arrow(
            "SELECT contact_id FROM sync_state.crm_contacts ORDER BY contact_id"
        )
        return table.column("contact_id").to_pylist()


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node("sync__crm_contacts")
    return {key: value.value for key, value in materialization.metadata.items()}


def check_passed(result: dg.ExecuteInProcessResult) -> bool:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    return evaluation.passed


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (event,) = result.get_step_failure_events()
    error = event.step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_exports_the_crm_contacts_sync() -> None:
    assert [asset.key for asset in sync_assets] == [SYNC]
    (asset,) = sync_assets
    assert asset.group_names_by_key[SYNC] == "sync"
    assert set(asset.asset_deps[SYNC]) == {MART}
    assert {"warehouse", "crm_destination", "notifier"} <= asset.required_resource_keys
    (check,) = sync_checks
    assert [key.name for key in check.check_keys] == [CHECK_NAME]
    assert not next(iter(check.check_specs)).blocking
    assert CRM_SPEC.mode == "mirror"
    assert CRM_SPEC.destination_table == "crm_contacts"
    assert CRM_SPEC.primary_key == ("contact_id",)


def test_first_sync_sends_every_row(env: Env) -> None:
    env.set_source(contacts("c01", "c02", "c03"))
    result = env.sync()
    assert result.success
    meta = metadata(result)
    assert meta["rows_added"] == 3
    assert meta["rows_sent"] == 3
    assert meta["rows_failed"] == 0
    assert meta["destination"] == "sqlite"
    assert {"rows_changed", "rows_removed", "duration_s", "rows_per_s"} <= meta.keys()
    assert check_passed(result)
    assert env.crm_rows()["c02"] == ("customer", 3, 12_000.5, "2024-05-01 09:30:00", "loyal")
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03"]
    assert env.state_keys() == ["c01", "c02", "c03"]
    assert env.alerts() == []


def test_rerun_without_changes_sends_nothing(env: Env) -> None:
    env.set_source(contacts("c01", "c02"))
    env.sync()
    calls_before = len(env.calls())
    result = env.sync()
    assert result.success
    meta = metadata(result)
    assert (meta["rows_added"], meta["rows_changed"], meta["rows_removed"]) == (0, 0, 0)
    assert meta["rows_sent"] == 0
    assert len(env.calls()) == calls_before


def test_only_changed_added_and_removed_rows_are_sent(env: Env) -> None:
    env.set_source(contacts("c01", "c02", "c03", "c04"))
    env.sync()
    calls_before = len(env.calls())
    # c02 loses its timestamp (NULL must count as a change), c03 leaves, c05 arrives.
    env.set_source(
        [contact("c01"), contact("c02", last_ordered_at=None), contact("c04"), contact("c05")]
    )
    result = env.sync()
    assert result.success
    meta = metadata(result)
    assert (meta["rows_added"], meta["rows_changed"], meta["rows_removed"]) == (1, 1, 1)
    assert meta["rows_sent"] == 3
    assert env.calls()[calls_before:] == [
        {"op": "upsert", "keys": ["c02", "c05"], "ok": True},
        {"op": "delete", "keys": ["c03"], "ok": True},
    ]
    crm = env.crm_rows()
    assert sorted(crm) == ["c01", "c02", "c04", "c05"]
    assert crm["c02"][3] is None
    assert env.state_keys() == ["c01", "c02", "c04", "c05"]


def test_upsert_mode_keeps_rows_removed_from_the_source(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"mode": "upsert"})
    env.set_source(contacts("c01", "c02"))
    env.sync(spec)
    env.set_source(contacts("c01"))
    result = env.sync(spec)
    assert metadata(result)["rows_removed"] == 0
    assert sorted(env.crm_rows()) == ["c01", "c02"]
    assert [call["op"] for call in env.calls()] == ["upsert"]


def test_rejected_batch_is_counted_and_resent_alone_next_run(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"batch_size": 2})
    env.set_source(contacts("c01", "c02", "c03", "c04", "c05"))

    first = env.sync(spec, fail_calls=[2])
    assert first.success  # A rejected batch fails the check, not the run.
    meta = metadata(first)
    assert meta["rows_sent"] == 3
    assert meta["rows_failed"] == 2
    assert not check_passed(first)
    assert env.state_keys() == ["c01", "c02", "c05"]  # Later batches still went.
    assert sorted(env.crm_rows()) == ["c01", "c02", "c05"]
    (alert,) = env.alerts()
    assert "crm_contacts" in alert
    assert "2 row(s) failed" in alert

    second = env.sync(spec)
    assert metadata(second)["rows_sent"] == 2
    assert metadata(second)["rows_failed"] == 0
    assert check_passed(second)
    calls = env.calls()
    assert calls[-1] == {"op": "upsert", "keys": ["c03", "c04"], "ok": True}
    acknowledged = [key for call in calls if call["ok"] for key in call["keys"]]
    assert sorted(acknowledged) == ["c01", "c02", "c03", "c04", "c05"]  # Each sent once.
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03", "c04", "c05"]


def test_duplicate_and_null_keys_refuse_before_sending(env: Env) -> None:
    env.set_source(contacts("c01", "c02", "c02", None, "c03"))
    result = env.sync()
    assert not result.success
    message = failure_message(result)
    assert "contact_id='c02' (2 rows)" in message
    assert "contact_id=NULL (1 rows)" in message
    assert "nothing was sent" in message
    assert env.calls() == []
    assert not env.warehouse.table_exists("sync_state", "crm_contacts")


def test_key_errors_name_at_most_ten_keys(env: Env) -> None:
    ids = [f"c{i:02d}" for i in range(12)]
    env.set_source(contacts(*ids, *ids))
    message = failure_message(env.sync())
    assert "12 duplicate or NULL primary key(s)" in message
    assert "First 10:" in message
    assert "c09" in message
    assert "c11" not in message
    assert env.calls() == []


VALID_SPEC = """\
syncs:
  - name: crm_contacts
    source_schema: service_crm
    source_model: service_crm_contacts
    destination: crm_destination
    destination_table: crm_contacts
    primary_key: [contact_id]
    columns: [lifecycle_stage]
    mode: mirror
"""


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (
            ("destination_table: crm_contacts", "destination_table: crm-contacts"),
            "destination_table",
        ),
        (("mode: mirror", "mode: sideways"), "mode"),
        (("    mode: mirror\n", ""), "mode"),
        (("columns: [lifecycle_stage]", "columns: [contact_id]"), "columns"),
        (("columns: [lifecycle_stage]", "columns: [_row_hash]"), "columns"),
        (("columns:", "colums:"), "colums"),
        (("    mode: mirror\n", "    mode: mirror\n    batch_size: 0\n"), "batch_size"),
    ],
)
def test_spec_errors_name_file_sync_and_key(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    path = tmp_path / "syncs.yaml"
    path.write_text(VALID_SPEC.replace(*change))
    with pytest.raises(SyncSpecError) as error:
        load_sync_specs(path)
    message = str(error.value)
    assert str(path) in message
    assert "sync 'crm_contacts'" in message
    assert f"key '{key}'" in message


def test_spec_errors_for_duplicate_names_and_bad_documents(tmp_path: Path) -> None:
    path = tmp_path / "syncs.yaml"
    path.write_text(VALID_SPEC + VALID_SPEC.split("\n", 1)[1])
    with pytest.raises(SyncSpecError, match=r"sync 'crm_contacts': key 'name': .*twice"):
        load_sync_specs(path)
    path.write_text("syncs: {crm_contacts: {}}")
    with pytest.raises(SyncSpecError, match=r"syncs\.yaml: key 'syncs'"):
        load_sync_specs(path)


def test_sqlite_batch_is_all_or_nothing_and_gains_new_columns(tmp_path: Path) -> None:
    destination = SQLiteDestination(path=str(tmp_path / "crm.sqlite"))
    destination.upsert("t", ["id"], pa.table({"id": ["a"], "x": [1]}))
    with pytest.raises(sqlite3.IntegrityError):
        destination.upsert("t", ["id"], pa.table({"id": ["b", None], "x": [2, 3]}))
    destination.upsert("t", ["id"], pa.table({"id": ["a"], "x": [5], "y": ["new"]}))
    destination.delete("missing", ["id"], pa.table({"id": ["a"]}))  # No table: nothing to do.
    with sqlite3.connect(tmp_path / "crm.sqlite") as conn:
        assert conn.execute("SELECT id, x, y FROM t").fetchall() == [("a", 5, "new")]


class BigQuerySqlRecorder(BigQueryWarehouse):
    """BigQuery's SQL rendering without a client: queries are recorded and answer no rows."""

    record_path: str

    def query_arrow(self, sql: str) -> pa.Table:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(sql) + "\n")
        return pa.table({"_change": pa.array([], pa.string())})

    def table_exists(self, schema: str, table: str) -> bool:
        return True


def test_diff_sql_parses_as_bigquery(tmp_path: Path) -> None:
    record = tmp_path / "queries.jsonl"
    warehouse = BigQuerySqlRecorder(project="minato-prod", record_path=str(record))
    check_source_keys(warehouse, CRM_SPEC)
    pending_upserts(warehouse, CRM_SPEC)
    pending_removals(warehouse, CRM_SPEC)
    queries = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(queries) == 3
    for sql in queries:
        sqlglot.parse_one(sql, read="bigquery")
        assert "`minato-prod.service_crm.service_crm_contacts`" in sql
    assert "TO_HEX(MD5(TO_JSON_STRING(STRUCT(lifecycle_stage AS lifecycle_stage" in queries[1]
    assert "`minato-prod.sync_state.crm_contacts`" in queries[2]
