"""What `minato env create` clones, read off hand-written manifests."""

import pytest

from pipelines.environments.layout import ChangeEnvironmentError
from pipelines.environments.selection import clone_set


def _node(uid: str, parents: list[str], materialized: str = "table") -> dict:
    kind = uid.split(".")[0]
    return {
        "unique_id": uid,
        "resource_type": kind,
        "config": {"materialized": materialized},
        "depends_on": {"nodes": parents},
    }


MANIFEST = {
    "nodes": {
        "model.p.base": _node("model.p.base", ["source.p.lake.events"]),
        "model.p.hidden": _node("model.p.hidden", ["model.p.base"], "ephemeral"),
        "model.p.fact": _node("model.p.fact", ["model.p.hidden"], "incremental"),
        "model.p.dim": _node("model.p.dim", ["source.p.lake.accounts"]),
        "model.p.mart": _node("model.p.mart", ["model.p.fact"]),
        "model.p.new": _node("model.p.new", ["model.p.base"], "incremental"),
        "model.p.other": _node("model.p.other", ["model.p.base"]),
        "test.p.relationships_mart_dim": _node(
            "test.p.relationships_mart_dim", ["model.p.mart", "model.p.dim"]
        ),
        "test.p.unique_other": _node("test.p.unique_other", ["model.p.other"]),
    },
    "sources": {"source.p.lake.events": {}, "source.p.lake.accounts": {}},
}
PRODUCTION = {
    "nodes": {uid: node for uid, node in MANIFEST["nodes"].items() if uid != "model.p.new"},
    "sources": MANIFEST["sources"],
}


def test_parents_through_ephemeral_models_tests_and_incremental_history() -> None:
    built = ["model.p.fact", "model.p.mart", "model.p.new"]
    assert clone_set(built, MANIFEST, PRODUCTION) == [
        "model.p.base",  # read by fact through the ephemeral model, and by the new model
        "model.p.dim",  # read by a relationships test on the mart
        "model.p.fact",  # incremental and in production: its history
    ]  # the new incremental model has no history; `other` and its test are not read


def test_a_parent_production_does_not_have_is_refused() -> None:
    production = {"nodes": {}, "sources": PRODUCTION["sources"]}
    with pytest.raises(ChangeEnvironmentError, match="parents not in production's manifest"):
        clone_set(["model.p.mart"], MANIFEST, production)
