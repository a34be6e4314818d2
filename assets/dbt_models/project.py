"""The dbt project as Dagster sees it: paths, target, and a manifest prepared before load."""

import os

from dagster_dbt import DbtProject

from resources.environment import REPO_ROOT, apply_embedded_defaults

apply_embedded_defaults()

minato_dbt_project = DbtProject(
    project_dir=REPO_ROOT / "dbt_project",
    # The dbt target has the warehouse kind's name (`duckdb` | `bigquery`).
    target=os.environ["MINATO_WAREHOUSE"],
)
# `dagster dev` re-parses on every reload; elsewhere the manifest is built once (`make manifest`,
# or here on first import of a fresh checkout) and never at each run.
minato_dbt_project.prepare_if_dev()
if not minato_dbt_project.manifest_path.exists():
    minato_dbt_project.preparer.prepare(minato_dbt_project)
