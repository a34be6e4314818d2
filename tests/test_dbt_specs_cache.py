"""Cached dbt specs (assets/dbt_models/specs_cache.py) give exactly what @dbt_assets gives."""

from pathlib import Path

import dagster as dg
from dagster_dbt import dbt_assets

from assets.dbt_models import layers, specs_cache
from assets.dbt_models.project import dbt_project


def _summary(assets: dg.AssetsDefinition) -> tuple:
    specs = sorted(
        (
            spec.key,
            tuple(sorted(dep.asset_key.to_user_string() for dep in spec.deps)),
            spec.group_name,
            spec.description,
            tuple(sorted(spec.kinds)),
            tuple(sorted(spec.tags.items())),
            tuple(sorted(spec.metadata)),
            spec.code_version,
        )
        for spec in assets.specs
    )
    checks = sorted((c.key, c.description, c.blocking) for c in assets.check_specs)
    return specs, checks, dict(assets.op.tags), assets.partitions_def


def test_cached_stages_equal_dbt_assets(tmp_path: Path) -> None:
    built = layers.dbt_stages()
    for stages, select in (
        (built.warehouse, built.warehouse[0].op.tags["dagster_dbt/select"]),
        (built.fact, "path:models/warehouse/fact"),
        (built.marts, "path:models/marts"),
    ):
        [stage] = stages  # small stages are one multi-asset, like @dbt_assets

        @dbt_assets(
            manifest=dbt_project().manifest_path,
            select=select,
            dagster_dbt_translator=layers.translator(),
            project=dbt_project(),
            name=stage.op.name,
            partitions_def=stage.partitions_def,
        )
        def plain(): ...

        assert _summary(stage) == _summary(plain)


def test_cache_is_used_and_follows_the_manifest(tmp_path: Path, monkeypatch) -> None:
    cache = Path(dbt_project().manifest_path).with_name(specs_cache.CACHE_FILE)
    select = "path:models/marts"
    specs_cache.write_cached_specs(dbt_project(), layers.translator(), layers.STAGE_SELECTS)
    assert cache.exists()
    calls = []
    monkeypatch.setattr(specs_cache, "build_dbt_specs", lambda **kw: calls.append(kw) or ([], []))
    [(_, specs, _)] = specs_cache.cached_specs(dbt_project(), layers.translator(), select)
    assert specs and not calls  # from the cache
    # The manifest wrapper reads the manifest only when a run asks for it.
    manifest = specs[0].metadata["dagster_dbt/manifest"].manifest
    assert isinstance(manifest, specs_cache.LazyManifest) and not manifest.loaded
    assert "model.minato.widetable_orders" in manifest["nodes"]
    assert manifest.loaded and len(dict(manifest)) == len(manifest) > 3
    # A manifest with another key (a re-parse) is translated again.
    monkeypatch.setattr(specs_cache, "_manifest_key", lambda *a: "another manifest")
    assert specs_cache.cached_specs(dbt_project(), layers.translator(), select) == [
        (select, [], [])
    ]
    assert calls


def test_large_stages_are_chunked_in_dependency_order(monkeypatch) -> None:
    """Chunks of at most CHUNK_MODELS models, each selecting its own models by fqn; the
    definitions still load (chunks depend on earlier chunks only: no op cycles)."""
    monkeypatch.setattr(specs_cache, "CHUNK_MODELS", 2)
    monkeypatch.setattr(specs_cache, "_manifest_key", lambda *a: "chunked")
    marts = specs_cache.minato_dbt_assets(
        project=dbt_project(),
        translator=layers.translator(),
        select="path:models/marts",
        name="marts",
    )(lambda: None)
    whole = layers.dbt_stages().marts[0]
    assert len(marts) > 1 and all(len(m.keys) <= 2 for m in marts)
    assert set().union(*(m.keys for m in marts)) == set(whole.keys)
    assert {c.key for m in marts for c in m.check_specs} == {c.key for c in whole.check_specs}
    seen: set = set()
    for chunk in marts:
        selection = chunk.op.tags["dagster_dbt/select"].split()
        assert len(selection) == len(chunk.keys) and all(s.startswith("fqn:") for s in selection)
        inside = {dep.asset_key for spec in chunk.specs for dep in spec.deps} & set(whole.keys)
        assert inside <= seen | set(chunk.keys)  # upstream models come in earlier chunks
        seen |= set(chunk.keys)
    dg.Definitions.validate_loadable(dg.Definitions(assets=marts))
