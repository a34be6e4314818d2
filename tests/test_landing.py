"""The landing zone: the sensor over a local folder and a real S3-compatible server, and the
Search-Console asset that loads landed files."""

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from assets.ingestion.landing_files import build_crm_contacts, build_search_console_pages
from pipelines.sensors import landing_sensor
from resources.landing import LandingStore, LocalLandingStore, S3LandingStore
from resources.warehouse import DuckDBWarehouse
from tests.aws import moto_server

SEARCH_CONSOLE_CSV = (
    b"date,page,clicks,impressions,ctr,position\n2026-01-01,/pricing,10,200,0.05,3.1\n"
)
search_console_pages = build_search_console_pages()
crm_contacts = build_crm_contacts()
CRM_CSV = b"contact_id,email,updated_at\nCRM-000001,sato@example.jp,2026-01-02T14:00:00Z\n"


def land(root: Path, key: str, payload: bytes, modified: float) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    os.utime(path, (modified, modified))


def evaluate(store: LandingStore, cursor: str | None) -> dg.SensorResult:
    # A context manager: S3LandingStore's nested S3Resource is set up and torn down like a run's.
    with dg.build_sensor_context(cursor=cursor, resources={"landing": store}) as context:
        result = landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def describe(request: dg.RunRequest) -> tuple:
    """What a run request asks for, without the run key's modification time."""
    return (
        request.run_key.rsplit("@", 1)[0],
        tuple(key.to_user_string() for key in request.asset_selection or ()),
        request.partition_key,
        request.run_config or None,
    )


def crm_request(key: str) -> tuple:
    return (
        key,
        ("lake/crm_contacts",),
        None,
        {"ops": {"lake__crm_contacts": {"config": {"file_key": key}}}},
    )


def search_console_request(day: str) -> tuple:
    return (f"search_console/pages_{day}.csv", ("lake/search_console_pages",), day, None)


# --- the sensor over a local folder -------------------------------------------------------------


def test_local_sensor_requests_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    land(root, "search_console/pages_2026-01-02.csv", SEARCH_CONSOLE_CSV, 1_000)
    land(root, "search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV, 1_001)
    land(root, "crm/contacts_2026-01-02.csv", CRM_CSV, 1_002)
    land(root, "search_console/notes.txt", b"not an export", 1_003)  # listed, then ignored
    land(root, "search_console/pages_2026-01-03.tmp", b"half written", 1_004)  # never listed
    land(root, "other/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV, 1_005)  # another export
    store = LocalLandingStore(root=str(root))

    first = evaluate(store, None)

    # Arrival order (modification time), not name order.
    assert [describe(r) for r in first.run_requests] == [
        search_console_request("2026-01-02"),
        search_console_request("2026-01-01"),
        crm_request("crm/contacts_2026-01-02.csv"),
    ]
    assert [r.run_key for r in first.run_requests] == [
        "search_console/pages_2026-01-02.csv@1000.0",
        "search_console/pages_2026-01-01.csv@1001.0",
        "crm/contacts_2026-01-02.csv@1002.0",
    ]
    # The newest listed file (notes.txt, 1003) minus the 2 s margin; files from then on are
    # remembered by identity, older ones are behind the mark.
    assert json.loads(first.cursor) == {
        "since": 1001.0,
        "handled": [
            "crm/contacts_2026-01-02.csv@1002.0",
            "search_console/notes.txt@1003.0",
            "search_console/pages_2026-01-01.csv@1001.0",
        ],
    }

    second = evaluate(store, first.cursor)

    assert second.run_requests == []
    assert second.cursor == first.cursor

    land(root, "search_console/pages_2026-01-03.csv", SEARCH_CONSOLE_CSV, 1_010)
    third = evaluate(store, second.cursor)

    assert [describe(r) for r in third.run_requests] == [search_console_request("2026-01-03")]
    assert [r.run_key for r in third.run_requests] == ["search_console/pages_2026-01-03.csv@1010.0"]
    assert json.loads(third.cursor) == {
        "since": 1008.0,
        "handled": ["search_console/pages_2026-01-03.csv@1010.0"],
    }

    # A corrected export re-uploaded later is loaded again, under a new run key.
    land(root, "search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV, 1_020)
    fourth = evaluate(store, third.cursor)

    assert [describe(r) for r in fourth.run_requests] == [search_console_request("2026-01-01")]
    assert [r.run_key for r in fourth.run_requests] == [
        "search_console/pages_2026-01-01.csv@1020.0"
    ]
    assert json.loads(fourth.cursor) == {
        "since": 1018.0,
        "handled": ["search_console/pages_2026-01-01.csv@1020.0"],
    }
    fifth = evaluate(store, fourth.cursor)
    assert fifth.run_requests == []
    assert fifth.cursor == fourth.cursor


def test_local_sensor_on_empty_landing_zone_keeps_an_empty_cursor(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    store = LocalLandingStore(root=str(root))

    result = evaluate(store, None)

    assert result.run_requests == []
    # Python's json writes -inf as -Infinity, and reads it back.
    assert result.cursor == '{"since": -Infinity, "handled": []}'
    again = evaluate(store, result.cursor)
    assert again.run_requests == []
    assert again.cursor == result.cursor

    # The first file to land, however old its modification time, is requested.
    land(root, "search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV, 0)
    first = evaluate(store, again.cursor)

    assert [r.run_key for r in first.run_requests] == ["search_console/pages_2026-01-01.csv@0.0"]


def test_local_sensor_does_not_miss_a_file_landing_in_the_same_second(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    land(root, "search_console/pages_2026-01-03.csv", SEARCH_CONSOLE_CSV, 2_000)
    store = LocalLandingStore(root=str(root))
    first = evaluate(store, None)
    land(root, "search_console/pages_2026-01-02.csv", SEARCH_CONSOLE_CSV, 2_000)

    second = evaluate(store, first.cursor)

    # Same modification time, a key that sorts first: new all the same.
    assert [r.run_key for r in second.run_requests] == [
        "search_console/pages_2026-01-02.csv@2000.0"
    ]
    assert [describe(r) for r in second.run_requests] == [search_console_request("2026-01-02")]
    assert json.loads(second.cursor) == {
        "since": 1998.0,
        "handled": [
            "search_console/pages_2026-01-02.csv@2000.0",
            "search_console/pages_2026-01-03.csv@2000.0",
        ],
    }

    # A file stamped within the margin below the newest one (a writer's clock a second behind)
    # is not missed either, and nothing is requested twice.
    land(root, "search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV, 1_999)
    third = evaluate(store, second.cursor)

    assert [r.run_key for r in third.run_requests] == ["search_console/pages_2026-01-01.csv@1999.0"]
    assert evaluate(store, third.cursor).run_requests == []


def test_local_store_reads_only_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    land(root, "crm/contacts_2026-01-02.csv", CRM_CSV, 1_000)
    (tmp_path / "secret.txt").write_text("outside")
    store = LocalLandingStore(root=str(root))

    assert store.read_bytes("crm/contacts_2026-01-02.csv") == CRM_CSV
    with pytest.raises(ValueError, match="escapes the landing folder"):
        store.read_bytes("../secret.txt")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("crm/contacts_2026-01-03.csv")


# --- S3 against a real S3-compatible server ------------------------------------------------------

BUCKET = "minato-landing"


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def s3_resource(endpoint: str) -> S3Resource:
    return S3Resource(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_client(s3_endpoint: str):
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


def put(client, key: str, payload: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=payload)


@pytest.mark.s3
def test_s3_store_lists_and_reads_under_its_prefix(s3_endpoint: str, s3_client) -> None:
    put(s3_client, "exports/minato/search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV)
    put(s3_client, "exports/minato/search_console/pages_2026-01-02.csv", b"second")
    put(s3_client, "exports/minato/crm/contacts_2026-01-02.csv", CRM_CSV)
    put(s3_client, "exports/minato-old/search_console/pages_2025-12-31.csv", b"old prefix")
    put(s3_client, "search_console/pages_2026-01-09.csv", b"outside the prefix")
    store = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET, prefix="exports/minato/")

    listed = store.list_files("search_console/")

    assert sorted(f.key for f in listed) == [
        "search_console/pages_2026-01-01.csv",
        "search_console/pages_2026-01-02.csv",
    ]
    assert listed == sorted(listed)
    for landed in listed:
        head = s3_client.head_object(Bucket=BUCKET, Key=f"exports/minato/{landed.key}")
        assert landed.modified == head["LastModified"].timestamp()
    assert [f.key for f in store.list_files("crm/")] == ["crm/contacts_2026-01-02.csv"]
    assert store.list_files("nothing/") == []
    assert store.read_bytes("search_console/pages_2026-01-01.csv") == SEARCH_CONSOLE_CSV
    assert store.read_bytes("search_console/pages_2026-01-02.csv") == b"second"
    # A prefix written without the trailing slash means the same folder.
    same = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET, prefix="exports/minato")
    assert same.list_files("search_console/") == listed
    assert same.read_bytes("crm/contacts_2026-01-02.csv") == CRM_CSV


@pytest.mark.s3
def test_s3_store_without_prefix_uses_the_bucket_root(s3_endpoint: str, s3_client) -> None:
    put(s3_client, "search_console/pages_2026-01-09.csv", SEARCH_CONSOLE_CSV)
    put(s3_client, "exports/minato/search_console/pages_2026-01-01.csv", b"elsewhere")
    store = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET)

    assert [f.key for f in store.list_files("search_console/")] == [
        "search_console/pages_2026-01-09.csv"
    ]
    assert store.read_bytes("search_console/pages_2026-01-09.csv") == SEARCH_CONSOLE_CSV


@pytest.mark.s3
def test_s3_store_missing_key_is_file_not_found(s3_endpoint: str, s3_client) -> None:
    put(s3_client, "exports/minato/search_console/pages_2026-01-02.csv", SEARCH_CONSOLE_CSV)
    store = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET, prefix="exports/minato")

    # The same error as the local store, naming the missing object in full.
    with pytest.raises(FileNotFoundError) as raised:
        store.read_bytes("search_console/pages_2026-01-01.csv")
    assert str(raised.value) == (
        f"s3://{BUCKET}/exports/minato/search_console/pages_2026-01-01.csv"
    )

    at_root = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET)
    with pytest.raises(FileNotFoundError) as raised:
        at_root.read_bytes("search_console/pages_2026-01-02.csv")
    assert str(raised.value) == f"s3://{BUCKET}/search_console/pages_2026-01-02.csv"


@pytest.mark.s3
def test_s3_sensor_requests_each_object_once(s3_endpoint: str, s3_client) -> None:
    put(s3_client, "exports/minato/search_console/pages_2026-01-01.csv", SEARCH_CONSOLE_CSV)
    put(s3_client, "exports/minato/search_console/pages_2026-01-02.csv", SEARCH_CONSOLE_CSV)
    put(s3_client, "exports/minato/crm/contacts_2026-01-02.csv", CRM_CSV)
    put(s3_client, "search_console/pages_2026-01-05.csv", SEARCH_CONSOLE_CSV)  # not ours
    store = S3LandingStore(s3=s3_resource(s3_endpoint), bucket=BUCKET, prefix="exports/minato")

    first = evaluate(store, None)

    assert sorted(describe(r) for r in first.run_requests) == sorted(
        [
            search_console_request("2026-01-01"),
            search_console_request("2026-01-02"),
            crm_request("crm/contacts_2026-01-02.csv"),
        ]
    )
    assert evaluate(store, first.cursor).run_requests == []

    # LastModified has one-second resolution: this object most likely lands in the same second
    # as the others, and its name sorts before theirs. It is new all the same.
    put(s3_client, "exports/minato/search_console/pages_2025-12-31.csv", SEARCH_CONSOLE_CSV)
    third = evaluate(store, first.cursor)

    assert [describe(r) for r in third.run_requests] == [search_console_request("2025-12-31")]
    assert evaluate(store, third.cursor).run_requests == []


# --- loading landed files ------------------------------------------------------------------------

DAY = "2026-11-18"  # inside the seeded demo's history


def rewrite_clicks(path: Path, page: str, clicks: str) -> None:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for row in rows:
        if row["page"] == page:
            row["clicks"] = clicks
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def materialize_pages(
    minato_env, instance, partition_key: str, **kwargs
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [search_console_pages],
        resources={
            "landing": LocalLandingStore(root=str(minato_env.landing_dir)),
            "warehouse": DuckDBWarehouse(path=str(minato_env.duckdb_path)),
        },
        partition_key=partition_key,
        instance=instance,
        **kwargs,
    )


def test_search_console_file_with_bad_clicks_quarantines_that_row(
    minato_env, seeded_demo, instance: dg.DagsterInstance
) -> None:
    rewrite_clicks(minato_env.landing_dir / f"search_console/pages_{DAY}.csv", "/pricing", "12x")
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))

    for _ in range(2):  # re-running the day replaces it: no duplicates
        result = materialize_pages(minato_env, instance, DAY)
        assert result.success

    loaded = warehouse.query_arrow(
        "SELECT page, clicks, strftime(_business_day, '%Y-%m-%d') AS day, _source_table "
        "FROM lake.search_console_pages ORDER BY page"
    ).to_pylist()
    assert len(loaded) == 9
    assert "/pricing" not in {row["page"] for row in loaded}
    assert {(row["day"], row["_source_table"]) for row in loaded} == {
        (DAY, f"search_console/pages_{DAY}.csv")
    }
    quarantined = warehouse.query_arrow(
        "SELECT logical_table, strftime(_business_day, '%Y-%m-%d') AS day, _shard, "
        "_source_table, primary_key, column_name, reason FROM lake.quarantine"
    ).to_pylist()
    assert quarantined == [
        {
            "logical_table": "search_console_pages",
            "day": DAY,
            "_shard": None,
            "_source_table": f"search_console/pages_{DAY}.csv",
            "primary_key": f'["{DAY}", "/pricing"]',
            "column_name": "clicks",
            "reason": "not an integer: '12x'",
        }
    ]
    event = instance.get_latest_materialization_event(search_console_pages.key)
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["files"] == 1
    assert metadata["source_rows"] == 10
    assert metadata["loaded_rows"] == 9
    assert metadata["quarantined_rows"] == 1


def test_search_console_missing_file_fails_naming_it(
    minato_env, seeded_demo, instance: dg.DagsterInstance
) -> None:
    (minato_env.landing_dir / f"search_console/pages_{DAY}.csv").unlink()

    result = materialize_pages(minato_env, instance, DAY, raise_on_error=False)

    assert not result.success
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    assert (
        data.user_failure_data.description == f"search_console/pages_{DAY}.csv has not landed yet"
    )
    assert not DuckDBWarehouse(path=str(minato_env.duckdb_path)).table_exists(
        "lake", "search_console_pages"
    )


def test_sensor_requests_are_runnable(
    minato_env, seeded_demo, instance: dg.DagsterInstance
) -> None:
    """The sensor's partition key and run config are accepted by the assets it targets."""
    store = LocalLandingStore(root=str(minato_env.landing_dir))
    requests = evaluate(store, None).run_requests
    crm = [r for r in requests if r.asset_selection == [crm_contacts.key]]
    pages = [r for r in requests if r.partition_key == DAY]
    assert len(crm) == 1 and len(pages) == 1
    assert len(requests) == seeded_demo.days + 1
    resources = {
        "landing": store,
        "warehouse": DuckDBWarehouse(path=str(minato_env.duckdb_path)),
    }

    crm_result = dg.materialize(
        [crm_contacts], resources=resources, run_config=crm[0].run_config, instance=instance
    )
    pages_result = dg.materialize(
        [search_console_pages],
        resources=resources,
        partition_key=pages[0].partition_key,
        instance=instance,
    )

    assert crm_result.success and pages_result.success
    event = instance.get_latest_materialization_event(crm_contacts.key)
    source_file = event.asset_materialization.metadata["source_file"].value
    assert source_file == f"crm/contacts_{seeded_demo.last_day.isoformat()}.csv"
    assert event.asset_materialization.metadata["loaded_rows"].value == seeded_demo.crm_contacts
