"""How dbt nodes become Dagster assets: keys and groups follow warehouse schemas."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject


class MinatoDbtTranslator(DagsterDbtTranslator):
    """`cleansing/cleansing_orders`, group `cleansing`: the UI mirrors the warehouse layout.

    Sources keep the key from `meta.dagster.asset_key` (the ingestion assets), so the graph is
    continuous from shards to marts. Models carry the warehouse they are built in as a kind.
    """

    def __init__(self, warehouse_kind: str) -> None:
        super().__init__()
        self.warehouse_kind = warehouse_kind

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        # The base class calls this for every dependency again: memoise like it does.
        memo = self.__dict__.setdefault("_minato_specs", {})
        memo_key = (id(manifest), unique_id)
        if memo_key in memo:
            return memo[memo_key]
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in {"model", "snapshot"}:
            layer = props["config"].get("schema") or props["schema"]
            spec = spec.replace_attributes(
                key=dg.AssetKey([layer, props["name"]]), group_name=layer
            ).merge_attributes(kinds={self.warehouse_kind}, tags={"minato/layer": layer})
        memo[memo_key] = spec
        return spec

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        # Generic tests have no description of their own: say what they test, and what a
        # failure does, in the UI's checks tab.
        return spec._replace(description=dbt_test_description(manifest["nodes"][unique_id]))


def dbt_test_description(node: Mapping[str, Any]) -> str:
    test = node.get("test_metadata") or {}
    kwargs = test.get("kwargs") or {}
    if test:
        what = f"dbt test {test['name']}"
        columns = kwargs.get("column_name") or kwargs.get("combination_of_columns")
        if columns:
            what += f" on {', '.join(columns) if isinstance(columns, list) else columns}"
        if "values" in kwargs:
            what += f" (values {', '.join(map(str, kwargs['values']))})"
    else:
        what = f"dbt singular test {node['name']} ({node.get('original_file_path', '')})"
    severity = str((node.get("config") or {}).get("severity", "error")).lower()
    effect = (
        "a failure stops the step, so nothing downstream runs on bad data"
        if severity == "error"
        else "a failure is reported as a warning"
    )
    return f"{what}; {effect}."
