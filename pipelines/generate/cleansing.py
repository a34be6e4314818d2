"""`minato generate cleansing`: one cleansing model per lake table, rendered from metadata.

Inputs (metadata/, one row per rule; every table and column must exist in columns.csv):

- columns.csv (table, column, source_type, nullable, ordinal): the lake tables, written by
  `minato metadata export`;
- tables.csv (table, source, timezone, key, description): the dbt source, the zone the table's
  datetimes are written in (a zone such as `UTC`, or a column such as `_source_tz`), the key;
- casting.csv (table, column, cast, output_name, not_null, accepted_values): typing (the casts
  are in templates/casts.yml), renames and column tests;
- masking.csv (table, column, method, output_name): PII is `hash`ed (a salted join key named
  output_name), `null`ed or `drop`ped;
- dedupe.csv (table, order_by): keep the first row per key in this order;
- partitioning.csv (table, column, granularity, cluster_by, incremental): BigQuery partitioning
  and clustering; `incremental: yes` replaces only the business days of the run on BigQuery
  (needs a dedupe order starting with the partition column; DuckDB builds the table whole).

Columns are output in `ordinal` order. Origin columns (`_shard`, `_loaded_at`, ...) are output
only when casting.csv names them. A masked column is hashed, nulled or dropped in
`cleansing_<table>`; `cleansing_secret_<table>` (only for tables with masking rules) holds the
key columns and the masked columns unmasked, plus the hashed join keys.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from assets.constants import LAKE_SCHEMA
from assets.gc_pause import collector_paused
from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from assets.ingestion.origin import LAKE_DAY_COLUMN
from pipelines.generate.csvfiles import CsvFile, Problems, Record, read_csv
from pipelines.generate.render import TEMPLATES, header, one_line, template, yaml_text
from pipelines.generate.sql_names import column_argument, column_sql, is_keyword
from resources.identifiers import IDENTIFIER_PATTERN

COMMAND = "cleansing"
INPUTS = "metadata/*.csv"
OUTPUT_DIRS = ("models/warehouse/cleansing", "models/warehouse/cleansing_secret")
MASKING_METHODS = ("hash", "null", "drop")
GRANULARITIES = ("day", "month", "year")
# BigQuery clusters by at most four columns.
MAX_CLUSTER_COLUMNS = 4


@cache
def casts() -> dict[str, dict]:
    return yaml.safe_load((TEMPLATES / "casts.yml").read_text(encoding="utf-8"))


class Column:
    """One output column. Columns repeat across tables (every client table has the same
    layout), so equal columns are one shared object and their SQL and YAML are rendered once."""

    __slots__ = (
        "accepted_values",
        "description",
        "expression",
        "name",
        "pii",
        "quoted",
        "sql",
        "tests",
        "yml",
    )

    def __init__(
        self,
        name: str,
        expression: str,
        description: str = "",
        pii: str = "",
        tests: tuple[str, ...] = (),
        accepted_values: tuple[str, ...] = (),
    ) -> None:
        self.name, self.expression, self.description = name, expression, description
        self.pii, self.tests, self.accepted_values = pii, tests, accepted_values
        self.quoted = is_keyword(name)  # dbt's tests then quote it too (`quote: true`)
        reference = column_sql(name)
        self.sql = reference if expression == reference else f"{expression} as {reference}"
        self.yml = template("cleansing_column.yml.j2").render(column=self)


_shared: dict[tuple, Column] = {}


def _shared_column(*fields) -> Column:
    column = _shared.get(fields)
    if column is None:
        column = _shared[fields] = Column(*fields)
    return column


@dataclass
class Model:
    name: str
    table: str
    source: str
    description: str
    pii: str  # false | pseudonymised | true
    secret: bool
    columns: list[Column]
    key: list[str]  # output names
    dedupe_partition: list[str]  # lake column names
    dedupe_order: str
    partition: dict | None
    read_days: str | None  # the lake day column every read of the source filters on


class _Source:
    """One lake column of columns.csv with the rules that apply to it."""

    __slots__ = ("cast", "mask", "name", "ordinal", "source_type")

    def __init__(self, name: str, ordinal: int, source_type: str) -> None:
        self.name, self.ordinal, self.source_type = name, ordinal, source_type
        self.cast: Record | None = None
        self.mask: Record | None = None


def _load(metadata: Path, problems: Problems) -> dict[str, CsvFile]:
    specs = {
        "columns": ("table", "column", "source_type", "nullable", "ordinal"),
        "tables": ("table", "source", "timezone", "key", "description"),
        "casting": ("table", "column", "cast"),
        "masking": ("table", "column", "method"),
        "dedupe": ("table", "order_by"),
        "partitioning": ("table", "column", "granularity"),
    }
    return {
        name: read_csv(
            metadata / f"{name}.csv",
            f"metadata/{name}.csv",
            required,
            problems,
            optional=name not in {"columns", "tables"},
        )
        for name, required in specs.items()
    }


# Separators of the cells (unit) and rows (record) in a table's shape text.
_UNIT, _RECORD = "\x1f", "\x1e"


def _row_texts(cells: list[pa.Array]) -> pa.Array:
    """Each row's cells joined by the unit separator and ending with one (so no rows and one
    empty row differ). Texts are equal only when the cells are: if a cell holds a separator,
    every cell is escaped first (backslash included) and joined again."""
    rows = pc.binary_join_element_wise(*cells, pa.scalar(""), _UNIT)
    separators = pc.sum(pc.count_substring(rows, _UNIT)).as_py() or 0
    if separators == len(rows) * len(cells) and not pc.any(pc.match_substring(rows, _RECORD)):
        return rows
    escaped = []
    for column in cells:
        for plain, escape in (("\\", "\\\\"), (_UNIT, "\\u"), (_RECORD, "\\r")):
            column = pc.replace_substring(column, plain, escape)
        escaped.append(column)
    return pc.binary_join_element_wise(*escaped, pa.scalar(""), _UNIT)


class _TableRows:
    """A metadata file's rows grouped by table (file order within each table), and each
    table's shape text: every cell of its rows except the table and description, so two tables
    with equal texts have equal rules. Computed in Arrow: 2 million rows take about a second."""

    def __init__(self, file: CsvFile) -> None:
        self.file = file
        encoded = pc.dictionary_encode(file.column("table"))
        self.codes = encoded.indices.to_numpy(zero_copy_only=False)
        self.dictionary = encoded.dictionary  # the table names, in order of first row
        self.order = pc.sort_indices(encoded.indices).to_numpy()  # stable: file order kept
        self.counts = np.bincount(self.codes, minlength=len(self.dictionary))
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.code = {name: i for i, name in enumerate(self.dictionary.to_pylist())}
        skip = {file.index["table"], file.index.get("description")}
        rows = _row_texts([c for i, c in enumerate(file.columns) if i not in skip])
        per_table = pa.ListArray.from_arrays(
            pa.array(self.offsets, pa.int32()), rows.take(pa.array(self.order))
        )
        self.shapes = pc.binary_join(per_table, _RECORD)

    def indices(self, table: str) -> np.ndarray:
        """Row indices of one table, in file order (none for a table not in the file)."""
        code = self.code.get(table)
        if code is None:
            return self.order[:0]
        return self.order[self.offsets[code] : self.offsets[code + 1]]

    def rows(self, table: str) -> list[tuple[int, list[str]]]:
        return self.file.rows(self.indices(table))

    def first_rows(self, tables: pa.Array) -> np.ndarray:
        """The index of each table's first row (every table must be in the file)."""
        codes = pc.index_in(tables, value_set=self.dictionary).to_numpy()
        return self.order[self.offsets[codes]]

    def shapes_of(self, tables: pa.Array) -> list[str]:
        """Each table's shape text ("" for a table not in the file)."""
        codes = pc.index_in(tables, value_set=self.dictionary)
        return pc.fill_null(self.shapes.take(codes), "").to_pylist()

    def repeated(self) -> set[str]:
        """Tables with more than one row."""
        return set(self.dictionary.take(np.flatnonzero(self.counts > 1)).to_pylist())

    def checked_names(self, problems: Problems) -> set[str]:
        """The valid table names; an invalid one is a problem at the first row of each run of
        rows that names it."""
        valid = pc.match_substring_regex(self.dictionary, IDENTIFIER_PATTERN).to_numpy(
            zero_copy_only=False
        )
        if not valid.all():
            starts = np.flatnonzero(np.r_[True, self.codes[1:] != self.codes[:-1]])
            for line, values in self.file.rows(starts[~valid[self.codes[starts]]]):
                self.file.identifier(Record(self.file, line, values), "table", problems, "table")
        return set(self.dictionary.filter(pa.array(valid)).to_pylist())


def _columns(
    table: str, rows: list[tuple[int, list[str]]], file: CsvFile, problems: Problems
) -> dict[str, _Source]:
    columns: dict[str, _Source] = {}
    first_line: dict[str, int] = {}
    o, st = file.index["ordinal"], file.index["source_type"]
    for line, values in rows:
        record = Record(file, line, values)
        column = file.identifier(record, "column", problems, "column")
        if not column:
            continue
        try:
            ordinal = int(values[o])
        except ValueError:
            problems.add(record.where("ordinal"), f"ordinal must be an integer: {values[o]!r}")
            continue
        if column in columns:
            problems.add(
                record.where("column"),
                f"duplicate column {table}.{column} (first at line {first_line[column]})",
            )
            continue
        first_line[column] = line
        columns[column] = _Source(column, ordinal, values[st])
    return columns


def _rule_source(
    record: Record, table: str, columns: dict[str, _Source], problems: Problems
) -> _Source | None:
    """The column a rule row is about; an unknown column or a second rule is a problem."""
    column = record.file.identifier(record, "column", problems, "column")
    if not column:
        return None
    source = columns.get(column)
    if source is None:
        problems.add(
            record.where("column"),
            f"unknown column {column!r} of table {table!r} (not in metadata/columns.csv)",
        )
        return None
    kind = "cast" if "cast" in record.file.index else "mask"
    first = getattr(source, kind)
    if first is not None:
        problems.add(
            record.where("column"),
            f"duplicate rule for {table}.{column} (first at line {first.line})",
        )
        return None
    return source


def _apply_rules(
    table: str,
    columns: dict[str, _Source],
    rows: dict[str, list[tuple[int, list[str]]]],
    files: dict[str, CsvFile],
    problems: Problems,
) -> None:
    """Attach the table's casting and masking rows to its columns, checking each."""
    cast_defs = casts()
    for row in rows["casting"]:
        record = Record(files["casting"], *row)
        source = _rule_source(record, table, columns, problems)
        if source is None:
            continue
        if record["cast"] not in cast_defs:
            problems.add(
                record.where("cast"),
                f"unknown cast {record['cast']!r} (one of {', '.join(cast_defs)})",
            )
            continue
        for value in record["accepted_values"].split(",") if record["accepted_values"] else []:
            if any(c in value for c in "'\"\\"):
                problems.add(record.where("accepted_values"), f"quotes in value {value.strip()!r}")
        record.flag("not_null", problems)
        if record["output_name"]:
            record.file.identifier(record, "output_name", problems, "output_name")
        source.cast = record
    for row in rows["masking"]:
        record = Record(files["masking"], *row)
        source = _rule_source(record, table, columns, problems)
        if source is None:
            continue
        if record["method"] not in MASKING_METHODS:
            problems.add(
                record.where("method"),
                f"unknown method {record['method']!r} (one of {', '.join(MASKING_METHODS)})",
            )
            continue
        if record["method"] == "hash" and not record.file.identifier(
            record, "output_name", problems, "output_name (the join key's name)"
        ):
            continue
        source.mask = record


@cache
def _zone_name(zone: str) -> bool:
    try:
        return all(c.isalnum() or c in "_+-/" for c in zone) and ZoneInfo(zone) is not None
    except (ValueError, ZoneInfoNotFoundError):
        return False


def _zone(record: Record, columns: dict[str, _Source], problems: Problems) -> tuple[str, str]:
    """(SQL argument, documentation) of a table's timezone; ("", "") when none is given."""
    zone = record["timezone"]
    if not zone:
        return "", ""
    if zone in columns:
        return f"'{zone}'", f"per row, column {zone}"
    if not _zone_name(zone):
        problems.add(
            record.where("timezone"),
            f"timezone {zone!r} is neither a column of the table nor a zone name (e.g. Asia/Tokyo)",
        )
        return "", ""
    return f"\"'{zone}'\"", zone


def _plain(expression: str) -> bool:
    return "{{" not in expression


_SINGLE_ROW = ("tables", "dedupe", "partitioning")  # at most one row per table
_RULES = ("casting", "masking", *_SINGLE_ROW)
# Stand-ins rendered once per shape, then replaced by each table's own name and description.
TABLE_TOKEN, DESCRIPTION_TOKEN = "<<table>>", "<<description>>"


@dataclass
class Shape:
    """The models of one table and the other tables (name, description) shaped like it."""

    models: list[Model]
    tables: list[tuple[str, str]]


def build_shapes(metadata: Path) -> list[Shape]:
    """The models the metadata describes, one set per shape; raises MetadataError."""
    problems = Problems()
    files = _load(metadata, problems)
    problems.raise_if_any()
    grouped = {kind: _TableRows(file) for kind, file in files.items()}
    names = {kind: rows.checked_names(problems) for kind, rows in grouped.items()}
    tables = names["columns"]
    for kind in _RULES:
        rows = grouped[kind]
        single = kind in _SINGLE_ROW
        # Only tables with a problem: unknown ones, and single-row rules given twice.
        for table in sorted((names[kind] - tables) | (rows.repeated() if single else set())):
            if table not in tables:
                for line in files[kind].lines[rows.indices(table)]:
                    problems.add(
                        files[kind].where(int(line), "table"),
                        f"unknown table {table!r} (not in metadata/columns.csv)",
                    )
            else:  # repeated: a name valid in columns.csv is valid here too
                first, *more = files[kind].lines[rows.indices(table)]
                for line in more:
                    problems.add(
                        files[kind].where(int(line), "table"),
                        f"duplicate rule for {table} (first at line {first})",
                    )
    undescribed = pa.array(sorted(tables - names["tables"]), pa.string())
    for table, row in zip(
        undescribed.to_pylist(), grouped["columns"].first_rows(undescribed), strict=True
    ):
        problems.add(
            files["columns"].where(int(files["columns"].lines[row]), "table"),
            f"table {table!r} has no row in metadata/tables.csv (source, timezone, key)",
        )

    def rows_of(table: str) -> dict[str, list[tuple[int, list[str]]]]:
        return {kind: grouped[kind].rows(table) if table in names[kind] else [] for kind in files}

    described = pa.array(sorted(tables & names["tables"]), pa.string())
    keys = zip(*(grouped[kind].shapes_of(described) for kind in files), strict=True)
    shapes: dict[tuple, list[str]] = defaultdict(list)
    for table, key in zip(described.to_pylist(), keys, strict=True):
        shapes[key].append(table)
    description = files["tables"].column("description")
    result = []
    for same in shapes.values():
        known = len(problems.messages)
        first = _table_models(same[0], rows_of(same[0]), files, problems)
        if len(problems.messages) > known:
            for table in same[1:]:  # each table's own positions
                _table_models(table, rows_of(table), files, problems)
            continue
        others = pa.array(same[1:], pa.string())
        rows = pa.array(grouped["tables"].first_rows(others), pa.int64())
        descriptions = description.take(rows).to_pylist()
        result.append(Shape(first, list(zip(same[1:], descriptions, strict=True))))
    problems.raise_if_any()
    return result


def build_models(metadata: Path) -> list[Model]:
    """Every cleansing and cleansing_secret model the metadata describes; raises MetadataError."""
    models = []
    for shape in build_shapes(metadata):
        models.extend(shape.models)
        for table, description in shape.tables:
            models.extend(_renamed(model, table, description) for model in shape.models)
    return sorted(models, key=lambda m: (m.table, m.secret))


def _renamed(model: Model, table: str, description: str) -> Model:
    """The model of another table of the same shape."""
    return replace(
        model,
        name=model.name.replace(model.table, table, 1),
        table=table,
        description=description if not model.secret else _secret_description(table),
    )


def _secret_description(table: str) -> str:
    return (
        f"Unmasked PII of {table}, keyed like cleansing_{table}. Restricted; never read by marts."
    )


@cache
def _typed(
    kind: str, column: str, output_name: str, zone_sql: str, zone_doc: str
) -> tuple[str, str, str]:
    """(expression, output name, doc) of a lake column cast to `kind` (templates/casts.yml)."""
    definition = casts()[kind]
    expression = (
        definition["sql"]
        .replace("'<column>'", column_argument(column))
        .replace("<column>", column_sql(column))
        .replace("<zone>", zone_sql)
    )
    doc = definition["doc"].replace("<zone_doc>", zone_doc)
    name = output_name or column
    if name != column:
        doc = f"{doc} From lake column {column}.".strip()
    return expression, name, doc


def _table_models(
    table: str,
    rows: dict[str, list[tuple[int, list[str]]]],
    files: dict[str, CsvFile],
    problems: Problems,
) -> list[Model]:
    known = len(problems.messages)
    columns = _columns(table, rows["columns"], files["columns"], problems)
    _apply_rules(table, columns, rows, files, problems)
    info = Record(files["tables"], *rows["tables"][0])
    dedupe = Record(files["dedupe"], *rows["dedupe"][0]) if rows["dedupe"] else None
    partitioning = (
        Record(files["partitioning"], *rows["partitioning"][0]) if rows["partitioning"] else None
    )
    source_name = info.file.identifier(info, "source", problems, "source")
    zone_sql, zone_doc = _zone(info, columns, problems)
    ordered = sorted(columns.values(), key=lambda c: c.ordinal)
    needs_zone = _needs_zone()

    # The typed expression and output name of every lake column.
    typed: dict[str, tuple[str, str, str]] = {}  # column -> (expression, name, doc)
    for source in ordered:
        rule = source.cast
        kind = rule["cast"] if rule else "keep"
        if kind in needs_zone and not zone_sql:
            problems.add(
                info.where("timezone"),
                f"missing timezone for table {table!r}: column {source.name!r} is cast to "
                f"{kind} ({rule.where('cast') if rule else ''})",
            )
        output_name = rule["output_name"] if rule else ""
        typed[source.name] = _typed(kind, source.name, output_name, zone_sql, zone_doc)

    key_sources = info.names("key", problems, "key column") if info["key"] else []
    for column in key_sources:
        if column not in columns:
            problems.add(info.where("key"), f"unknown key column {column!r} of table {table!r}")
        elif columns[column].mask:
            problems.add(info.where("key"), f"key column {column!r} is masked (masking.csv)")
        elif column.startswith("_") and not columns[column].cast:
            problems.add(
                info.where("key"),
                f"key column {column!r} is an origin column: name it in casting.csv to output it",
            )
    if len(problems.messages) > known:
        return []
    key = [typed[c][1] for c in key_sources]

    cleansing: list[Column] = []
    secret: list[Column] = [_column(typed[c], key, None) for c in key_sources]
    for source in ordered:
        if source.name.startswith("_") and not source.cast:
            continue
        if not source.mask:
            cleansing.append(_column(typed[source.name], key, source.cast))
            continue
        raw = _column(typed[source.name], key, source.cast, pii="true")
        method = source.mask["method"]
        if method == "hash":
            if not _plain(raw.expression):
                problems.add(source.mask.where("method"), "only a plain cast can be hashed")
            hashed = _shared_column(
                source.mask["output_name"],
                f'{{{{ hash_pii("{raw.expression}") }}}}',
                f"Salted SHA-256 of the normalised {source.name} (a join key, not the value).",
                "pseudonymised",
            )
            cleansing.append(hashed)
            secret.append(hashed)
        elif method == "null":
            cleansing.append(
                _shared_column(
                    raw.name,
                    "cast(null as {{ dbt.type_string() }})",
                    "Masked: always NULL.",
                    "removed",
                )
            )
        secret.append(raw)

    for model_columns in (cleansing, secret):
        if len({c.name for c in model_columns}) == len(model_columns):
            continue
        names = [c.name for c in model_columns]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.add(
                info.where("table"),
                f"two columns of table {table!r} are output as {name!r} (casting.csv, masking.csv)",
            )

    partition = _partition(table, columns, typed, partitioning, problems) if partitioning else None
    dedupe_order = ""
    if dedupe:
        if not key_sources:
            problems.add(
                dedupe.where("table"), f"dedupe needs the key of table {table!r} (tables.csv)"
            )
        dedupe_order = _order_by(dedupe, columns, problems)
        first = dedupe_order.split(",")[0].strip()
        if partition and partition["incremental"] and first != partition["filter"]:
            # An incremental run leaves out the versions stored before its window, which is a
            # full rebuild's choice only when each version is kept at its earliest day.
            problems.add(
                dedupe.where("order_by"),
                f"an incremental model keeps each version at its earliest day: order_by must"
                f" start with {partition['filter']}",
            )
    if len(problems.messages) > known:
        return []

    # A shard lake table requires a day filter on every read (BigQuery's
    # require_partition_filter, set by ingestion); an incremental model reads its window.
    read_days = None
    if partition and partition["incremental"]:
        read_days = partition["filter"]
    elif source_name == LAKE_SCHEMA and table in {t.name for t in SHARD_LAKE_TABLES}:
        read_days = LAKE_DAY_COLUMN
    models = [
        Model(
            f"cleansing_{table}",
            table,
            source_name,
            info["description"],
            "pseudonymised" if any(c.pii for c in cleansing) else "false",
            False,
            cleansing,
            key,
            list(key_sources) if dedupe else [],
            dedupe_order,
            partition,
            read_days,
        )
    ]
    if len(secret) > len(key_sources):
        if partition and partition["field"] not in {c.name for c in secret}:
            # Partitioned like its cleansing model, so the partition column comes along.
            partitioned_by = next(c for c in cleansing if c.name == partition["field"])
            secret.insert(len(key), partitioned_by)
        models.append(
            Model(
                f"cleansing_secret_{table}",
                table,
                source_name,
                _secret_description(table),
                "true",
                True,
                secret,
                key,
                list(key_sources) if dedupe else [],
                dedupe_order,
                partition,
                read_days,
            )
        )
    return models


@cache
def _needs_zone() -> frozenset[str]:
    return frozenset(kind for kind, d in casts().items() if "<zone>" in d["sql"])


def _column(
    typed: tuple[str, str, str], key: list[str], rule: Record | None, pii: str = ""
) -> Column:
    expression, name, doc = typed
    tests: tuple[str, ...] = ()
    if name in key:
        tests = ("not_null", "unique") if len(key) == 1 else ("not_null",)
    elif rule is not None and rule["not_null"].lower() in {"yes", "true"}:
        tests = ("not_null",)
    accepted = rule["accepted_values"] if rule is not None else ""
    values = tuple(v.strip() for v in accepted.split(",")) if accepted else ()
    return _shared_column(name, expression, doc, pii, tests, values)


def _order_by(record: Record, columns: dict[str, _Source], problems: Problems) -> str:
    terms = []
    for item in record["order_by"].split(","):
        words = item.split()
        if (
            not words
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in {"asc", "desc"})
        ):
            problems.add(
                record.where("order_by"),
                f"order_by term {item.strip()!r} is not '<column> [asc|desc]'",
            )
            continue
        if words[0] not in columns:
            problems.add(record.where("order_by"), f"unknown column {words[0]!r} in order_by")
            continue
        terms.append(" ".join([column_sql(words[0]), *(w.lower() for w in words[1:])]))
    return ", ".join(terms)


def _partition(
    table: str,
    columns: dict[str, _Source],
    typed: dict[str, tuple[str, str, str]],
    record: Record,
    problems: Problems,
) -> dict | None:
    column = record["column"]
    if column not in columns:
        problems.add(record.where("column"), f"unknown column {column!r} of table {table!r}")
        return None
    if is_keyword(column):
        # Its filter is passed to a macro as text, where dbt cannot quote a name.
        problems.add(
            record.where("column"),
            f"partition column {column!r} is an SQL keyword, which a partition filter cannot quote",
        )
        return None
    source = columns[column]
    kind = source.cast["cast"] if source.cast else "keep"
    if not (kind == "date" or (kind == "keep" and source.source_type.upper() == "DATE")):
        problems.add(
            record.where("column"),
            f"partition column {column!r} must be a DATE: cast it with `date` in casting.csv",
        )
    granularity = record["granularity"]
    if granularity not in GRANULARITIES:
        problems.add(
            record.where("granularity"), f"granularity must be one of {', '.join(GRANULARITIES)}"
        )
    cluster = record.names("cluster_by", problems, "cluster column") if record["cluster_by"] else []
    for name in cluster:
        if name not in columns or (columns[name].mask and columns[name].mask["method"] == "drop"):
            problems.add(
                record.where("cluster_by"), f"cluster column {name!r} is not in cleansing_{table}"
            )
    if len(cluster) > MAX_CLUSTER_COLUMNS:
        problems.add(
            record.where("cluster_by"),
            f"BigQuery clusters by at most {MAX_CLUSTER_COLUMNS} columns",
        )
    incremental = record.flag("incremental", problems)
    if incremental and granularity != "day":
        problems.add(
            record.where("incremental"),
            "incremental models are replaced by business day: granularity must be day",
        )
    return {
        "field": typed[column][1],
        "filter": typed[column][0],
        "granularity": granularity,
        "cluster_by": [typed[name][1] for name in cluster if name in typed],
        "incremental": incremental,
    }


def render(metadata: Path) -> dict[str, str]:
    """{path relative to the dbt project: text} of every generated cleansing file.

    Each shape's models are rendered once, with stand-ins for the table name and description,
    and copied for every table of that shape: 100,000 client tables of a few layouts render
    in seconds. One template call renders all shapes; the templates end each model with the
    separator.
    """
    with collector_paused():
        shapes = build_shapes(metadata)
    separator = "\x00"
    files = {}
    for suffix, comment in (("sql", "--"), ("yml", "#")):
        first = header(COMMAND, INPUTS, f"cleansing.{suffix}.j2", comment)
        stand_ins = [
            [_renamed(model, TABLE_TOKEN, DESCRIPTION_TOKEN) for model in shape.models]
            for shape in shapes
        ]
        texts = iter(
            template(f"cleansing.{suffix}.j2")
            .render(
                models=[m for ms in stand_ins for m in ms], separator=separator, command=COMMAND
            )
            .split(separator)
        )
        quote = one_line if suffix == "sql" else yaml_text
        token = quote(DESCRIPTION_TOKEN)
        for shape in shapes:
            # The first table's own (name, description), then the others of its shape.
            tables = [(shape.models[0].table, shape.models[0].description), *shape.tables]
            for model, text in zip(shape.models, texts, strict=False):
                folder = OUTPUT_DIRS[model.secret]
                body = first + text
                # Only a model that shows its table's description has the stand-in.
                described = token in body
                for table, description in tables:
                    name = model.name.replace(model.table, table, 1)
                    out = body.replace(TABLE_TOKEN, table)
                    if described:
                        out = out.replace(token, quote(description))
                    files[f"{folder}/{name}.{suffix}"] = out
    return files
