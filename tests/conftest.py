"""Shared fixtures: an isolated embedded environment per test (its own data folder, DuckDB file,
landing folder and CRM database) and a small deterministic demo dataset."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from pipelines import demo_data
from resources.settings import REPO_ROOT
from tests.bigquery_emulator import bigquery_emulator  # noqa: F401  (a session fixture)


@dataclass(frozen=True)
class MinatoEnv:
    data_dir: Path
    duckdb_path: Path
    landing_dir: Path
    crm_sqlite_path: Path

    def shard_url(self, shard: str) -> str:
        return f"sqlite:///{self.data_dir}/shards/{shard}.sqlite"


@pytest.fixture
def minato_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MinatoEnv:
    """Point every embedded-default resource at a fresh temporary folder."""
    env = MinatoEnv(
        data_dir=tmp_path / "data",
        duckdb_path=tmp_path / "data" / "warehouse.duckdb",
        landing_dir=tmp_path / "data" / "landing",
        crm_sqlite_path=tmp_path / "data" / "crm.sqlite",
    )
    (env.data_dir / "shards").mkdir(parents=True)
    for name, value in {
        "MINATO_DATA_DIR": env.data_dir,
        "MINATO_DUCKDB_PATH": env.duckdb_path,
        "MINATO_LANDING_DIR": env.landing_dir,
        "MINATO_CRM_SQLITE_PATH": env.crm_sqlite_path,
        "MINATO_SHARDS_FILE": REPO_ROOT / "shards.yaml",
        "MINATO_WAREHOUSE": "duckdb",
        "MINATO_LANDING": "local",
        "MINATO_CRM_DESTINATION": "sqlite",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    return env


# Small but complete: every shard, the injected anomalies, enough history for the models.
SMALL_DEMO = demo_data.DemoConfig(
    seed=7,
    end_date=dt.date(2026, 11, 20),
    days=42,
    clients_per_shard=10,
    customers=300,
    crm_contacts=150,
)


@pytest.fixture
def seeded_demo(minato_env: MinatoEnv) -> demo_data.DemoConfig:
    urls = {shard: minato_env.shard_url(shard) for shard in demo_data.SHARD_TIMEZONES}
    demo_data.seed(SMALL_DEMO, urls, minato_env.landing_dir)
    return SMALL_DEMO


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance
