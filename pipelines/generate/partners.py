"""`minato generate partner --company <id>`: a partner company's own data mart.

A partner sends the tables and columns it wants; we keep them as
`metadata/partners/<id>/request.csv` (version, model, column) next to the company's
`config.yml` (company_id, name, description, filter_column). The generator writes one model per
requested version and table, `public_<id>_<name>_<table>_<version>` in schema (dataset)
`public_<id>_<name>`, that reads a `cleansing` model and keeps only

- the company's rows (`where <filter_column> = <company_id>`), and
- the requested columns, none of them PII (hashed keys are PII too).

`cleansing_secret` can never be requested. Versions are separate models with suffixed names
(`..._orders_v1`, `..._orders_v2`), so v1 stays as it is while the partner moves to v2 at its
own pace, each version is its own relation and Dagster asset, and retiring v1 is deleting its
rows from the request. (dbt's model versions would name the relations the same way but give
both versions one model name, which collides with the `[schema, name]` asset keys.)
"""

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.generate.cleansing import Column, Model, build_models
from pipelines.generate.csvfiles import Problems, read_csv
from pipelines.generate.render import header, template
from resources.identifiers import InvalidIdentifierError, validate_identifier

COMMAND = "partner"
OUTPUT_ROOT = "models/marts/public"
_VERSION = re.compile(r"^v[1-9][0-9]*$")


@dataclass
class PartnerModel:
    name: str
    schema: str
    version: str
    base: Model
    columns: list[Column]
    company_id: int
    company: str
    filter_column: str


def _config(path: Path, display: str, problems: Problems) -> dict:
    """The company config with each value's position, for errors."""
    if not path.exists():
        problems.add(f"{display}:1:1", "file not found")
        return {}
    node = yaml.compose(path.read_text(encoding="utf-8"))
    if not isinstance(node, yaml.MappingNode):
        problems.add(f"{display}:1:1", "expected a mapping (company_id, name, ...)")
        return {}
    config = {}
    for key, value in node.value:
        where = f"{display}:{value.start_mark.line + 1}:{value.start_mark.column + 1}"
        config[key.value] = (value.value if isinstance(value, yaml.ScalarNode) else None, where)
    for name in ("company_id", "name", "filter_column"):
        if name not in config:
            problems.add(f"{display}:1:1", f"{name} is missing")
    return config


def output_dir(metadata: Path, company: str) -> str | None:
    """The folder the company's marts are written to, if its config names it correctly."""
    config = _config(metadata / "partners" / company / "config.yml", "", Problems())
    try:
        name = validate_identifier(config["name"][0])
        return f"{OUTPUT_ROOT}/public_{int(config['company_id'][0])}_{name}"
    except (KeyError, TypeError, ValueError, InvalidIdentifierError):
        return None


def build_partner_models(metadata: Path, company: str) -> list[PartnerModel]:
    """The company's mart models; raises MetadataError naming file, line and column."""
    problems = Problems()
    folder = metadata / "partners" / company
    display = f"metadata/partners/{company}"
    config = _config(folder / "config.yml", f"{display}/config.yml", problems)
    request = read_csv(
        folder / "request.csv", f"{display}/request.csv", ("version", "model", "column"), problems
    )
    problems.raise_if_any()

    company_id_text, where = config["company_id"]
    if not (company_id_text or "").isdigit() or company_id_text != company:
        problems.add(
            where, f"company_id must be the folder's number {company!r}, not {company_id_text!r}"
        )
    name, where = config["name"]
    try:
        validate_identifier(name or "", what="company name")
    except InvalidIdentifierError as exc:
        problems.add(where, str(exc))
    filter_column, filter_where = config["filter_column"]
    problems.raise_if_any()
    schema = f"public_{company}_{name}"

    cleansing = {m.name: m for m in build_models(metadata) if not m.secret}
    selected: dict[tuple[str, str], list[Column]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for record in request.records():
        version = record["version"]
        if not _VERSION.fullmatch(version):
            problems.add(
                record.where("version"), f"version must look like v1, v2, ..., not {version!r}"
            )
            continue
        model_name = request.identifier(record, "model", problems, "model")
        column_name = request.identifier(record, "column", problems, "column")
        if not (model_name and column_name):
            continue
        if model_name.startswith("cleansing_secret"):
            problems.add(
                record.where("model"),
                f"{model_name} is in cleansing_secret (unmasked PII): "
                "a partner mart can never read it",
            )
            continue
        base = cleansing.get(model_name)
        if base is None:
            problems.add(
                record.where("model"),
                f"unknown model {model_name!r}: partners read cleansing_<table> models",
            )
            continue
        column = next((c for c in base.columns if c.name == column_name), None)
        if column is None:
            problems.add(record.where("column"), f"unknown column {column_name!r} of {model_name}")
            continue
        if column.pii:
            problems.add(
                record.where("column"),
                f"{model_name}.{column_name} is PII ({column.pii}): it cannot leave the company",
            )
            continue
        if (version, model_name, column_name) in seen:
            problems.add(
                record.where("column"),
                f"duplicate row for {version} {model_name}.{column_name} "
                f"(first at line {seen[version, model_name, column_name]})",
            )
            continue
        seen[version, model_name, column_name] = record.line
        if not any(c.name == filter_column for c in base.columns):
            problems.add(
                filter_where, f"filter_column {filter_column!r} is not a column of {model_name}"
            )
            continue
        selected.setdefault((version, model_name), []).append(
            Column(column.name, column.name, column.description)
        )
    if not selected and not problems.messages:
        problems.add(f"{display}/request.csv:1:1", "the request lists no columns")
    problems.raise_if_any()
    return [
        PartnerModel(
            f"{schema}_{model_name.removeprefix('cleansing_')}_{version}",
            schema,
            version,
            cleansing[model_name],
            columns,
            int(company),
            name,
            filter_column,
        )
        for (version, model_name), columns in sorted(
            selected.items(), key=lambda item: (int(item[0][0][1:]), item[0][1])
        )
    ]


def render(metadata: Path, company: str) -> dict[str, str]:
    """{path relative to the dbt project: text} of the company's marts."""
    inputs = f"metadata/partners/{company}/ and metadata/*.csv"
    command = f"{COMMAND} --company {company}"
    files = {}
    for model in build_partner_models(metadata, company):
        folder = f"{OUTPUT_ROOT}/{model.schema}"
        for suffix, comment in (("sql", "--"), ("yml", "#")):
            text = template(f"partner.{suffix}.j2").render(model=model)
            files[f"{folder}/{model.name}.{suffix}"] = (
                header(command, inputs, f"partner.{suffix}.j2", comment) + text
            )
    return files
