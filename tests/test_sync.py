"""Reverse ETL end to end on the embedded stack: DuckDB warehouse -> SQLite destination."""

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import sqlglot
from pydantic import Field

from assets.sync.assets import (
    CHECK_NAME,
    build_sync_asset,
    build_sync_check,
    sync_assets,
    sync_checks,
)
from assets.sync.diff import SyncStore, check_source_keys
from assets.sync.engine import run_sync
from assets.sync.specs import SyncSpec, SyncSpecError, load_sync_specs, sync_specs
from resources.destinations import (
    Batch,
    BatchRejectedError,
    Rejection,
    SQLiteDestination,
    TransientDestinationError,
)
from resources.notifications import Notifier
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse
from tests.tables import replace_table

MART = dg.AssetKey(["service_crm", "service_crm_contacts"])
SYNC = dg.AssetKey(["sync", "crm_contacts"])
CRM_SPEC = next(spec for spec in sync_specs() if spec.name == "crm_contacts")

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
    """SQLite that writes every call to a JSON-lines file; it refuses chosen calls, batches
    holding chosen keys, and can crash (as if the process died) at a chosen call."""

    record_path: str
    fail_calls: list[int] = Field(default_factory=list)
    refuse_keys: list[str] = Field(default_factory=list)
    crash_at_call: int = 0
    down_after_call: int = 0  # From this call on, every call fails as a network error would.

    def _record(self, op: str, keys: Sequence[str], ok: bool) -> None:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"op": op, "keys": list(keys), "ok": ok}) + "\n")

    def _call_number(self) -> int:
        path = Path(self.record_path)
        return 1 + (len(path.read_text().splitlines()) if path.exists() else 0)

    def write(self, batch: Batch) -> list[Rejection]:
        call = self._call_number()
        keys = batch.rows.column("contact_id").to_pylist()
        rejected = call in self.fail_calls or bool(set(keys) & set(self.refuse_keys))
        if self.down_after_call and call > self.down_after_call:
            raise TransientDestinationError("CRM unreachable")
        crashed = Path(f"{self.record_path}.crashed")
        if crashed.exists():  # The "process" is dead: nothing more reaches the CRM.
            raise SystemExit("killed")
        if call == self.crash_at_call:
            super().write(batch)  # Applied, but the process dies before the acknowledgement.
            crashed.touch()
            raise SystemExit("killed")
        self._record(batch.operation, keys, ok=not rejected)
        if rejected:
            raise BatchRejectedError(f"CRM refused a batch holding {sorted(self.refuse_keys)}")
        return super().write(batch)


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
        replace_table(self.warehouse, "service_crm", "service_crm_contacts", table)

    def sync(
        self,
        spec: SyncSpec = CRM_SPEC,
        fail_calls: Sequence[int] = (),
        refuse_keys: Sequence[str] = (),
        crash_at_call: int = 0,
        down_after_call: int = 0,
    ) -> dg.ExecuteInProcessResult:
        destination = RecordingDestination(
            path=str(self.crm_path),
            record_path=str(self.calls_path),
            fail_calls=list(fail_calls),
            refuse_keys=list(refuse_keys),
            crash_at_call=crash_at_call,
            down_after_call=down_after_call,
            max_attempts=3,
            backoff_initial_s=0.001,
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

    def rejected(self) -> list[dict[str, object]]:
        return self.warehouse.query_arrow(
            "SELECT contact_id, _op, _reason FROM sync_state.crm_contacts__rejected ORDER BY 1"
        ).to_pylist()


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
    assert [asset.key for asset in sync_assets()] == [SYNC]
    (asset,) = sync_assets()
    assert asset.group_names_by_key[SYNC] == "sync"
    assert set(asset.asset_deps[SYNC]) == {MART}
    assert {"warehouse", "crm_destination", "notifier"} <= asset.required_resource_keys
    (check,) = sync_checks()
    assert [key.name for key in check.check_keys] == [CHECK_NAME]
    assert not next(iter(check.check_specs)).blocking
    assert CRM_SPEC.mode == "mirror"
    assert CRM_SPEC.destination_table == "crm_contacts"
    assert CRM_SPEC.key_columns == ("contact_id",)


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


def test_refused_record_is_isolated_kept_with_reason_and_retried(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"batch_size": 4})
    env.set_source(contacts("c01", "c02", "c03", "c04", "c05", "c06"))

    first = env.sync(spec, refuse_keys=["c03"])
    assert first.success  # A refused record fails the check, not the run.
    meta = metadata(first)
    assert (meta["rows_sent"], meta["rows_failed"], meta["batch_splits"]) == (5, 1, 2)
    assert not check_passed(first)
    # The refused batch was halved until c03 stood alone; its neighbours went through.
    assert [(c["keys"], c["ok"]) for c in env.calls()] == [
        (["c01", "c02", "c03", "c04"], False),
        (["c01", "c02"], True),
        (["c03", "c04"], False),
        (["c03"], False),
        (["c04"], True),
        (["c05", "c06"], True),
    ]
    assert env.state_keys() == ["c01", "c02", "c04", "c05", "c06"]
    assert sorted(env.crm_rows()) == ["c01", "c02", "c04", "c05", "c06"]
    (rejected,) = env.rejected()
    assert rejected["contact_id"] == "c03"
    assert rejected["_op"] == "upsert"
    assert "CRM refused a batch" in rejected["_reason"]
    (alert,) = env.alerts()
    assert "crm_contacts" in alert
    assert "1 row(s) failed" in alert
    assert "crm_contacts__rejected" in alert

    second = env.sync(spec)  # The CRM accepts c03 now.
    assert (metadata(second)["rows_sent"], metadata(second)["rows_failed"]) == (1, 0)
    assert check_passed(second)
    assert env.calls()[-1] == {"op": "upsert", "keys": ["c03"], "ok": True}
    acknowledged = [key for call in env.calls() if call["ok"] for key in call["keys"]]
    assert sorted(acknowledged) == ["c01", "c02", "c03", "c04", "c05", "c06"]  # Each once.
    assert env.rejected() == []
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03", "c04", "c05", "c06"]


def test_crash_mid_sync_resumes_without_resending_or_losing(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"batch_size": 2})
    env.set_source(contacts("c01", "c02", "c03", "c04", "c05", "c06", "c07"))
    destination = RecordingDestination(
        path=str(env.crm_path), record_path=str(env.calls_path), crash_at_call=3
    )
    log = logging.getLogger("test_sync")
    with pytest.raises(SystemExit):
        run_sync(spec, env.warehouse, destination, log)
    # c05 and c06 reached the CRM, the acknowledgement did not: the plan is still open.
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03", "c04", "c05", "c06"]
    assert env.state_keys() == []

    Path(f"{env.calls_path}.crashed").unlink()
    destination = RecordingDestination(path=str(env.crm_path), record_path=str(env.calls_path))
    report = run_sync(spec, env.warehouse, destination, log)
    assert report.resumed_batches == 2
    calls = env.calls()
    # Batches 1 and 2 were journaled and never sent again; batch 3 is replayed once with its
    # key (a merge by key: no further effect), batch 4 is sent for the first time.
    assert [c["keys"] for c in calls] == [["c01", "c02"], ["c03", "c04"], ["c05", "c06"], ["c07"]]
    assert (report.sent, report.added) == (3, 3)
    assert env.state_keys() == ["c01", "c02", "c03", "c04", "c05", "c06", "c07"]
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03", "c04", "c05", "c06", "c07"]
    assert run_sync(spec, env.warehouse, destination, log).sent == 0


def test_unreachable_destination_fails_alerts_and_keeps_what_was_delivered(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"batch_size": 2})
    env.set_source(contacts("c01", "c02", "c03", "c04", "c05"))
    result = env.sync(spec, down_after_call=1)
    assert not result.success
    assert "failed 3 times, last: CRM unreachable" in failure_message(result)
    (alert,) = env.alerts()
    assert alert.startswith("Sync crm_contacts to sqlite table crm_contacts failed")
    assert env.state_keys() == ["c01", "c02"]  # The acknowledged batch is kept.
    assert metadata(env.sync(spec))["rows_sent"] == 3  # The rest goes on the next run.
    assert sorted(env.crm_rows()) == ["c01", "c02", "c03", "c04", "c05"]


def test_update_mode_changes_only_existing_records(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"mode": "update"})
    env.set_source(contacts("c01"))
    env.sync(CRM_SPEC.model_copy(update={"mode": "upsert"}))  # The CRM knows c01 only.
    env.set_source([contact("c01", lifecycle_stage="churned"), contact("c02")])
    result = env.sync(spec)
    meta = metadata(result)
    assert (meta["rows_added"], meta["rows_changed"], meta["rows_sent"]) == (1, 1, 1)
    assert meta["rows_failed"] == 1
    assert env.crm_rows()["c01"][0] == "churned"
    assert sorted(env.crm_rows()) == ["c01"]
    (rejected,) = env.rejected()
    assert rejected["contact_id"] == "c02"
    assert "mode update never creates records" in rejected["_reason"]


def test_insert_mode_sends_new_keys_only(env: Env) -> None:
    spec = CRM_SPEC.model_copy(update={"mode": "insert"})
    env.set_source(contacts("c01"))
    env.sync(spec)
    env.set_source([contact("c01", lifecycle_stage="churned"), contact("c02")])
    meta = metadata(env.sync(spec))
    assert (meta["rows_added"], meta["rows_changed"], meta["rows_sent"]) == (1, 0, 1)
    assert env.crm_rows()["c01"][0] == "customer"  # Never changed after the insert.
    assert sorted(env.crm_rows()) == ["c01", "c02"]
    assert [c["op"] for c in env.calls()] == ["insert", "insert"]


def test_column_mapping_renames_fields_in_the_destination(env: Env) -> None:
    spec = CRM_SPEC.model_copy(
        update={
            "primary_key": {"contact_id": "external_id"},
            "columns": {"lifecycle_stage": "stage", "lifetime_orders": "orders"},
        }
    )
    env.set_source(contacts("c01"))
    destination = SQLiteDestination(path=str(env.crm_path))
    run_sync(spec, env.warehouse, destination, logging.getLogger("test_sync"))
    with sqlite3.connect(env.crm_path) as conn:
        assert conn.execute("SELECT external_id, stage, orders FROM crm_contacts").fetchall() == [
            ("c01", "customer", 3)
        ]


def test_mapping_a_new_column_resends_every_row(env: Env) -> None:
    narrow = CRM_SPEC.model_copy(update={"columns": {"lifecycle_stage": "lifecycle_stage"}})
    env.set_source(contacts("c01", "c02"))
    env.sync(narrow)
    assert metadata(env.sync(narrow))["rows_sent"] == 0
    meta = metadata(env.sync(CRM_SPEC))  # Four more columns mapped: the CRM needs every row.
    assert (meta["rows_changed"], meta["rows_sent"]) == (2, 2)
    assert env.crm_rows()["c01"][1] == 3


def test_state_hashed_another_way_is_resent_once(env: Env) -> None:
    env.set_source(contacts("c01", "c02"))
    env.sync()
    env.warehouse.execute(  # As an older Minato left it: hex MD5 strings.
        "CREATE OR REPLACE TABLE sync_state.crm_contacts AS SELECT * "
        "REPLACE (md5(CAST(_row_hash AS VARCHAR)) AS _row_hash) FROM sync_state.crm_contacts"
    )
    meta = metadata(env.sync())
    assert (meta["rows_sent"], meta["rows_removed"]) == (2, 0)
    assert metadata(env.sync())["rows_sent"] == 0


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
    assert message.startswith(f"{path}:")
    assert "sync 'crm_contacts'" in message
    assert f"key '{key}'" in message


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("mode: mirror", "mode: mirror\n    schedule: 'every day'"), "schedule", "cron"),
        (
            (
                "mode: mirror",
                "mode: mirror\n    schedule: '0 7 * * *'\n    automation_condition: eager",
            ),
            "schedule",
            "either",
        ),
        (("mode: mirror", "mode: mirror\n    rate_limit_per_s: -1"), "rate_limit_per_s", "greater"),
        (("mode: mirror", "mode: mirror\n    concurrency: 100"), "concurrency", "less"),
        (
            ("columns: [lifecycle_stage]", "columns: {lifecycle_stage: contact_id}"),
            "columns",
            "mapped twice",
        ),
        (
            ("columns: [lifecycle_stage]", "columns: {lifecycle_stage: bad-name}"),
            "columns",
            "destination field",
        ),
    ],
)
def test_spec_errors_for_schedules_limits_and_mappings(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = tmp_path / "syncs.yaml"
    path.write_text(VALID_SPEC.replace(*change))
    with pytest.raises(SyncSpecError) as error:
        load_sync_specs(path)
    message = str(error.value)
    assert message.startswith(f"{path}:")
    assert f": sync 'crm_contacts': key '{key}'" in message
    assert problem in message


def test_specs_load_from_every_file_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        VALID_SPEC.replace("mode: mirror", "mode: update\n    schedule: '0 7 * * *'")
    )
    (tmp_path / "b.yaml").write_text(
        VALID_SPEC.replace("name: crm_contacts", "name: scores")
        .replace("columns: [lifecycle_stage]", "columns: {lifecycle_stage: stage}")
        .replace("mode: mirror", "mode: insert\n    automation_condition: eager")
    )
    first, second = load_sync_specs(tmp_path)
    assert first.dagster_automation_condition() is not None
    assert "0 7 * * *" in str(first.dagster_automation_condition().get_label())
    assert second.destination_names == {"contact_id": "contact_id", "lifecycle_stage": "stage"}
    assert second.operation("added") == "insert"
    (tmp_path / "c.yaml").write_text(VALID_SPEC)
    with pytest.raises(
        SyncSpecError, match=r"c\.yaml:2: sync 'crm_contacts': key 'name': .*a\.yaml"
    ):
        load_sync_specs(tmp_path)


def test_spec_errors_for_duplicate_names_and_bad_documents(tmp_path: Path) -> None:
    path = tmp_path / "syncs.yaml"
    path.write_text(VALID_SPEC + VALID_SPEC.split("\n", 1)[1])
    with pytest.raises(SyncSpecError, match=r"sync 'crm_contacts': key 'name': .*twice"):
        load_sync_specs(path)
    path.write_text("syncs: {crm_contacts: {}}")
    with pytest.raises(SyncSpecError, match=r"syncs\.yaml:1: key 'syncs'"):
        load_sync_specs(path)


def batch(operation: str, rows: dict[str, list[object]], table: str = "t") -> Batch:
    return Batch(table, ("id",), operation, pa.table(rows), f"test/{operation}")  # type: ignore[arg-type]


def test_sqlite_batch_is_all_or_nothing_and_gains_new_columns(tmp_path: Path) -> None:
    destination = SQLiteDestination(path=str(tmp_path / "crm.sqlite"))
    assert destination.write(batch("upsert", {"id": ["a"], "x": [1]})) == []
    with pytest.raises(BatchRejectedError, match="NOT NULL"):
        destination.write(batch("upsert", {"id": ["b", None], "x": [2, 3]}))
    destination.write(batch("upsert", {"id": ["a"], "x": [5], "y": ["new"]}))
    assert destination.write(batch("delete", {"id": ["a"]}, table="missing")) == []
    assert destination.write(batch("update", {"id": ["a"], "x": [1]}, table="missing")) == [
        Rejection(0, "no record with this key in missing: mode update never creates records")
    ]
    with sqlite3.connect(tmp_path / "crm.sqlite") as conn:
        assert conn.execute("SELECT id, x, y FROM t").fetchall() == [("a", 5, "new")]


class BigQuerySqlRecorder(BigQueryWarehouse):
    """BigQuery's SQL rendering without a client: queries are recorded and answer no rows."""

    record_path: str

    def query_arrow(self, sql: str) -> pa.Table:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(sql) + "\n")
        return pa.table(
            {"_change": pa.array([], pa.string()), "_row_hash": pa.array([], pa.int64())}
        )

    def execute(self, sql: str) -> None:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(sql) + "\n")

    def table_exists(self, schema: str, table: str) -> bool:
        return True


def test_diff_and_bookkeeping_sql_parses_as_bigquery(tmp_path: Path) -> None:
    record = tmp_path / "queries.jsonl"
    warehouse = BigQuerySqlRecorder(project="minato-prod", record_path=str(record))
    spec = CRM_SPEC
    check_source_keys(warehouse, spec)
    store = SyncStore(warehouse, spec)
    store.create_plan()
    store.fold()
    queries = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(queries) == 5  # key check, two hash-format probes, plan, fold
    for sql in queries:
        for statement in sqlglot.parse(sql, read="bigquery"):
            assert statement is not None
        assert "`minato-prod.sync_state.crm_contacts" in sql or "service_crm_contacts" in sql
    plan = next(q for q in queries if "__plan" in q and "CREATE OR REPLACE" in q)
    assert "FARM_FINGERPRINT(CONCAT('contact_id:contact_id,lifecycle_stage:lifecycle_stage," in plan
    assert "TO_JSON_STRING(STRUCT(lifecycle_stage AS lifecycle_stage" in plan
    assert "UNION ALL" in plan  # mirror: removed keys are part of the plan
    assert "BEGIN TRANSACTION" in queries[-1]
    assert "`minato-prod.sync_state.crm_contacts__rejected`" in queries[-1]
