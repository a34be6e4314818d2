"""The UI at scale: a code location of thousands of generated dbt models, served by a webserver
reading a separate code server (as a deployment runs them) with deploy/dagster.env's settings,
answers `assetNodes` with every model and one model's lineage; the generated staging models
belong to the warehouse stage. (At 10,000 such models the repository snapshot passes Dagster's
default 100 MB gRPC message cap: `make bench-load` measures that size, bench/README.md.)
"""

import json
import os
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from dagster_dbt import DbtProject

from assets.dbt_models import layers, specs_cache
from assets.dbt_models.project import dbt_cli
from devtools.dagster_ui import read_env_file, webserver_with_code_server
from resources.settings import REPO_ROOT
from tests.dbt_projects import copy_models, generated_project

COPIES = 500  # of each of the 2 cleansing models: 1,000 models, 1,000 sources, 4,000 tests
STAGING = {("staging", "stg_helpdesk__tickets"), ("staging", "stg_helpdesk__satisfaction")}
DAGSTER_ENV = REPO_ROOT / "deploy" / "dagster.env"
LOCATION = """
import dagster as dg
from dagster_dbt import DbtProject

from assets.dbt_models.layers import build_stages
from assets.dbt_models.project import dbt_cli

project = DbtProject(project_dir={project!r}, target="duckdb")
defs = dg.Definitions(assets=build_stages(project).assets, resources={{"dbt": dbt_cli(project)}})
"""


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("scale")
    env = {
        **os.environ,
        **read_env_file(DAGSTER_ENV),
        "PYTHONPATH": str(REPO_ROOT),
        "MINATO_WAREHOUSE": "duckdb",
        "MINATO_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    (work / "dagster_home").mkdir()
    project_dir = work / "project"
    manifest = generated_project(project_dir, env)
    copy_models(manifest, "cleansing", COPIES)
    (project_dir / "target" / "manifest.json").write_text(json.dumps(manifest))
    project = DbtProject(project_dir=project_dir, target="duckdb")
    # The build step (`minato manifest` does this for the repository's project).
    specs_cache.write_cached_specs(project, layers.translator(), layers.STAGE_SELECTS)
    location = work / "location.py"
    location.write_text(LOCATION.format(project=str(project_dir)))
    models = {
        (node["schema"], node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "snapshot")
    }
    stages = layers.build_stages(project)
    return {
        "work": work,
        "env": env,
        "project": project,
        "stages": stages,
        "location": location,
        "models": models,
    }


def test_every_model_belongs_to_one_stage_staging_included(scale: dict) -> None:
    stages = scale["stages"]
    keys = [tuple(spec.key.path) for assets in stages.assets for spec in assets.specs]
    assert len(keys) == len(set(keys))  # no model in two stages
    assert set(keys) == scale["models"]  # none left out
    warehouse = {tuple(spec.key.path) for assets in stages.warehouse for spec in assets.specs}
    assert warehouse >= STAGING
    assert len(stages.warehouse) > 1  # thousands of models: the stage is chunked


def test_webserver_with_code_server_serves_every_model(scale: dict) -> None:
    served = webserver_with_code_server(
        Path(sys.executable).parent, scale["location"], scale["env"], scale["work"] / "ui.log"
    )
    with served:
        _, nodes = served.wait_for_models(len(scale["models"]), timeout=600)
        served_models = {tuple(n["assetKey"]["path"]) for n in nodes if n["isMaterializable"]}
        assert served_models == scale["models"]
        _, tickets = served.lineage_s(["staging", "stg_helpdesk__tickets"])
    # The staging model reads its requested source's lake asset, as the form declared.
    assert tickets["dependencyKeys"] == [{"path": ["lake", "helpdesk_tickets"]}]
    assert tickets["dependedByKeys"] == []


def test_the_grpc_limits_hold_ten_thousand_models(scale: dict) -> None:
    """deploy/dagster.env raises both gRPC caps above what 10,000 models of this shape send."""
    defs = dg.Definitions(
        assets=scale["stages"].assets, resources={"dbt": dbt_cli(scale["project"])}
    )
    # What the code server sends the webserver (the job snapshots follow in their own calls).
    snapshot = serialize_value(
        RepositorySnap.from_def(defs.get_repository_def(), defer_snapshots=True)
    )
    per_model = len(snapshot.encode()) / len(scale["models"])
    print(f"repository snapshot: {per_model:.0f} bytes per model")
    limits = read_env_file(DAGSTER_ENV)
    for name in ("DAGSTER_GRPC_MAX_RX_BYTES", "DAGSTER_GRPC_MAX_SEND_BYTES"):
        assert int(limits[name]) > 10_000 * per_model, (name, per_model)
