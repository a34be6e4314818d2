"""Typed configuration files: one way to read every YAML file Minato is configured with.

A file is parsed into typed models (pydantic) that refuse unknown keys, so a typo such as
`timezon:` is an error instead of a silently ignored key. Every problem names the file, the
line and the key, in one form whatever the file:

    shards.yaml:7: shard 'shard_02': key 'timezon': unknown key; allowed: name, url, timezone, size

Errors are raised as the caller's own exception class (e.g. `ShardConfigError`), so each feature
keeps its error type while all of them read alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, ValidationError

from resources.identifiers import validate_identifier

T = TypeVar("T")
Location = tuple[str | int, ...]


def identifier(what: str) -> AfterValidator:
    """`Annotated[str, identifier("shard name")]`: a name that will reach SQL, checked."""
    return AfterValidator(functools.partial(validate_identifier, what=what))


class StrictModel(BaseModel):
    """A configuration entry: unknown keys are errors, values are immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class YamlFile:
    """A parsed YAML document and the line of every key and list item in it."""

    path: Path
    data: Any
    lines: Mapping[Location, int] = field(repr=False)

    def line(self, location: Location) -> int:
        """The line of the deepest part of `location` present in the file (1-based)."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return 1

    def problem(
        self, location: Location, message: str, entry: str | None = None, key: str | None = None
    ) -> str:
        """`<file>:<line of location>: <entry>: key '<key>': <message>`, the parts given."""
        return _problem(self.path, self.line(location), entry, key, message)


def _problem(path: Path, line: int, entry: str | None, key: str | None, message: str) -> str:
    parts = [f"{path}:{line}"]
    if entry:
        parts.append(entry)
    if key:
        parts.append(f"key {key!r}")
    parts.append(message)
    return ": ".join(parts)


def _lines(node: yaml.Node, location: Location, found: dict[Location, int]) -> None:
    found[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*location, key.value)
            _lines(value, child, found)
            found[child] = key.start_mark.line + 1  # a key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*location, index), found)


def read_yaml(path: Path | str, error: type[Exception], *, shown_as: str | None = None) -> YamlFile:
    """Parse `path`; an unreadable file or invalid YAML is one `error` naming file and line.
    Errors name the file `shown_as` (e.g. relative to the repository) when given."""
    source = Path(path)
    path = Path(shown_as) if shown_as else source
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{path}: file not found") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read the file: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise error(f"{path}:{line}: not valid YAML: {exc}") from exc
    lines: dict[Location, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return YamlFile(path, data, lines)


def _message(detail: Mapping[str, Any], allowed: Sequence[str]) -> str:
    kind = detail["type"]
    if kind == "missing":
        return "missing"
    if kind in {"extra_forbidden", "unexpected_keyword_argument"}:
        return f"unknown key; allowed: {', '.join(allowed)}"
    return str(detail["msg"]).removeprefix("Value error, ")


def _allowed_keys(model: Any) -> list[str]:
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", {})
    return [info.alias or name for name, info in fields.items()]


def validate_entry(
    document: YamlFile,
    model: type[T],
    data: Any,
    location: Location,
    entry: str | None,
    error: type[Exception],
    *,
    keys: Callable[[Location], Location] = lambda loc: loc,
    allowed: Sequence[str] | None = None,
) -> T:
    """`data` (found at `location` in the file) as a `model`; every problem becomes one line
    of the raised `error`. `keys` maps a validation location to the key it concerns, and
    `allowed` lists the file's keys, for models whose keys are reshaped before validation."""
    if not isinstance(data, Mapping):
        raise error(
            document.problem(location, f"expected a mapping, got {type(data).__name__}", entry)
        )
    try:
        return TypeAdapter(model).validate_python(dict(data))
    except ValidationError as exc:
        problems = []
        for detail in exc.errors():
            loc = keys(tuple(detail["loc"]))
            message = _message(detail, allowed or _allowed_keys(model))
            if not loc and message.startswith("key '"):
                # A cross-field rule names the key it concerns itself.
                key_name, _, message = message.removeprefix("key '").partition("': ")
                loc = (key_name,)
            key = ".".join(str(part) for part in loc) if loc else None
            line = document.line((*location, *loc))
            problems.append(_problem(document.path, line, entry, key, message))
        raise error("\n".join(dict.fromkeys(problems))) from None


def entries(
    document: YamlFile, list_key: str, error: type[Exception]
) -> Iterator[tuple[Location, Any]]:
    """The items of the document's top-level list `list_key`, with their locations."""
    data = document.data
    unknown = sorted(set(data) - {list_key}, key=str) if isinstance(data, Mapping) else []
    if unknown:
        raise error(
            _problem(
                document.path,
                document.line((unknown[0],)),
                None,
                str(unknown[0]),
                f"unknown key; allowed: {list_key}",
            )
        )
    items = data.get(list_key) if isinstance(data, Mapping) else None
    if not isinstance(items, list) or not items:
        raise error(
            _problem(
                document.path,
                document.line((list_key,)),
                None,
                list_key,
                "expected a non-empty list",
            )
        )
    for index, item in enumerate(items):
        yield (list_key, index), item


def entry_label(kind: str, item: Any, index: int, key: str = "name") -> str:
    """`sync 'crm_contacts'`, or `sync #2` for an entry without a usable name."""
    name = item.get(key) if isinstance(item, Mapping) else None
    return f"{kind} {name!r}" if isinstance(name, str) else f"{kind} #{index + 1}"


def unique_entries(
    document: YamlFile,
    list_key: str,
    model: type[T],
    error: type[Exception],
    kind: str,
    key: str = "name",
) -> list[T]:
    """Every item of the top-level list `list_key` as a `model`; an item whose `key` repeats
    an earlier one's is an error naming both lines."""
    specs: list[T] = []
    first_line: dict[Any, int] = {}
    for location, item in entries(document, list_key, error):
        label = entry_label(kind, item, int(location[-1]), key)
        spec = validate_entry(document, model, item, location, label, error)
        name = getattr(spec, key)
        if name in first_line:
            raise error(
                document.problem(
                    (*location, key),
                    f"{kind} defined twice (first on line {first_line[name]})",
                    label,
                    key,
                )
            )
        first_line[name] = document.line((*location, key))
        specs.append(spec)
    return specs
