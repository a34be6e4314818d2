"""dbt projects of generated models for tests: the repository's settings and macros with the
generators' output, and (for tests at scale) thousands of models made in seconds.

`dbt parse` costs ~40 ms per model here (minutes for thousands), while Dagster reads only the
manifest. So the generators render a few real models (cleansing from the test metadata, staging
from the example source request form), dbt parses them, and the manifest's cleansing models are
then copied under new names, each copy with its own lake source and its own tests, as
`minato generate cleansing` would give for that many tables.
"""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.generate import cleansing, source_requests
from resources.settings import REPO_ROOT

METADATA = REPO_ROOT / "tests" / "fixtures" / "generate" / "metadata"
REQUEST_FORM = REPO_ROOT / "metadata" / "examples" / "request_helpdesk.csv"
LAKE_SOURCES = """version: 2
sources:
  - name: lake
    schema: lake
    tables: [{name: accounts}, {name: events}]
"""


def project_with(project: Path, files: dict[str, str]) -> None:
    """The repository's dbt settings, macros and generic tests, the test metadata's lake
    sources and `files` ({path in the project: text})."""
    (project / "models").mkdir(parents=True)
    for part in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO_ROOT / "dbt_project" / part, project / part)
    for part in ("macros", "tests/generic"):
        shutil.copytree(REPO_ROOT / "dbt_project" / part, project / part)
    (project / "models" / "lake.yml").write_text(LAKE_SOURCES)
    for relative, text in files.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(text)


def generated_project(project: Path, env: dict[str, str]) -> dict:
    """Generated cleansing and staging models in a project, parsed; returns the manifest."""
    project_with(
        project,
        {**cleansing.render(METADATA), **source_requests.render([REQUEST_FORM], REPO_ROOT)},
    )
    dbt = str(Path(sys.executable).with_name("dbt"))
    subprocess.run(
        [dbt, "parse", "--quiet", "--project-dir", str(project), "--profiles-dir", str(project)],
        env=env,
        cwd=project,
        check=True,
        capture_output=True,
    )
    return json.loads((project / "target" / "manifest.json").read_text())


def _renamed(node: dict, old: str, new: str) -> dict:
    """A copy of a manifest node with every occurrence of a name replaced in its identity."""
    node = copy.deepcopy(node)
    for field in (
        "unique_id",
        "name",
        "alias",
        "identifier",
        "path",
        "original_file_path",
        "relation_name",
    ):
        if isinstance(node.get(field), str):
            node[field] = node[field].replace(old, new)
    node["fqn"] = [part.replace(old, new) for part in node["fqn"]]
    return node


def copy_models(manifest: dict, schema: str, copies: int) -> list[str]:
    """Adds `copies` copies of every model of `schema` (with its source and tests), rebuilds the
    parent and child maps, and returns the new models' names."""
    nodes, sources = manifest["nodes"], manifest["sources"]
    originals = [
        node
        for node in nodes.values()
        if node["resource_type"] == "model" and node["schema"] == schema
    ]
    tests = [n for n in nodes.values() if n["resource_type"] == "test"]
    added = []
    for model in originals:
        [source_id] = model["depends_on"]["nodes"]
        source = sources[source_id]
        for i in range(copies):
            name = f"{model['name']}_{i:05d}"
            table = f"{source['name']}_{i:05d}"
            new_source = _renamed(source, source["name"], table)
            new_source["unique_id"] = f"{source_id}_{i:05d}"
            sources[new_source["unique_id"]] = new_source
            new_model = _renamed(model, model["name"], name)
            new_model["depends_on"]["nodes"] = [new_source["unique_id"]]
            new_model["sources"] = [[source["source_name"], table]]
            nodes[new_model["unique_id"]] = new_model
            for test in tests:
                if test.get("attached_node") == model["unique_id"]:
                    new_test = _renamed(test, model["name"], name)
                    new_test["attached_node"] = new_model["unique_id"]
                    new_test["depends_on"]["nodes"] = [new_model["unique_id"]]
                    nodes[new_test["unique_id"]] = new_test
            added.append(name)
    parents = {uid: list(node["depends_on"]["nodes"]) for uid, node in nodes.items()}
    children: dict[str, list[str]] = {uid: [] for uid in [*nodes, *sources]}
    for uid, ups in parents.items():
        for up in ups:
            children.setdefault(up, []).append(uid)
    manifest["parent_map"] = {**{uid: [] for uid in sources}, **parents}
    manifest["child_map"] = children
    return added
