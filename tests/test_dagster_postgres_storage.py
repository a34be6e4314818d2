"""Production Dagster runs on PostgreSQL storage (deploy/dagster.prod.yaml), configured only by
environment variables; proven against the local PostgreSQL server."""

import uuid

import dagster as dg
import psycopg
import pytest
import yaml

from resources.settings import REPO_ROOT
from tests.servers import require_server

pytestmark = pytest.mark.postgres

HOST, PORT = "127.0.0.1", 5432


@pytest.fixture
def dagster_database():
    require_server(HOST, PORT, "PostgreSQL")
    name = f"minato_dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        f"host={HOST} port={PORT} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(
            f"host={HOST} port={PORT} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_prod_instance_stores_runs_in_postgres(dagster_database, tmp_path, monkeypatch):
    for variable, value in {
        "DAGSTER_PG_HOST": HOST,
        "DAGSTER_PG_PORT": str(PORT),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": dagster_database,
    }.items():
        monkeypatch.setenv(variable, value)
    (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.prod.yaml").read_text())
    config = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert "postgres" in config["storage"]

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([probe], instance=instance)
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.is_success
        assert instance.get_latest_materialization_event(probe.key) is not None
