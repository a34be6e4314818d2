"""The access matrix as code: `metadata/access/matrix.csv` and what it may name.

One row grants one role on one resource to one principal:

    resource,role,principal,justification,expiry
    workshop,strong_editor,sales,"Seed matrix: workshop WS / WS / WS",

- resource: a dataset of the catalog (`metadata/datasets.yml`) or `gs://<bucket>` of
  `metadata/access/buckets.yml`; never the project (least privilege per resource);
- role: the seed's levels, `reader` (R), `weak_editor` (WW), `strong_editor` (WS);
- principal: a team of `metadata/access/teams.yml` (the seed's Roles: data, sales, engineer),
  or one IAM member (`user:`, `group:`, `serviceAccount:`, `domain:`);
- expiry: the last Asia/Tokyo day the grant holds (empty: no end); `apply` revokes it after.

The lint refuses, naming the file and line: unknown roles, resources and teams, `allUsers` and
`allAuthenticatedUsers`, a grant on a PII dataset or bucket to a principal that is not a team
flagged `pii: true`, a missing justification, and a row given twice.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field

from assets.constants import BUSINESS_TIMEZONE
from resources.config_files import (
    StrictModel,
    entries,
    entry_label,
    identifier,
    read_yaml,
    validate_entry,
)
from resources.settings import REPO_ROOT
from resources.warehouse.datasets import datasets

ACCESS_DIR = REPO_ROOT / "metadata" / "access"
MATRIX_FILE = ACCESS_DIR / "matrix.csv"
COLUMNS = ("resource", "role", "principal", "justification", "expiry")
BUCKET_SCHEME = "gs://"

# The seed's levels and what each is on a BigQuery dataset (access entry role) and on a bucket
# (IAM role). A strong editor owns the dataset (creates, replaces and shares its own tables, as
# in the seed's workshop); a weak editor writes data but cannot change access.
ROLES: dict[str, tuple[str, str]] = {
    "reader": ("READER", "roles/storage.objectViewer"),
    "weak_editor": ("WRITER", "roles/storage.objectCreator"),
    "strong_editor": ("OWNER", "roles/storage.objectAdmin"),
}
MEMBER_KINDS = ("user", "group", "serviceAccount", "domain")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


class AccessMatrixError(ValueError):
    """A matrix, team or bucket file that cannot be applied; one line per problem."""


class Team(StrictModel):
    name: Annotated[str, identifier("team name")]
    description: str = Field(min_length=1)
    members: list[str] = Field(min_length=1)
    pii: bool


class Bucket(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
    description: str = Field(min_length=1)
    pii: bool


@dataclass(frozen=True)
class Grant:
    """One row of the matrix, its principal resolved to IAM members."""

    line: int
    resource: str  # a dataset name, or gs://<bucket>
    role: str
    principal: str
    members: tuple[str, ...]
    justification: str
    expiry: dt.date | None

    @property
    def is_bucket(self) -> bool:
        return self.resource.startswith(BUCKET_SCHEME)

    @property
    def api_role(self) -> str:
        """The role as the resource's API spells it (dataset access role or bucket IAM role)."""
        return ROLES[self.role][1 if self.is_bucket else 0]

    def expired(self, today: dt.date) -> bool:
        return self.expiry is not None and self.expiry < today


@dataclass(frozen=True)
class Matrix:
    path: Path
    grants: tuple[Grant, ...]
    teams: dict[str, Team]
    pii_resources: frozenset[str]

    @property
    def resources(self) -> list[str]:
        return sorted({g.resource for g in self.grants})

    def managed_members(self) -> set[str]:
        """Members the matrix speaks for: an undeclared grant to one of them is revoked; a
        grant to anyone else is drift (reported, revoked only when asked)."""
        members = {m for team in self.teams.values() for m in team.members}
        return members | {m for g in self.grants for m in g.members}


def business_today() -> dt.date:
    return dt.datetime.now(ZoneInfo(BUSINESS_TIMEZONE)).date()


def _load_list(path: Path, key: str, model: type, kind: str) -> dict:
    document = read_yaml(path, AccessMatrixError)
    found = {}
    for location, item in entries(document, key, AccessMatrixError):
        label = entry_label(kind, item, int(location[-1]))
        spec = validate_entry(document, model, item, location, label, AccessMatrixError)
        if spec.name in found:
            raise AccessMatrixError(document.problem(location, "defined twice", label, "name"))
        found[spec.name] = spec
    return found


@cache
def load_teams(path: Path = ACCESS_DIR / "teams.yml") -> dict[str, Team]:
    teams = _load_list(path, "teams", Team, "team")
    for team in teams.values():
        problems = [_member_problem(m) for m in team.members]
        if any(problems):
            raise AccessMatrixError(f"{path}: team {team.name!r}: {next(p for p in problems if p)}")
    return teams


@cache
def load_buckets(path: Path = ACCESS_DIR / "buckets.yml") -> dict[str, Bucket]:
    return _load_list(path, "buckets", Bucket, "bucket")


def _member_problem(member: str) -> str | None:
    if member in PUBLIC_MEMBERS:
        return f"{member} is public: grants go to named teams and members only"
    kind, _, email = member.partition(":")
    if kind not in MEMBER_KINDS or not email or any(c in email for c in " ,;\"'"):
        return (
            f"unknown principal {member!r}: a team or {', '.join(k + ':…' for k in MEMBER_KINDS)}"
        )
    return None


def load_matrix(
    path: Path | str = MATRIX_FILE,
    *,
    teams: dict[str, Team] | None = None,
    buckets: dict[str, Bucket] | None = None,
) -> Matrix:
    """Read and lint the matrix; every problem is one line `file:line: problem`."""
    path = Path(path)
    teams = load_teams() if teams is None else teams
    buckets = load_buckets() if buckets is None else buckets
    catalog = {spec.name: spec.pii for spec in datasets()}
    known = catalog | {BUCKET_SCHEME + b.name: b.pii for b in buckets.values()}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessMatrixError(f"{path}: cannot read the matrix: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise AccessMatrixError(f"{path}:1: the header must be {','.join(COLUMNS)}")
    problems: list[str] = []
    grants: list[Grant] = []
    first: dict[tuple[str, str, str], int] = {}
    for row in reader:
        line = reader.line_num
        problem = _row_problem(row, teams, known)
        if problem:
            problems.append(f"{path}:{line}: {problem}")
            continue
        key = (row["resource"], row["role"], row["principal"])
        if key in first:
            problems.append(f"{path}:{line}: the same grant as line {first[key]}")
            continue
        first[key] = line
        expiry = row["expiry"].strip()
        principal = row["principal"]
        members = tuple(teams[principal].members) if principal in teams else (principal,)
        grants.append(
            Grant(
                line,
                row["resource"],
                row["role"],
                principal,
                members,
                row["justification"].strip(),
                dt.date.fromisoformat(expiry) if expiry else None,
            )
        )
    if problems:
        raise AccessMatrixError("\n".join(problems))
    pii = frozenset(name for name, flagged in known.items() if flagged)
    return Matrix(path, tuple(grants), teams, pii)


def _row_problem(row: dict, teams: dict[str, Team], known: dict[str, bool]) -> str | None:
    if None in row or any(row.get(c) is None for c in COLUMNS):
        return f"expected {len(COLUMNS)} fields: {','.join(COLUMNS)}"
    resource, role, principal = (row[c].strip() for c in ("resource", "role", "principal"))
    if resource not in known:
        if resource in {"project", "*"} or resource.startswith("projects/"):
            return f"resource {resource!r}: grants are per dataset or bucket, never project-wide"
        return (
            f"unknown resource {resource!r}: a dataset of metadata/datasets.yml "
            "or gs://<bucket> of metadata/access/buckets.yml"
        )
    if role not in ROLES:
        return f"unknown role {role!r}; known: {', '.join(ROLES)}"
    if principal not in teams:
        problem = _member_problem(principal)
        if problem:
            return problem
    if known[resource] and not (principal in teams and teams[principal].pii):
        return (
            f"{resource} holds PII: principal {principal!r} is not a team flagged "
            "pii: true in metadata/access/teams.yml"
        )
    if not row["justification"].strip():
        return "justification is empty: say why the grant exists"
    expiry = row["expiry"].strip()
    if expiry:
        try:
            dt.date.fromisoformat(expiry)
        except ValueError:
            return f"expiry {expiry!r} is not a date (YYYY-MM-DD)"
    row.update(resource=resource, role=role, principal=principal)
    return None
