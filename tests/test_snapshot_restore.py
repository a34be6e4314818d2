"""Snapshot-restore ingestion against moto's RDS (as a server) and the real MariaDB, which plays
the restored instance: the exact RDS requests, the copy reconciled with the source, no
ephemeral instance left behind on failure, and the janitor deleting only what it should.

moto reports a restored instance available at once and accepts deletes real RDS may refuse, so
the tests assert the requests sent, not only the state moto ends in."""

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import dagster as dg
import duckdb
import pytest
import yaml

from assets.snapshot_restore.assets import build_snapshot_asset, snapshot_restore_assets
from assets.snapshot_restore.janitor import (
    JanitorError,
    delete_expired,
    ephemeral_instance_janitor,
)
from assets.snapshot_restore.restore import SnapshotRestoreError, latest_snapshot
from assets.snapshot_restore.sources import SnapshotSourceError, load_snapshot_sources
from pipelines.snapshot_restore_schedule import snapshot_restore_schedules
from resources.rds import RdsApi
from resources.settings import REPO_ROOT
from resources.warehouse import DuckDBWarehouse
from tests.aws import REGION, moto_server, recorded_requests
from tests.servers import mariadb_database

pytestmark = pytest.mark.mariadb

HOST, PORT = "127.0.0.1", 3306
DATABASE = "minato_it_snapshot_restore"
PRODUCTION = "billing-prod"
# Yesterday in Tokyo: moto stamps snapshots with the real clock, and a snapshot must be taken
# after the business day it loads has ended.
DAY = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)

# Every host name Python resolved or connected to during a test (the production endpoint must
# never be one of them). Audit hooks cannot be removed: one hook, reset per test.
_CONTACTED: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo":
        _CONTACTED.append(str(args[0]))
    elif event == "socket.connect" and isinstance(args[1], tuple):
        _CONTACTED.append(str(args[1][0]))


sys.addaudithook(_audit)


@pytest.fixture
def aws(monkeypatch):
    with moto_server() as endpoint, recorded_requests(monkeypatch, endpoint) as requests:
        client = RdsApi().client()
        client.create_db_instance(
            DBInstanceIdentifier=PRODUCTION,
            DBInstanceClass="db.r6g.xlarge",
            Engine="mysql",
            MasterUsername="admin",
            MasterUserPassword="not-a-secret",
            AllocatedStorage=100,
        )
        client.create_db_snapshot(DBInstanceIdentifier=PRODUCTION, DBSnapshotIdentifier="nightly")
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=zone)
            for n, zone in enumerate((f"{REGION}a", f"{REGION}c"))
        ]
        client.create_db_subnet_group(
            DBSubnetGroupName="minato-restore",
            DBSubnetGroupDescription="restored snapshots",
            SubnetIds=[subnet["Subnet"]["SubnetId"] for subnet in subnets],
        )
        requests.sent.clear()
        _CONTACTED.clear()
        yield client, requests


@pytest.fixture
def source_db():
    with mariadb_database(DATABASE, HOST, PORT) as admin:
        with admin.cursor() as cursor:
            for client_id, rows in ((1, 3), (2, 2)):
                cursor.execute(
                    f"CREATE TABLE invoices_{client_id} (invoice_id BIGINT PRIMARY KEY, "
                    "amount DECIMAL(12, 2), issued_at DATETIME, updated_at DATETIME)"
                )
                for n in range(1, rows + 1):
                    cursor.execute(
                        f"INSERT INTO invoices_{client_id} VALUES (%s, %s, %s, %s)",
                        (n, 100 * n + client_id, f"{DAY} 09:00:00", f"{DAY} 1{n}:00:00"),
                    )
                # Changed three days earlier: outside the day's window, not copied.
                cursor.execute(
                    f"INSERT INTO invoices_{client_id} VALUES (99, 1, %s, %s)",
                    (f"{DAY - dt.timedelta(days=3)} 09:00:00",) * 2,
                )
        yield admin


def _sources_file(tmp_path: Path, tables: list[dict], max_age: float = 30) -> Path:
    path = tmp_path / "snapshot_sources.yml"
    source = {
        "name": "billing",
        "instance": PRODUCTION,
        "url": f"mysql+pymysql://root@{{endpoint}}/{DATABASE}",
        "timezone": "Asia/Tokyo",
        "max_snapshot_age_hours": max_age,
        "instance_class": "db.t3.large",
        "subnet_group": "minato-restore",
        "security_groups": ["sg-0123456789abcdef0"],
        "tables": tables,
    }
    path.write_text(yaml.safe_dump({"snapshot_sources": [source]}))
    return path


INVOICES = {"name": "invoices", "primary_key": ["invoice_id"], "datetime_columns": ["issued_at"]}
RDS = RdsApi(connect_through=f"{HOST}:{PORT}", wait_delay_seconds=1, wait_max_attempts=3)


def _materialize(sources_file: Path, lake: Path, instance) -> dg.ExecuteInProcessResult:
    (source,) = load_snapshot_sources(sources_file)
    return dg.materialize(
        [build_snapshot_asset(source)],
        partition_key=DAY.isoformat(),
        resources={"rds": RDS, "warehouse": DuckDBWarehouse(path=str(lake))},
        instance=instance,
        raise_on_error=False,
    )


def _instances(client) -> list[str]:
    return sorted(i["DBInstanceIdentifier"] for i in client.describe_db_instances()["DBInstances"])


def test_restore_copy_delete_sends_exact_requests_and_reconciles(
    aws, source_db, tmp_path, instance
) -> None:
    client, requests = aws
    lake = tmp_path / "warehouse.duckdb"
    result = _materialize(_sources_file(tmp_path, [INVOICES]), lake, instance)
    assert result.success

    run_id = result.run_id
    ephemeral = f"minato-billing-{run_id[:8]}-0"
    assert requests.operations() == [
        "DescribeDBSnapshots",
        "RestoreDBInstanceFromDBSnapshot",
        "DescribeDBInstances",  # the waiter
        "DescribeDBInstances",
        "DeleteDBInstance",
    ]
    assert requests.of("DescribeDBSnapshots") == [
        {"Version": "2014-10-31", "DBInstanceIdentifier": PRODUCTION}
    ]
    (restore,) = requests.of("RestoreDBInstanceFromDBSnapshot")
    assert restore == {
        "Version": "2014-10-31",
        "DBInstanceIdentifier": ephemeral,
        "DBSnapshotIdentifier": "nightly",
        "DBInstanceClass": "db.t3.large",
        "MultiAZ": "false",
        "PubliclyAccessible": "false",
        "DeletionProtection": "false",
        "DBSubnetGroupName": "minato-restore",
        "VpcSecurityGroupIds.VpcSecurityGroupId.1": "sg-0123456789abcdef0",
        "Tags.Tag.1.Key": "minato:ephemeral",
        "Tags.Tag.1.Value": "true",
        "Tags.Tag.2.Key": "minato:run-id",
        "Tags.Tag.2.Value": run_id,
        "Tags.Tag.3.Key": "minato:source",
        "Tags.Tag.3.Value": "billing",
    }
    assert requests.of("DeleteDBInstance") == [
        {
            "Version": "2014-10-31",
            "DBInstanceIdentifier": ephemeral,
            "SkipFinalSnapshot": "true",
            "DeleteAutomatedBackups": "true",
        }
    ]
    assert _instances(client) == [PRODUCTION]

    # The copy read the restored instance (here: MariaDB behind `connect_through`), never the
    # production endpoint, whose name no request and no connection carries.
    production_address = client.describe_db_instances(DBInstanceIdentifier=PRODUCTION)[
        "DBInstances"
    ][0]["Endpoint"]["Address"]
    metadata = result.asset_materializations_for_node("snapshot_billing")[0].metadata
    assert metadata["restored_endpoint"].value.startswith(f"{ephemeral}.")
    assert metadata["connected_to"].value == f"{HOST}:{PORT}"
    assert not [h for h in _CONTACTED if PRODUCTION in h or h == production_address]
    assert HOST in _CONTACTED

    # Counts and checksums agree with the source, and the lake holds exactly the day's rows.
    with duckdb.connect(str(lake), read_only=True) as conn:
        reconciliation = conn.execute(
            "SELECT shard, source_rows, loaded_rows, quarantined_rows, "
            "source_key_checksum = loaded_key_checksum, reconciled "
            "FROM monitoring.ingestion_reconciliation"
        ).fetchall()
        lake_rows = conn.execute(
            "SELECT _source_table, invoice_id, amount, _shard, _source_tz "
            "FROM lake.billing_invoices ORDER BY 1, 2"
        ).fetchall()
    assert reconciliation == [("billing", 5, 5, 0, True, True)]
    with source_db.cursor() as cursor:
        cursor.execute(
            "SELECT 'invoices_1', invoice_id, amount FROM invoices_1 WHERE updated_at >= %s "
            "UNION ALL SELECT 'invoices_2', invoice_id, amount FROM invoices_2 "
            "WHERE updated_at >= %s ORDER BY 1, 2",
            (str(DAY), str(DAY)),
        )
        expected = [(t, str(i), str(a), "billing", "Asia/Tokyo") for t, i, a in cursor.fetchall()]
    assert lake_rows == expected
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("reconciles_with_source", True)]


def test_a_failure_mid_copy_leaves_no_ephemeral_instance(
    aws, source_db, tmp_path, instance
) -> None:
    client, requests = aws
    # The second table has no client tables on the source: the copy fails after the first.
    payments = {"name": "payments", "primary_key": ["payment_id"]}
    result = _materialize(_sources_file(tmp_path, [INVOICES, payments]), tmp_path / "l", instance)
    assert not result.success
    failure = result.failure_data_for_node("snapshot_billing")
    assert "no `payments_<client_id>` tables found" in str(failure.error.message)
    (restore,) = requests.of("RestoreDBInstanceFromDBSnapshot")
    (delete,) = requests.of("DeleteDBInstance")
    assert delete["DBInstanceIdentifier"] == restore["DBInstanceIdentifier"]
    assert delete["SkipFinalSnapshot"] == "true"
    assert _instances(client) == [PRODUCTION]


def test_a_stale_or_early_snapshot_is_refused_before_any_restore(aws, tmp_path) -> None:
    client, requests = aws
    (source,) = load_snapshot_sources(_sources_file(tmp_path, [INVOICES], max_age=30))
    snapshot = client.describe_db_snapshots(DBSnapshotIdentifier="nightly")["DBSnapshots"][0]
    taken = snapshot["SnapshotCreateTime"]
    assert latest_snapshot(client, source, taken, taken)["DBSnapshotIdentifier"] == "nightly"
    with pytest.raises(SnapshotRestoreError, match="older than max_snapshot_age_hours=30"):
        latest_snapshot(client, source, taken, taken + dt.timedelta(hours=31))
    with pytest.raises(SnapshotRestoreError, match="cannot hold that business day"):
        latest_snapshot(client, source, taken + dt.timedelta(minutes=1), taken)
    assert "RestoreDBInstanceFromDBSnapshot" not in requests.operations()


def _restore(client, identifier: str, tags: list[dict[str, str]], protected=False) -> None:
    client.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier=identifier,
        DBSnapshotIdentifier="nightly",
        Tags=tags,
        DeletionProtection=protected,
    )


def test_the_janitor_deletes_only_expired_ephemeral_instances(aws) -> None:
    client, requests = aws
    _restore(client, "minato-left-behind", [{"Key": "minato:ephemeral", "Value": "true"}])
    _restore(client, "someone-elses-copy", [{"Key": "team", "Value": "finance"}])
    _restore(client, "not-ephemeral", [{"Key": "minato:ephemeral", "Value": "false"}])
    requests.sent.clear()
    now = dt.datetime.now(dt.UTC)

    assert delete_expired(client, now, dt.timedelta(hours=12)) == []
    assert requests.of("DeleteDBInstance") == []

    later = now + dt.timedelta(hours=13)
    assert delete_expired(client, later, dt.timedelta(hours=12)) == ["minato-left-behind"]
    assert requests.of("DeleteDBInstance") == [
        {
            "Version": "2014-10-31",
            "DBInstanceIdentifier": "minato-left-behind",
            "SkipFinalSnapshot": "true",
            "DeleteAutomatedBackups": "true",
        }
    ]
    assert _instances(client) == [PRODUCTION, "not-ephemeral", "someone-elses-copy"]


def test_an_instance_rds_refuses_to_delete_does_not_stop_the_janitor(aws) -> None:
    client, requests = aws
    _restore(client, "minato-protected", [{"Key": "minato:ephemeral", "Value": "true"}], True)
    _restore(client, "minato-left-behind", [{"Key": "minato:ephemeral", "Value": "true"}])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=13)
    with pytest.raises(JanitorError, match=r"could not delete minato-protected \(") as error:
        delete_expired(client, later, dt.timedelta(hours=12))
    assert str(error.value).endswith("; deleted: minato-left-behind")
    deletes = [d["DBInstanceIdentifier"] for d in requests.of("DeleteDBInstance")]
    assert deletes == ["minato-protected", "minato-left-behind"]
    assert _instances(client) == [PRODUCTION, "minato-protected"]


def test_the_janitor_sensor_deletes_through_its_resource(aws) -> None:
    client, requests = aws
    _restore(client, "minato-left-behind", [{"Key": "minato:ephemeral", "Value": "true"}])
    fresh = ephemeral_instance_janitor(dg.build_sensor_context(resources={"rds": RdsApi()}))
    assert fresh.skip_message == "no expired ephemeral instance"
    context = dg.build_sensor_context(resources={"rds": RdsApi(ephemeral_max_age_hours=0)})
    result = ephemeral_instance_janitor(context)
    assert result.skip_message == "deleted 1 expired instance(s): minato-left-behind"
    assert [d["DBInstanceIdentifier"] for d in requests.of("DeleteDBInstance")] == [
        "minato-left-behind"
    ]
    assert _instances(client) == [PRODUCTION]


def test_the_example_sources_file_loads_and_errors_name_file_line_and_key(tmp_path) -> None:
    (example,) = load_snapshot_sources(REPO_ROOT / "metadata" / "snapshot_sources.yml")
    assert [t.name for t in example.lake_tables()] == ["billing_invoices", "billing_payments"]
    assert [t.source_name for t in example.lake_tables()] == ["invoices", "payments"]

    bad = tmp_path / "bad.yml"
    bad.write_text(
        "snapshot_sources:\n"
        "  - name: billing\n"
        "    instance: billing-prod\n"
        "    url: mysql+pymysql://etl@billing-prod.example/billing\n"
        "    timezone: Asia/Tokyo\n"
        "    max_snapshot_age_hour: 30\n"
        "    tables: [{name: invoices, primary_key: [invoice_id]}]\n"
    )
    with pytest.raises(SnapshotSourceError) as error:
        load_snapshot_sources(bad)
    assert str(error.value).splitlines() == [
        f"{bad}:4: snapshot source 'billing': key 'url': must contain {{endpoint}}: the "
        "restored instance's host:port (the production instance is never contacted)",
        f"{bad}:2: snapshot source 'billing': key 'max_snapshot_age_hours': missing",
        f"{bad}:6: snapshot source 'billing': key 'max_snapshot_age_hour': unknown key; allowed: "
        "name, instance, url, timezone, max_snapshot_age_hours, instance_class, subnet_group, "
        "security_groups, tables",
    ]


def test_the_nightly_schedule_loads_the_previous_business_day_of_every_source(
    monkeypatch,
) -> None:
    monkeypatch.delenv("MINATO_SNAPSHOT_SOURCES_FILE", raising=False)
    assert snapshot_restore_assets() == () and snapshot_restore_schedules() == ()
    example = REPO_ROOT / "metadata" / "snapshot_sources.yml"
    monkeypatch.setenv("MINATO_SNAPSHOT_SOURCES_FILE", str(example))
    defs = dg.Definitions(
        assets=snapshot_restore_assets(),
        schedules=snapshot_restore_schedules(),
        resources={"rds": RDS, "warehouse": DuckDBWarehouse(path="unused.duckdb")},
    )
    schedule = defs.resolve_schedule_def("snapshot_restore_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "Asia/Tokyo")
    tick = dt.datetime(2026, 11, 27, 3, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-26"
    job = defs.resolve_job_def("snapshot_restore")
    assert set(job.asset_layer.selected_asset_keys) == {
        dg.AssetKey(["lake", "billing_invoices"]),
        dg.AssetKey(["lake", "billing_payments"]),
    }
