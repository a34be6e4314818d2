"""Metadata CSVs read with their positions, so every error names file, line and column.

Generators read hundreds of thousands of rows; a row is kept as its raw values plus its line
number, and a position is only formatted when something is wrong.
"""

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from resources.identifiers import InvalidIdentifierError, validate_identifier


class MetadataError(ValueError):
    """Metadata that cannot be generated from; one line per problem, each with its position."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Problems:
    """Collects every problem of a run, so one pass over the metadata reports all of them."""

    messages: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise MetadataError(self.messages)


@dataclass
class CsvFile:
    """One CSV file: its header and its rows as (line number, values)."""

    display: str  # the path as errors show it, e.g. metadata/masking.csv
    header: list[str]
    rows: list[tuple[int, list[str]]]

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.header)}
        self.valid_names: set[str] = set()

    def where(self, line: int, column: str | None = None) -> str:
        position = 1 if column is None else self.index[column] + 1
        return f"{self.display}:{line}:{position}"

    def records(self) -> Iterator["Record"]:
        for line, values in self.rows:
            yield Record(self, line, values)

    def identifier(self, record: "Record", column: str, problems: Problems, what: str) -> str:
        """The cell's value if it is a safe SQL identifier; else a problem and ""."""
        value = record[column]
        if value in self.valid_names:
            return value
        if not value:
            problems.add(record.where(column), f"{column} is empty")
            return ""
        try:
            validate_identifier(value, what=what)
        except InvalidIdentifierError as exc:
            problems.add(record.where(column), str(exc))
            return ""
        self.valid_names.add(value)
        return value


class Record:
    """One row; `record["column"]` is the cell text, stripped ("" when absent)."""

    __slots__ = ("file", "line", "values")

    def __init__(self, file: CsvFile, line: int, values: list[str]) -> None:
        self.file, self.line, self.values = file, line, values

    def __getitem__(self, column: str) -> str:
        i = self.file.index.get(column)
        return self.values[i] if i is not None and i < len(self.values) else ""

    def where(self, column: str | None = None) -> str:
        return self.file.where(self.line, column)

    def names(self, column: str, problems: Problems, what: str) -> list[str]:
        """A comma-separated list of identifiers in one cell ("a, b, c")."""
        names = []
        for item in self[column].split(","):
            name = item.strip()
            try:
                names.append(validate_identifier(name, what=what))
            except InvalidIdentifierError as exc:
                problems.add(self.where(column), str(exc))
        return names

    def flag(self, column: str, problems: Problems) -> bool:
        value = self[column].lower()
        if value in {"yes", "true"}:
            return True
        if value not in {"", "no", "false"}:
            problems.add(self.where(column), f"{column} must be yes or no, not {self[column]!r}")
        return False


def _rows_fast(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """Header and rows through Arrow's C++ reader (2 million rows in about a second), when the
    file is simple enough for row n to be on line n + 1: no blank lines, no line breaks inside
    quoted cells. None otherwise."""
    data = path.read_bytes()
    if not data.strip() or b"\n\n" in data or b"\r\n\r\n" in data:
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(autogenerate_column_names=False),
            parse_options=pa_csv.ParseOptions(newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                strings_can_be_null=False, column_types={}, auto_dict_encode=False
            ),
        )
    except pa.ArrowInvalid:  # ragged rows, stray quotes: the csv module reports them
        return None
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if lines != table.num_rows + 1:
        return None
    columns = [
        pc.utf8_trim_whitespace(column.cast(pa.string())).to_pylist() for column in table.columns
    ]
    header = [name.strip() for name in table.column_names]
    return header, [(i + 2, list(values)) for i, values in enumerate(zip(*columns, strict=True))]


def read_csv(
    path: Path, display: str, required: Sequence[str], problems: Problems, *, optional: bool = False
) -> CsvFile:
    """Read a metadata CSV; a missing file is a problem unless `optional` (then it is empty)."""
    if not path.exists():
        if not optional:
            problems.add(f"{display}:1:1", "file not found")
        return CsvFile(display, list(required), [])
    fast = _rows_fast(path)
    if fast is not None:
        header, rows = fast
    else:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            rows = []
            for values in reader:
                values = list(map(str.strip, values))
                if len(values) > 1 or (values and values[0]):  # blank lines are no rows
                    rows.append((reader.line_num, values))
    file = CsvFile(display, header, rows)
    missing = [name for name in required if name not in file.index]
    if missing:
        problems.add(f"{display}:1:1", f"missing header column(s) {', '.join(missing)}")
        return CsvFile(display, list(required), [])
    width = len(header)
    for line, values in rows:
        if len(values) != width:
            if len(values) > width:
                problems.add(
                    f"{display}:{line}:{width + 1}", f"{len(values)} fields, the header has {width}"
                )
            values.extend([""] * (width - len(values)))  # short rows read as empty cells
    return file
