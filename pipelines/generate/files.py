"""Write generated files, or check that the files on disk are exactly what would be written.

A generator owns its output folders: there, a file whose first line carries the generated mark
and that the generator no longer produces is stale (removed on write, reported by --check).
Hand-written files without the mark are left alone.
"""

from collections.abc import Iterable, Mapping
from pathlib import Path

from pipelines.generate.render import GENERATED_MARK


def _generated_files(root: Path, folders: Iterable[str]) -> set[str]:
    found = set()
    for folder in folders:
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in directory.rglob("*"):
            if path.is_file():
                with path.open(encoding="utf-8", errors="replace") as f:
                    if GENERATED_MARK in f.readline():
                        found.add(path.relative_to(root).as_posix())
    return found


def differences(root: Path, files: Mapping[str, str], folders: Iterable[str]) -> list[str]:
    """What --check reports: missing, edited or stale generated files (sorted)."""
    problems = []
    for relative, text in sorted(files.items()):
        path = root / relative
        if not path.exists():
            problems.append(f"missing: {relative}")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"differs from its inputs (stale or edited by hand): {relative}")
    for relative in sorted(_generated_files(root, folders) - files.keys()):
        problems.append(f"no longer generated (stale): {relative}")
    return problems


def write(root: Path, files: Mapping[str, str], folders: Iterable[str]) -> list[str]:
    """Write what changed, remove stale generated files; returns the paths touched."""
    touched = []
    for relative, text in sorted(files.items()):
        path = root / relative
        data = text.encode("utf-8")
        if path.exists() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        touched.append(relative)
    for relative in sorted(_generated_files(root, folders) - files.keys()):
        (root / relative).unlink()
        touched.append(relative)
    return touched
