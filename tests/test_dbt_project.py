"""The dbt project's contracts: layering, PII isolation, and tests that block downstream."""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtProject

from assets.dbt_models.project import dbt_project, manifest_is_stale
from assets.partitions import partition_range_tags
from pipelines import demo
from pipelines.definitions import defs


def _manifest() -> dict:
    return json.loads(dbt_project().manifest_path.read_text())


def _ancestors(manifest: dict, unique_id: str) -> set[str]:
    seen, stack = set(), [unique_id]
    while stack:
        for parent in manifest["parent_map"].get(stack.pop(), []):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_nothing_outside_cleansing_secret_reads_it() -> None:
    manifest = _manifest()
    secret = {
        uid for uid, node in manifest["nodes"].items() if node.get("schema") == "cleansing_secret"
    }
    assert secret, "the project has cleansing_secret models"
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] in {"model", "snapshot"} and node["schema"] != "cleansing_secret":
            assert not _ancestors(manifest, uid) & secret, f"{uid} depends on cleansing_secret"


def test_marts_read_only_the_warehouse() -> None:
    """Marts never read the lake directly (the seed's rule: the lake is for the warehouse)."""
    manifest = _manifest()
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] == "model" and node["path"].startswith("marts/"):
            parents = manifest["parent_map"][uid]
            assert not [p for p in parents if p.startswith("source.")], uid


def test_fact_orders_is_incremental_with_partition_vars() -> None:
    node = _manifest()["nodes"]["model.minato.fact_orders"]
    assert node["config"]["materialized"] == "incremental"
    assert "min_date" in node["raw_code"] or "business_day_window" in node["raw_code"]


def test_failing_error_test_blocks_downstream(seeded_demo, minato_env, instance) -> None:
    day = seeded_demo.last_day
    first_shard, last_shard = "shard_01", "shard_04"
    for job_name, tags in (
        ("ingest_shards", partition_range_tags(f"{day}|{first_shard}", f"{day}|{last_shard}")),
        ("ingest_search_console", partition_range_tags(str(day), str(day))),
        ("ingest_crm_contacts", {}),
    ):
        assert demo._run_job(instance, job_name, tags).success
    # A duplicated CRM contact breaks cleansing_crm_contacts' unique test (severity error).
    with duckdb.connect(str(minato_env.duckdb_path)) as conn:
        conn.execute("INSERT INTO lake.crm_contacts SELECT * FROM lake.crm_contacts LIMIT 1")

    job = defs.resolve_job_def("warehouse_daily")
    result = job.execute_in_process(instance=instance, partition_key=str(day), raise_on_error=False)

    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "cleansing/cleansing_crm_contacts" in materialized  # built, then its test failed
    for downstream in (
        "fact/fact_orders",
        "service_crm/service_crm_contacts",
        "monitoring/anomalies",
        "sync/crm_contacts",
    ):
        assert downstream not in materialized
    failed_checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not e.asset_check_evaluation_data.passed
    ]
    assert sorted(c.check_name for c in failed_checks) == [
        "unique_cleansing_crm_contacts_contact_id",
        "unique_cleansing_secret_crm_contacts_contact_id",
    ]
    assert {c.severity for c in failed_checks} == {dg.AssetCheckSeverity.ERROR}


def test_dev_prepares_the_project_only_when_a_dbt_file_is_newer_than_the_manifest(
    tmp_path: Path,
) -> None:
    """Under `dagster dev` every process asks for the project: only a changed one is parsed."""
    folder = tmp_path / "dbt_project"
    shutil.copytree(
        dbt_project().project_dir, folder, ignore=shutil.ignore_patterns("target", "logs")
    )
    project = DbtProject(project_dir=folder)
    assert manifest_is_stale(project)  # never parsed
    manifest = Path(project.manifest_path)
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    assert not manifest_is_stale(project)
    later = manifest.stat().st_mtime + 5
    os.utime(folder / "macros" / "casting.sql", (later, later))
    assert manifest_is_stale(project)
