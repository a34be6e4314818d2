"""Production Dagster runs on PostgreSQL storage (deploy/dagster.prod.yaml), configured only by
environment variables; proven against the local PostgreSQL server."""

import dagster as dg
import pytest
import yaml

from resources.settings import REPO_ROOT
from tests.servers import dagster_postgres_env, postgres_database

pytestmark = pytest.mark.postgres

HOST, PORT = "127.0.0.1", 5432


@pytest.fixture
def dagster_database():
    with postgres_database("minato_dagster", HOST, PORT) as name:
        yield name


def test_prod_instance_stores_runs_in_postgres(dagster_database, tmp_path, monkeypatch):
    for variable, value in dagster_postgres_env(dagster_database, HOST, PORT).items():
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
