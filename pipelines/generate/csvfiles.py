"""Metadata CSVs read with their positions, so every error names file, line and column.

Generators read millions of cells: a file is kept as Arrow string columns plus each row's line
number, rows become Python values only when a generator asks for them, and a position is only
formatted when something is wrong.
"""

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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


class CsvFile:
    """One CSV file: its header, its cells as Arrow string columns (stripped, "" when absent)
    and the line each row is on."""

    def __init__(
        self, display: str, header: list[str], columns: list[pa.Array], lines: np.ndarray
    ) -> None:
        self.display = display  # the path as errors show it, e.g. metadata/masking.csv
        self.header = header
        self.columns = columns
        self.lines = lines
        self.index = {name: i for i, name in enumerate(header)}
        self.valid_names: set[str] = set()

    @classmethod
    def empty(cls, display: str, header: list[str]) -> "CsvFile":
        return cls(display, header, [pa.array([], pa.string()) for _ in header], np.zeros(0, int))

    def column(self, name: str) -> pa.Array:
        return self.columns[self.index[name]]

    def rows(self, indices: Sequence[int] | np.ndarray | None = None) -> list[tuple[int, list]]:
        """(line, values) of the rows at `indices` (all rows when None), in that order."""
        if indices is None:
            columns, lines = self.columns, self.lines
        else:
            take = pa.array(indices, pa.int64())
            columns, lines = [c.take(take) for c in self.columns], self.lines[indices]
        cells = [c.to_pylist() for c in columns]
        return [(int(n), list(v)) for n, v in zip(lines, zip(*cells, strict=True), strict=True)]

    def where(self, line: int, column: str | None = None) -> str:
        position = 1 if column is None else self.index[column] + 1
        return f"{self.display}:{line}:{position}"

    def records(self) -> Iterator["Record"]:
        for line, values in self.rows():
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


def _columns_fast(path: Path) -> tuple[list[str], list[pa.Array]] | None:
    """Header and stripped columns through Arrow's C++ reader (2 million rows in about a
    second), when the file is simple enough for row n to be on line n + 1: no blank lines, no
    line breaks inside quoted cells. None otherwise."""
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
        pc.utf8_trim_whitespace(column.combine_chunks().cast(pa.string()))
        for column in table.columns
    ]
    return [name.strip() for name in table.column_names], columns


def _columns_slow(
    path: Path, display: str
) -> tuple[list[str], list[pa.Array], np.ndarray, list[tuple[str, str]]]:
    """The same through the csv module, which reads any CSV and knows each row's line; also
    the problems of rows longer than the header."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        width = len(header)
        lines, rows, ragged = [], [], []
        for values in reader:
            values = list(map(str.strip, values))
            if len(values) <= 1 and not (values and values[0]):
                continue  # blank lines are no rows
            if len(values) > width:
                ragged.append(
                    (
                        f"{display}:{reader.line_num}:{width + 1}",
                        f"{len(values)} fields, the header has {width}",
                    )
                )
            lines.append(reader.line_num)
            rows.append(values[:width] + [""] * (width - len(values)))  # short rows: empty cells
    columns = [pa.array(cells, pa.string()) for cells in zip(*rows, strict=True)] if rows else []
    columns = columns or [pa.array([], pa.string()) for _ in header]
    return header, columns, np.array(lines, dtype=np.int64), ragged


def read_csv(
    path: Path, display: str, required: Sequence[str], problems: Problems, *, optional: bool = False
) -> CsvFile:
    """Read a metadata CSV; a missing file is a problem unless `optional` (then it is empty)."""
    if not path.exists():
        if not optional:
            problems.add(f"{display}:1:1", "file not found")
        return CsvFile.empty(display, list(required))
    fast = _columns_fast(path)
    ragged: list[tuple[str, str]] = []
    if fast is not None:
        header, columns = fast
        lines = np.arange(2, len(columns[0]) + 2, dtype=np.int64)  # row n is on line n + 1
    else:
        header, columns, lines, ragged = _columns_slow(path, display)
    file = CsvFile(display, header, columns, lines)
    missing = [name for name in required if name not in file.index]
    if missing:
        problems.add(f"{display}:1:1", f"missing header column(s) {', '.join(missing)}")
        return CsvFile.empty(display, list(required))
    for where, message in ragged:
        problems.add(where, message)
    return file
