"""The views a partner's listing publishes, with the privacy rules of its `sharing` section.

BigQuery: one view per shared mart model in `public_<id>_<name>_share`, carrying the
aggregation threshold and join restrictions as its `privacy_policy` (DDL: Terraform cannot set
it). A subscriber can then only run `SELECT WITH AGGREGATION_THRESHOLD …`, and every row it gets
aggregates at least k distinct privacy units.

DuckDB has no privacy policies, so the demo creates the configured aggregate views themselves,
each with the same rule written out: rows without a privacy unit are left out and a group is
kept only if it holds at least k distinct units.
"""

from __future__ import annotations

import json
import re

from assets.governance.partner_config import PartnerConfig, SharedView
from resources.identifiers import validate_identifier

# A project id, or a domain-scoped one (example.com:project): it is quoted into the DDL.
_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def privacy_policy(config: PartnerConfig) -> dict:
    assert config.sharing is not None
    privacy = config.sharing.privacy
    return {
        "aggregation_threshold_policy": {
            "threshold": privacy.threshold,
            "privacy_unit_column": privacy.privacy_unit,
        },
        # Joins only on the allowed columns, or none at all (JOIN_BLOCKED takes no columns).
        "join_restriction_policy": (
            {
                "join_condition": "JOIN_NOT_REQUIRED",
                "join_allowed_columns": list(privacy.join_allowed_columns),
            }
            if privacy.join_allowed_columns
            else {"join_condition": "JOIN_BLOCKED"}
        ),
    }


def bigquery_ddl(config: PartnerConfig, project: str, prefix: str = "") -> list[str]:
    """`CREATE OR REPLACE VIEW … OPTIONS (privacy_policy = …)` for each shared mart model."""
    if prefix:
        validate_identifier(prefix, what="dataset prefix")
    if not _PROJECT.fullmatch(project):
        raise ValueError(f"invalid project id {project!r}")
    policy = json.dumps(privacy_policy(config), sort_keys=True)
    statements = []
    for model in config.shared_models():
        view = model.removeprefix(f"{config.dataset}_")
        statements.append(
            f"CREATE OR REPLACE VIEW `{project}.{prefix}{config.share_dataset}.{view}`\n"
            f"OPTIONS (privacy_policy = '{policy}')\n"
            f"AS SELECT * FROM `{project}.{prefix}{config.dataset}.{model}`"
        )
    return statements


def _duckdb_view(config: PartnerConfig, view: SharedView) -> str:
    assert config.sharing is not None
    unit, k = config.sharing.privacy.privacy_unit, config.sharing.privacy.threshold
    columns = [*view.dimensions, *(m.sql() for m in view.measures)]
    group = f"\ngroup by {', '.join(view.dimensions)}" if view.dimensions else ""
    return (
        f"create or replace view {config.share_dataset}.{view.name} as\n"
        f"select {', '.join(columns)}\n"
        f"from {config.dataset}.{config.dataset}_{view.model}\n"
        f"where {unit} is not null{group}\n"
        f"having count(distinct {unit}) >= {k}"
    )


def withheld_sql(config: PartnerConfig, view: SharedView) -> str:
    """How many groups of `view` the threshold withholds (for the demo's summary)."""
    assert config.sharing is not None
    unit, k = config.sharing.privacy.privacy_unit, config.sharing.privacy.threshold
    group = f" group by {', '.join(view.dimensions)}" if view.dimensions else ""
    return (
        f"select count(*) as n from (select 1 from {config.dataset}.{config.dataset}_{view.model}"
        f" where {unit} is not null{group} having count(distinct {unit}) < {k})"
    )


def duckdb_ddl(config: PartnerConfig) -> list[str]:
    """The thresholded aggregate views of the demo (schema public_<id>_<name>_share)."""
    if config.sharing is None:
        return []
    return [f"create schema if not exists {config.share_dataset}"] + [
        _duckdb_view(config, view) for view in config.sharing.views
    ]
