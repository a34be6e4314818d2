"""What a change environment clones: the parents of what it builds, and the incremental models
it builds, so that their next run is incremental on production's history.

A parent outside `state:modified+` is cloned, not deferred to, so the environment's data is
its own (the diff reads it, and production may move on meanwhile). An incremental model or
snapshot that is rebuilt is cloned first: dbt then runs it incrementally, and it holds
production's history plus the new batch instead of only the new batch (dbt-core#11535).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.environments.layout import ChangeEnvironmentError
from resources.identifiers import validate_identifier

_HISTORY = {"incremental", "snapshot"}


@dataclass(frozen=True, order=True)
class Relation:
    database: str
    schema: str
    name: str

    def __post_init__(self) -> None:
        for part, what in ((self.schema, "schema"), (self.name, "table")):
            validate_identifier(part, what=what)


def relation(node: dict) -> Relation:
    """A model's, seed's, snapshot's or source's table, as the manifest names it."""
    name = node.get("alias") or node.get("identifier") or node["name"]
    return Relation(node["database"], node["schema"], name)


def _node(manifest: dict, unique_id: str) -> dict | None:
    return manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id)


def _materialized(node: dict) -> str:
    if node["resource_type"] == "snapshot":
        return "snapshot"
    return node.get("config", {}).get("materialized", "")


def clone_set(built: list[str], manifest: dict, production: dict) -> list[str]:
    """Unique ids to copy from production before `build`, sorted."""
    built_set = set(built)
    clones: set[str] = set()
    # `dbt build` also runs every test that reads a built node (eager indirect selection), and
    # a relationships test reads a second model: its parents are read too.
    readers = [*built] + [
        uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test" and built_set & set(node["depends_on"]["nodes"])
    ]
    pending = [p for uid in readers for p in manifest["nodes"][uid]["depends_on"]["nodes"]]
    while pending:
        uid = pending.pop()
        node = _node(manifest, uid)
        if uid in built_set or uid in clones or node is None:
            continue
        if _materialized(node) == "ephemeral":  # no table: its parents are read instead
            pending.extend(node["depends_on"]["nodes"])
            continue
        clones.add(uid)
    for uid in built:
        if _materialized(manifest["nodes"][uid]) in _HISTORY and _node(production, uid):
            clones.add(uid)
    missing = sorted(uid for uid in clones if _node(production, uid) is None)
    if missing:
        raise ChangeEnvironmentError(f"parents not in production's manifest: {', '.join(missing)}")
    return sorted(clones)
