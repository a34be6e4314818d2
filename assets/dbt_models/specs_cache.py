"""dbt assets from specs translated once per manifest, so the code location loads fast.

`@dbt_assets` reads the whole manifest JSON and translates every node on every load of the
code location (each `dagster dev` reload, each run worker, each `definitions validate`): at
10,000 generated models that is most of the load time. Here the specs a stage gets from
`MinatoDbtTranslator` are pickled next to the manifest (`target/minato_specs.pickle`,
written by `minato manifest`, or under `dagster dev` when the project is prepared) and unpickled
on every load; the manifest itself is read only when a run needs it (`LazyManifest`). The cache
is keyed by the manifest file (size, mtime), the dagster/dagster-dbt versions, the translator's
source and settings, and the stage's selection: anything else is a cache miss, translated in
memory for that load (loading never writes the cache).

The pickle is written by this code into the project's own target folder and trusted like the
code itself; it is never read from anywhere else.

The result is the `multi_asset` that `@dbt_assets` builds, with the same specs, check specs
and op tags (tests/test_dbt_specs_cache.py compares them), so `DbtCliResource.cli` runs and
subsets it as usual.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import io
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject
from dagster_dbt.asset_utils import DAGSTER_DBT_SELECT_METADATA_KEY, build_dbt_specs
from dagster_dbt.dagster_dbt_translator import DbtManifestWrapper
from dagster_dbt.dbt_manifest import read_manifest_path

from assets.gc_pause import collector_paused

CACHE_FILE = "minato_specs.pickle"
_FORMAT = 3
# Dagster links a multi-asset's inputs to its checks pairwise when it builds the asset job
# (build_node_deps): one multi-asset of N models with their own sources costs O(N^2). Stages
# larger than this are split; each chunk is one op, one `dbt build` of its models.
CHUNK_MODELS = 200


class LazyManifest(dict):
    """The manifest JSON, read on first access: runs need it, loading the definitions does not.

    A dict (dagster-dbt checks for one), empty until any read method is called; then it holds
    the parsed manifest and behaves as that plain dict.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.loaded = False

    def load(self) -> LazyManifest:
        if not self.loaded:
            self.loaded = True
            dict.update(self, read_manifest_path(self.path))
        return self

    # Every read goes through load() first.
    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self.load(), key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self.load(), key)

    def __iter__(self) -> Iterator[Any]:
        return dict.__iter__(self.load())

    def __len__(self) -> int:
        return dict.__len__(self.load())

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self.load(), other)

    __hash__ = None  # type: ignore[assignment]  # a dict, and mutable

    def __repr__(self) -> str:
        return dict.__repr__(self.load())

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self.load(), key, default)

    def keys(self) -> Any:
        return dict.keys(self.load())

    def items(self) -> Any:
        return dict.items(self.load())

    def values(self) -> Any:
        return dict.values(self.load())

    def copy(self) -> dict:
        return dict.copy(self.load())


def _manifest_key(manifest_path: Path, translator: DagsterDbtTranslator) -> str:
    """Identifies one translation of one manifest: file, library versions, translator code and
    settings (e.g. the warehouse kind its asset kinds name)."""
    stat = manifest_path.stat()
    source = inspect.getsourcefile(type(translator))
    parts = [
        str(_FORMAT),
        str(manifest_path.resolve()),
        f"{stat.st_size}:{stat.st_mtime_ns}",
        importlib.metadata.version("dagster"),
        importlib.metadata.version("dagster-dbt"),
        type(translator).__qualname__,
        str(getattr(translator, "warehouse_kind", "")),
        hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else "",
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _asset_dep(key: dg.AssetKey, partition_mapping: Any, metadata: Any) -> dg.AssetDep:
    return dg.AssetDep(key, partition_mapping=partition_mapping, metadata=metadata)


class _Pickler(pickle.Pickler):
    """Specs carry the manifest, translator and project objects: stored as references."""

    def reducer_override(self, obj: Any) -> Any:
        # AssetDep's keyword-only constructor cannot be called the way pickle calls a
        # NamedTuple (positionally); rebuild it from its fields.
        if isinstance(obj, dg.AssetDep):
            return _asset_dep, (obj.asset_key, obj.partition_mapping, obj.metadata)
        return NotImplemented

    def persistent_id(self, obj: Any) -> str | None:
        if isinstance(obj, DbtManifestWrapper):
            return "manifest"
        if isinstance(obj, DagsterDbtTranslator):
            return "translator"
        if isinstance(obj, DbtProject):
            return "project"
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, references: dict[str, Any]) -> None:
        super().__init__(io.BytesIO(data))
        self.references = references

    def persistent_load(self, pid: str) -> Any:
        return self.references[pid]


def _read_cache(path: Path) -> dict[str, dict[str, bytes]]:
    try:
        with path.open("rb") as f:
            cache = pickle.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return {}


def _write_cache(path: Path, cache: dict[str, dict[str, bytes]]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(cache, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


Chunk = tuple[str, list[dg.AssetSpec], list[dg.AssetCheckSpec]]  # (dbt selection, specs, checks)


def _chunks(
    manifest: dict, select: str, specs: list[dg.AssetSpec], checks: list[dg.AssetCheckSpec]
) -> list[Chunk]:
    """The stage split into runs of at most CHUNK_MODELS models, in dependency order (so the
    chunks depend on earlier chunks only), each selected in dbt by its models' fqns."""
    if len(specs) <= CHUNK_MODELS:
        return [(select, specs, checks)]
    by_id = {spec.metadata["dagster_dbt/unique_id"]: spec for spec in specs}
    parents = {uid: set(manifest["parent_map"].get(uid, ())) & by_id.keys() for uid in by_id}
    order: list[str] = []
    ready = sorted(uid for uid, ups in parents.items() if not ups)
    children: dict[str, list[str]] = {}
    for uid, ups in parents.items():
        for up in ups:
            children.setdefault(up, []).append(uid)
    while ready:  # Kahn's algorithm; ties by unique id, so chunks are stable
        uid = ready.pop(0)
        order.append(uid)
        for child in sorted(children.get(uid, ())):
            parents[child].discard(uid)
            if not parents[child]:
                ready.append(child)
    checks_by_key: dict[dg.AssetKey, list[dg.AssetCheckSpec]] = {}
    for check in checks:
        checks_by_key.setdefault(check.asset_key, []).append(check)
    chunks = []
    for start in range(0, len(order), CHUNK_MODELS):
        ids = order[start : start + CHUNK_MODELS]
        nodes = manifest["nodes"]
        selection = " ".join("fqn:" + ".".join(nodes[uid]["fqn"]) for uid in ids)
        chunk_specs = [by_id[uid] for uid in ids]
        chunk_checks = [c for spec in chunk_specs for c in checks_by_key.get(spec.key, ())]
        chunks.append((selection, chunk_specs, chunk_checks))
    return chunks


def _translate(
    project: DbtProject, translator: DagsterDbtTranslator, select: str, manifest: LazyManifest
) -> bytes:
    """The stage's chunks, translated from the manifest now, pickled."""
    specs, check_specs = build_dbt_specs(
        translator=translator,
        manifest=manifest.load(),
        select=select,
        exclude="",
        selector="",
        io_manager_key=None,
        project=project,
    )
    chunks = _chunks(manifest, select, list(specs), list(check_specs))
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(chunks)
    return buffer.getvalue()


def _references(
    project: DbtProject, translator: DagsterDbtTranslator, manifest: LazyManifest
) -> dict[str, Any]:
    return {
        "manifest": DbtManifestWrapper(manifest=manifest),
        "translator": translator,
        "project": project,
    }


def write_cached_specs(
    project: DbtProject, translator: DagsterDbtTranslator, selects: list[str]
) -> Path:
    """Translate every stage's specs and store them beside the manifest (a build step:
    `minato manifest`, or `dagster dev` preparing the project)."""
    manifest_path = Path(project.manifest_path)
    manifest = LazyManifest(manifest_path)
    with collector_paused():
        entry = {select: _translate(project, translator, select, manifest) for select in selects}
    cache_path = manifest_path.with_name(CACHE_FILE)
    # {manifest key: {selection: pickled chunks}}; only the current manifest's entry is kept.
    _write_cache(cache_path, {_manifest_key(manifest_path, translator): entry})
    return cache_path


def cached_specs(project: DbtProject, translator: DagsterDbtTranslator, select: str) -> list[Chunk]:
    """The stage's chunks, from the cache when it matches the manifest, else translated now
    (in memory only: loading the code location writes no file)."""
    manifest_path = Path(project.manifest_path)
    manifest = LazyManifest(manifest_path)
    references = _references(project, translator, manifest)
    cache = _read_cache(manifest_path.with_name(CACHE_FILE))
    pickled = cache.get(_manifest_key(manifest_path, translator), {}).get(select)
    if pickled is not None:
        try:
            return _Unpickler(pickled, references).load()
        except Exception:  # a cache that cannot be read is a cache miss
            pass
    # Unpickled even when fresh: the specs just built reference the parsed manifest dict,
    # and later runs get the lazy one.
    return _Unpickler(_translate(project, translator, select, manifest), references).load()


def minato_dbt_assets(
    *,
    project: DbtProject,
    translator: DagsterDbtTranslator,
    select: str,
    name: str,
    partitions_def: dg.PartitionsDefinition | None = None,
    backfill_policy: dg.BackfillPolicy | None = None,
    pool: str | None = None,
) -> Callable[[Callable[..., Any]], list[dg.AssetsDefinition]]:
    """`@dbt_assets(manifest=..., select=..., ...)` over cached specs (see the module doc):
    one multi-asset per chunk of at most CHUNK_MODELS models (`<name>`, or `<name>_1`, ...)."""

    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and not backfill_policy:
        backfill_policy = dg.BackfillPolicy.single_run()  # as @dbt_assets does

    def decorator(fn: Callable[..., Any]) -> list[dg.AssetsDefinition]:
        with collector_paused():
            chunks = cached_specs(project, translator, select)
            return [
                dg.multi_asset(
                    name=name if len(chunks) == 1 else f"{name}_{i}",
                    specs=specs,
                    check_specs=check_specs,
                    can_subset=True,
                    partitions_def=partitions_def,
                    op_tags={DAGSTER_DBT_SELECT_METADATA_KEY: selection},
                    backfill_policy=backfill_policy,
                    pool=pool,
                    allow_arbitrary_check_specs=True,
                )(fn)
                for i, (selection, specs, check_specs) in enumerate(chunks, 1)
            ]

    return decorator
