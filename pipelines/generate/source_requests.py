"""`minato generate source`: data-source request forms -> dbt source, staging model and docs.

A requester copies metadata/examples/request_form.csv to `metadata/requests/<name>.csv` and
fills in one row per table (column left empty: description, owner, freshness) and one row per
column (description, sensitivity). The metadata arrives with the request; the generator makes:

- `models/lake/requested/<source>.yml`: the dbt source (lake table `<source>_<table>`, asset
  key `lake/<source>_<table>` for the ingestion asset), column docs, owner, freshness;
- `models/lake/requested/<source>.md`: the request as a dbt docs block;
- `models/warehouse/staging/stg_<source>__<table>.sql|.yml`: the requested columns, with `pii`
  columns replaced by a salted hash (`<column>_key`), schema `staging`.
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.generate.csvfiles import Problems, Record, read_csv
from pipelines.generate.render import header, template

COMMAND = "source"
OUTPUT_DIRS = ("models/lake/requested", "models/warehouse/staging")
COLUMNS = ("source", "table", "column", "description", "sensitivity", "owner", "freshness")
SENSITIVITIES = ("public", "internal", "confidential", "pii")
_FRESHNESS = re.compile(r"^(\d+)\s*(m|h|d)$")
_PERIODS = {"m": "minute", "h": "hour", "d": "day"}


@dataclass
class RequestedColumn:
    name: str
    description: str
    sensitivity: str

    @property
    def staged_name(self) -> str:
        return f"{self.name}_key" if self.sensitivity == "pii" else self.name


@dataclass
class RequestedTable:
    source: str
    name: str
    request: str  # the form's path
    description: str = ""
    owner: str = ""
    freshness: dict = field(default_factory=dict)
    columns: list[RequestedColumn] = field(default_factory=list)

    @property
    def lake_table(self) -> str:
        return f"{self.source}_{self.name}"

    @property
    def model(self) -> str:
        return f"stg_{self.source}__{self.name}"


def _freshness(record: Record, problems: Problems) -> dict:
    match = _FRESHNESS.fullmatch(record["freshness"])
    if not match:
        problems.add(
            record.where("freshness"),
            f"freshness must look like 30m, 24h or 2d, not {record['freshness']!r}",
        )
        return {}
    count, unit = int(match.group(1)), _PERIODS[match.group(2)]
    return {"warn_after": (count, unit), "error_after": (2 * count, unit)}


def read_requests(forms: list[Path], root: Path) -> dict[str, list[RequestedTable]]:
    """{source: tables} from every form; raises MetadataError naming file, line and column.

    Positions are shown relative to `root` (the repository) when the form is inside it.
    """
    problems = Problems()
    tables: dict[tuple[str, str], RequestedTable] = {}
    seen: dict[tuple[str, ...], str] = {}
    for form in forms:
        form = form.resolve()
        display = form.relative_to(root).as_posix() if form.is_relative_to(root) else str(form)
        file = read_csv(form, display, COLUMNS, problems)
        for record in file.records():
            source = file.identifier(record, "source", problems, "source")
            table = file.identifier(record, "table", problems, "table")
            column = record["column"] and file.identifier(record, "column", problems, "column")
            if not (source and table) or (record["column"] and not column):
                continue
            rule = (source, table, column) if column else (source, table)
            if rule in seen:
                problems.add(
                    record.where("column" if column else "table"),
                    f"duplicate row for {'.'.join(rule)} (first at {seen[rule]})",
                )
                continue
            seen[rule] = record.where()
            entry = tables.setdefault((source, table), RequestedTable(source, table, display))
            for name in ("description",) if column else ("description", "owner", "freshness"):
                if not record[name]:
                    problems.add(record.where(name), f"{name} is empty")
            if not record["description"]:
                continue
            if column:
                if record["sensitivity"] not in SENSITIVITIES:
                    problems.add(
                        record.where("sensitivity"),
                        f"sensitivity must be one of {', '.join(SENSITIVITIES)}",
                    )
                    continue
                entry.columns.append(
                    RequestedColumn(column, record["description"], record["sensitivity"])
                )
            elif record["owner"] and record["freshness"]:
                entry.description, entry.owner = record["description"], record["owner"]
                entry.freshness = _freshness(record, problems)
    for (source, table), entry in sorted(tables.items()):
        if not entry.owner and not any(
            m.startswith(f"{entry.request}:") for m in problems.messages
        ):
            problems.add(
                f"{entry.request}:1:1",
                f"{source}.{table} has no table row (column empty: description, owner, freshness)",
            )
        if not entry.columns:
            problems.add(f"{entry.request}:1:1", f"{source}.{table} lists no columns")
    problems.raise_if_any()
    by_source: dict[str, list[RequestedTable]] = defaultdict(list)
    for (source, _), entry in sorted(tables.items()):
        by_source[source].append(entry)
    return dict(by_source)


def render(forms: list[Path], root: Path) -> dict[str, str]:
    """{path relative to the dbt project: text} for every requested source."""
    inputs = "metadata/requests/*.csv"
    files = {}
    for source, tables in read_requests(forms, root).items():
        for suffix, name in (("yml", "source"), ("md", "source_docs")):
            rendered = template(f"request_{name}.{suffix}.j2").render(source=source, tables=tables)
            first = header(COMMAND, inputs, f"request_{name}.{suffix}.j2", "#")
            files[f"{OUTPUT_DIRS[0]}/{source}.{suffix}"] = first + rendered
        for table in tables:
            for suffix, comment in (("sql", "--"), ("yml", "#")):
                rendered = template(f"request_staging.{suffix}.j2").render(table=table)
                first = header(COMMAND, inputs, f"request_staging.{suffix}.j2", comment)
                files[f"{OUTPUT_DIRS[1]}/{table.model}.{suffix}"] = first + rendered
    return files
