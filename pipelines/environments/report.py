"""The diff as Markdown for a pull request comment: a summary table, then one section per
model that differs. Deterministic: models in unique-id order, samples in key order, no times."""

from __future__ import annotations

from pipelines.environments.data_diff import ColumnProfile, ModelDiff

_MAX_TEXT = 60


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def _schema_summary(diff: ModelDiff) -> str:
    parts = [f"+{c}" for c, _ in diff.columns_added]
    parts += [f"−{c}" for c, _ in diff.columns_removed]
    parts += [f"{c}: {a}→{b}" for c, a, b in diff.types_changed]
    return ", ".join(parts) or "same"


def _profile_cells(profile: ColumnProfile) -> list[str]:
    return [str(profile.nulls), str(profile.distinct), _cell(profile.min), _cell(profile.max)]


def _section(diff: ModelDiff) -> list[str]:
    lines = [f"### `{diff.table}`", ""]
    if diff.new:
        return [*lines, f"New model: {diff.rows_environment:,} rows.", ""]
    lines.append(
        f"Rows: {diff.rows_production:,} in production, {diff.rows_environment:,} here. "
        + (
            f"Key: `{', '.join(diff.key)}`."
            if diff.key
            else "No declared key: rows compared whole."
        )
    )
    lines.append("")
    for column, data_type in diff.columns_added:
        lines.append(f"- column `{column}` added ({data_type})")
    for column, data_type in diff.columns_removed:
        lines.append(f"- column `{column}` removed ({data_type})")
    for column, before, after in diff.types_changed:
        lines.append(f"- column `{column}`: type {before} → {after}")
    lines.append(
        f"- rows added: {diff.added:,}; removed: {diff.removed:,}"
        + (f"; changed: {diff.changed:,}" if diff.changed is not None else "")
    )
    for column, count in sorted(diff.changed_by_column.items()):
        lines.append(f"  - `{column}` changed in {count:,} rows")
    lines.append("")
    profiled = {c: p for c, p in diff.profiles.items() if p[0] != p[1]}
    if profiled:
        lines += [
            "| column | nulls | distinct | min | max |",
            "|---|---|---|---|---|",
        ]
        for column, (before, after) in profiled.items():
            pairs = zip(_profile_cells(before), _profile_cells(after), strict=True)
            cells = [a if a == b else f"{a} → {b}" for a, b in pairs]
            lines.append(f"| `{column}` | " + " | ".join(cells) + " |")
        lines.append("")
    key = ", ".join(diff.key)
    for title, samples in (("added", diff.samples_added), ("removed", diff.samples_removed)):
        if samples:
            keys = "; ".join("(" + ", ".join(_cell(v) for v in s) + ")" for s in samples)
            lines += [f"Sample keys {title} ({key}): {keys}", ""]
    if diff.samples_changed:
        lines += [f"| {key} | column | production | here |", "|---|---|---|---|"]
        for key_values, column, before, after in diff.samples_changed:
            shown = ", ".join(_cell(v) for v in key_values)
            lines.append(f"| {shown} | `{column}` | {_cell(before)} | {_cell(after)} |")
        lines.append("")
    return lines


def markdown(name: str, source: str, cloned: int, diffs: list[ModelDiff]) -> str:
    title = f"## Data diff: `{name}` against `{source}`"
    if not diffs:
        return f"{title}\n\nNo dbt model changed: nothing was built or compared.\n"
    differing = [d for d in diffs if d.differs]
    lines = [
        title,
        "",
        f"{len(diffs)} model(s) built from the change and its descendants, "
        f"{len(differing)} differ from {source}; {cloned} parent table(s) cloned.",
        "",
        "| model | rows | added | removed | changed | schema |",
        "|---|---|---|---|---|---|",
    ]
    for diff in diffs:
        rows = (
            f"new: {diff.rows_environment:,}"
            if diff.new
            else f"{diff.rows_production:,} → {diff.rows_environment:,}"
        )
        changed = "—" if diff.new or diff.changed is None else f"{diff.changed:,}"
        added, removed = ("—", "—") if diff.new else (f"{diff.added:,}", f"{diff.removed:,}")
        schema = "new" if diff.new else _schema_summary(diff)
        lines.append(f"| `{diff.table}` | {rows} | {added} | {removed} | {changed} | {schema} |")
    lines.append("")
    for diff in differing:
        lines += _section(diff)
    return "\n".join(lines).rstrip() + "\n"
