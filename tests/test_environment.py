"""Resources chosen by environment variables, and the shards file loader."""

import socket
from pathlib import Path

import dagster as dg
import pytest

from assets.ingestion.shard_tables import shard_table_assets
from pipelines.resources_by_env import (
    ConfigurationError,
    build_crm_destination,
    build_landing,
    build_warehouse,
)
from resources.destinations import PostgresDestination, SQLiteDestination
from resources.landing import LocalLandingStore, S3LandingStore
from resources.shards import ShardConfigError, ShardSource, load_shard_specs
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse

ORDERS_ASSET = next(a for a in shard_table_assets() if a.key == dg.AssetKey(["lake", "orders"]))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test; no credential is available either."""

    def refuse(*args: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def resolved(resource: dg.ConfigurableResource):
    """The resource as a run sees it: `dg.EnvVar` fields read from the environment."""
    with dg.build_resources({"r": resource}) as resources:
        return resources.r


def test_embedded_defaults(minato_env) -> None:
    warehouse = resolved(build_warehouse())
    landing = resolved(build_landing())
    crm = resolved(build_crm_destination())

    assert isinstance(warehouse, DuckDBWarehouse)
    assert warehouse.path == str(minato_env.duckdb_path)
    assert isinstance(landing, LocalLandingStore)
    assert landing.root == str(minato_env.landing_dir)
    assert isinstance(crm, SQLiteDestination)
    assert crm.path == str(minato_env.crm_sqlite_path)


def test_production_resources_need_no_credential(
    minato_env, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    for name, value in {
        "MINATO_WAREHOUSE": "bigquery",
        "MINATO_BIGQUERY_PROJECT": "minato-prod",
        "MINATO_BIGQUERY_LOCATION": "US",
        "MINATO_BIGQUERY_DATASET_PREFIX": "prod_",
        "MINATO_BIGQUERY_MAX_BYTES_BILLED": "2000000000",
        "MINATO_LANDING": "s3",
        "MINATO_LANDING_S3_BUCKET": "minato-landing",
        "MINATO_LANDING_S3_PREFIX": "exports/minato",
        "MINATO_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "MINATO_CRM_DESTINATION": "postgres",
        "MINATO_CRM_POSTGRES_URL": "postgresql://crm:secret@db.internal:5432/crm",
    }.items():
        monkeypatch.setenv(name, value)

    warehouse = build_warehouse()
    landing = build_landing()
    crm = build_crm_destination()

    assert isinstance(warehouse, BigQueryWarehouse)
    assert isinstance(landing, S3LandingStore)
    assert isinstance(crm, PostgresDestination)
    # Values are read through dg.EnvVar: the UI shows the variable, run config has no secret.
    assert isinstance(warehouse.project, dg.EnvVar)
    assert isinstance(crm.url, dg.EnvVar)
    assert crm.url == "MINATO_CRM_POSTGRES_URL"

    warehouse, landing, crm = resolved(warehouse), resolved(landing), resolved(crm)
    assert (warehouse.project, warehouse.location, warehouse.dataset_prefix) == (
        "minato-prod",
        "US",
        "prod_",
    )
    assert warehouse.maximum_bytes_billed == 2_000_000_000
    assert warehouse.qualified("lake", "orders") == "`minato-prod.prod_lake.orders`"
    assert (landing.bucket, landing.prefix) == ("minato-landing", "exports/minato")
    assert landing.s3.endpoint_url == "http://127.0.0.1:9"
    assert crm.url == "postgresql://crm:secret@db.internal:5432/crm"


def test_bigquery_optional_settings_keep_their_defaults(
    minato_env, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("MINATO_WAREHOUSE", "bigquery")
    monkeypatch.setenv("MINATO_BIGQUERY_PROJECT", "minato-dev")
    monkeypatch.setenv("MINATO_ENV", "prod")  # dev's default prefix is per user
    for name in (
        "MINATO_BIGQUERY_LOCATION",
        "MINATO_BIGQUERY_DATASET_PREFIX",
        "MINATO_BIGQUERY_MAX_BYTES_BILLED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINATO_LANDING", "s3")
    monkeypatch.setenv("MINATO_LANDING_S3_BUCKET", "b")
    monkeypatch.delenv("MINATO_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("MINATO_LANDING_S3_PREFIX", raising=False)

    warehouse = resolved(build_warehouse())
    landing = resolved(build_landing())

    assert (warehouse.project, warehouse.location, warehouse.dataset_prefix) == (
        "minato-dev",
        "asia-northeast1",
        "",
    )
    assert warehouse.maximum_bytes_billed is None
    assert landing.prefix == ""
    assert landing.s3.endpoint_url is None  # the real AWS endpoint


@pytest.mark.parametrize(
    ("variable", "value", "build"),
    [
        ("MINATO_WAREHOUSE", "snowflake", build_warehouse),
        ("MINATO_WAREHOUSE", "BigQuery", build_warehouse),
        ("MINATO_LANDING", "gcs", build_landing),
        ("MINATO_CRM_DESTINATION", "mysql", build_crm_destination),
    ],
)
def test_unknown_choice_names_the_variable(
    minato_env, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, build
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as raised:
        build()

    assert str(raised.value).startswith(f"{variable}={value!r}: expected one of [")


@pytest.mark.parametrize(
    ("variable", "build", "choices"),
    [
        ("MINATO_WAREHOUSE", build_warehouse, "['bigquery', 'duckdb']"),
        ("MINATO_LANDING", build_landing, "['local', 's3']"),
        ("MINATO_CRM_DESTINATION", build_crm_destination, "['postgres', 'sqlite']"),
    ],
)
def test_unset_choice_names_the_variable(
    minato_env, monkeypatch: pytest.MonkeyPatch, variable: str, build, choices: str
) -> None:
    monkeypatch.delenv(variable, raising=False)

    with pytest.raises(ConfigurationError) as raised:
        build()

    assert str(raised.value) == f"{variable} is not set: expected one of {choices}"


# --- the shards file -----------------------------------------------------------------------------


def shards_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prod-shards.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_a_valid_file(tmp_path: Path) -> None:
    path = shards_file(
        tmp_path,
        "shards:\n"
        "  - name: shard_01\n    url: sqlite:///a.sqlite\n    timezone: Asia/Tokyo\n"
        "  - name: shard_02\n    url: mysql+pymysql://etl@10.0.0.2/ec\n    timezone: UTC\n",
    )

    specs = load_shard_specs(path)

    assert [(s.name, s.url_template, s.timezone) for s in specs] == [
        ("shard_01", "sqlite:///a.sqlite", "Asia/Tokyo"),
        ("shard_02", "mysql+pymysql://etl@10.0.0.2/ec", "UTC"),
    ]


def test_repository_shards_file_matches_the_demo(minato_env) -> None:
    from pipelines.demo_data import SHARD_TIMEZONES
    from resources.settings import REPO_ROOT

    specs = load_shard_specs(REPO_ROOT / "shards.yaml")

    assert {s.name: s.timezone for s in specs} == SHARD_TIMEZONES
    assert specs[0].url() == f"sqlite:///{minato_env.data_dir}/shards/shard_01.sqlite"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "shards:\n  - name: shard_01\n    timezone: UTC\n",
            "shard 'shard_01': key 'url': missing",
        ),
        (
            "shards:\n  - name: shard_01\n    url: sqlite:///a\n    timezone: UTC\n"
            "  - timezone: UTC\n",
            "shard #2: key 'name': missing",
        ),
        (
            "shards:\n  - name: shard_01\n    url: sqlite:///a.sqlite\n    timezone: Asia/Tokio\n",
            "shard 'shard_01': key 'timezone': no time zone named 'Asia/Tokio'",
        ),
        (
            "shards:\n  - name: shard_01\n    url: sqlite:///a.sqlite\n    timezone: 9\n",
            "shard 'shard_01': key 'timezone': ",
        ),
        (
            "shards:\n  - name: shard-01\n    url: sqlite:///a.sqlite\n    timezone: UTC\n",
            "shard 'shard-01': key 'name': invalid shard name 'shard-01'",
        ),
        (
            "shards:\n  - name: shard_01\n    url: sqlite:///a\n    timezone: UTC\n"
            "  - name: shard_01\n    url: sqlite:///b\n    timezone: Asia/Tokyo\n",
            "prod-shards.yaml:5: shard 'shard_01': key 'name': shard defined twice "
            "(first on line 2)",
        ),
        ("shards: []\n", "key 'shards': expected a non-empty list"),
        ("", "key 'shards': expected a non-empty list"),
        (
            "shards:\n  - name: shard_01\n    url: sqlite:///a\n    timezon: UTC\n",
            "prod-shards.yaml:4: shard 'shard_01': key 'timezon': unknown key; "
            "allowed: name, url, timezone",
        ),
        (
            "shard:\n  - name: shard_01\n",
            "prod-shards.yaml:1: key 'shard': unknown key; allowed: shards",
        ),
        ("shards:\n  - shard_01\n", "shard #1: expected a mapping"),
    ],
)
def test_bad_files_are_reported_with_the_file_name(tmp_path: Path, text: str, message: str) -> None:
    path = shards_file(tmp_path, text)

    with pytest.raises(ShardConfigError) as raised:
        load_shard_specs(path)

    assert str(raised.value).startswith(f"{path}:")
    assert message in str(raised.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ShardConfigError, match=r"nope\.yaml: file not found"):
        load_shard_specs(tmp_path / "nope.yaml")


def test_environment_references_resolve_only_when_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MINATO_TEST_SHARD_PASSWORD", raising=False)
    path = shards_file(
        tmp_path,
        "shards:\n  - name: shard_02\n"
        "    url: mysql+pymysql://etl:${MINATO_TEST_SHARD_PASSWORD}@10.0.0.2:3306/ec\n"
        "    timezone: UTC\n",
    )

    [spec] = load_shard_specs(path)  # no error: nothing is resolved yet

    assert spec.url_template == "mysql+pymysql://etl:${MINATO_TEST_SHARD_PASSWORD}@10.0.0.2:3306/ec"
    with pytest.raises(ShardConfigError) as raised:
        spec.url()
    assert str(raised.value) == (
        "shard shard_02: environment variable MINATO_TEST_SHARD_PASSWORD is not set"
    )

    monkeypatch.setenv("MINATO_TEST_SHARD_PASSWORD", "s3cr$t")
    assert spec.url() == "mysql+pymysql://etl:s3cr$t@10.0.0.2:3306/ec"
    # Only ${NAME} is a reference: a bare $ in a password stays as it is.
    assert load_shard_specs(path)[0].url() == "mysql+pymysql://etl:s3cr$t@10.0.0.2:3306/ec"


def _failed_description(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [failure] = result.get_step_failure_events()
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None, failure.step_failure_data.error
    return user_failure.description


def _ingest_shard_02(path: Path, minato_env, instance: dg.DagsterInstance):
    return dg.materialize(
        [ORDERS_ASSET],
        resources={
            "shards": ShardSource(shards_file=str(path)),
            "warehouse": DuckDBWarehouse(path=str(minato_env.duckdb_path)),
        },
        partition_key="2026-01-02|shard_02",
        instance=instance,
        raise_on_error=False,
    )


def test_ingestion_fails_at_once_when_a_shard_variable_is_unset(
    minato_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
) -> None:
    monkeypatch.delenv("MINATO_TEST_SHARD_DIR", raising=False)
    path = shards_file(
        tmp_path,
        "shards:\n  - name: shard_02\n"
        "    url: sqlite:///${MINATO_TEST_SHARD_DIR}/shard_02.sqlite\n    timezone: UTC\n",
    )

    result = _ingest_shard_02(path, minato_env, instance)

    assert _failed_description(result) == (
        "shard shard_02 (sqlite:///${MINATO_TEST_SHARD_DIR}/shard_02.sqlite): "
        "environment variable MINATO_TEST_SHARD_DIR is not set"
    )
    # Configuration errors are not retried (the retry policy would otherwise run it 4 times).
    assert len(result.get_step_failure_events()) == 1
    assert not [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]


def test_ingestion_does_not_create_a_missing_sqlite_shard(
    minato_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
) -> None:
    monkeypatch.setenv("MINATO_TEST_SHARD_DIR", str(tmp_path / "no-such-folder"))
    path = shards_file(
        tmp_path,
        "shards:\n  - name: shard_02\n"
        "    url: sqlite:///${MINATO_TEST_SHARD_DIR}/shard_02.sqlite\n    timezone: UTC\n",
    )

    result = _ingest_shard_02(path, minato_env, instance)

    assert _failed_description(result) == (
        "shard shard_02 (sqlite:///${MINATO_TEST_SHARD_DIR}/shard_02.sqlite): the SQLite file "
        "does not exist or cannot be read: check the path in the URL (unable to open database "
        "file)"
    )
    assert not (tmp_path / "no-such-folder").exists()
