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

from assets.governance.partner_config import (
    PartnerConfig,
    PartnerConfigError,
    load_partner_config,
)
from pipelines.generate.cleansing import Column, Model, build_models
from pipelines.generate.csvfiles import MetadataError, Problems, read_csv
from pipelines.generate.render import header, template
from resources.config_files import YamlFile

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


def _config(metadata: Path, company: str) -> tuple[PartnerConfig, YamlFile]:
    """The company's config; errors name file, line and key (as MetadataError)."""
    try:
        return load_partner_config(metadata, company)
    except PartnerConfigError as exc:
        raise MetadataError(str(exc).splitlines()) from None


def output_dir(metadata: Path, company: str) -> str | None:
    """The folder the company's marts are written to, if its config names it correctly."""
    try:
        config, _ = _config(metadata, company)
    except MetadataError:
        return None
    return f"{OUTPUT_ROOT}/{config.dataset}"


def build_partner_models(metadata: Path, company: str) -> list[PartnerModel]:
    """The company's mart models; raises MetadataError naming file, line and column."""
    problems = Problems()
    folder = metadata / "partners" / company
    display = f"metadata/partners/{company}"
    config, document = _config(metadata, company)
    request = read_csv(
        folder / "request.csv", f"{display}/request.csv", ("version", "model", "column"), problems
    )
    problems.raise_if_any()
    name, filter_column = config.name, config.filter_column
    filter_where = f"{display}/config.yml:{document.line(('filter_column',))}"
    schema = config.dataset

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
    privacy_where = f"{display}/config.yml:{document.line(('sharing', 'privacy', 'privacy_unit'))}"
    _add_privacy_units(config, selected, cleansing, privacy_where, problems)
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


def _add_privacy_units(
    config: PartnerConfig,
    selected: dict[tuple[str, str], list[Column]],
    cleansing: dict[str, Model],
    where: str,
    problems: Problems,
) -> None:
    """A shared model carries its privacy unit even if the partner did not request it: the
    thresholded views need it, and a subscriber only ever sees it aggregated over at least k
    units. Only a pseudonymised key qualifies; raw PII never leaves."""
    if config.sharing is None:
        return
    unit = config.sharing.privacy.privacy_unit
    by_name = {f"{v}:{m.removeprefix('cleansing_')}": (v, m) for v, m in selected}
    for view in config.sharing.views:
        table, _, version = view.model.rpartition("_")
        key = by_name.get(f"{version}:{table}")
        if key is None:
            problems.add(where, f"shared view {view.name!r} reads {view.model!r}: not requested")
            continue
        columns = selected[key]
        if any(c.name == unit for c in columns):
            continue
        column = next((c for c in cleansing[key[1]].columns if c.name == unit), None)
        if column is None or column.pii not in ("", "pseudonymised"):
            problems.add(
                where,
                f"privacy unit {unit!r} must be a pseudonymised or non-PII column of {key[1]}",
            )
            continue
        columns.append(Column(column.name, column.name, column.description))


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
