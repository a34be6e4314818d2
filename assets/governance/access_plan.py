"""`minato access plan | apply | review`: the matrix against the live dataset and bucket grants.

Every dataset of the catalog and every bucket of `buckets.yml` is managed, so a dataset nobody
may read internally (`public_common`) is checked too. For each resource, a live grant that the
matrix does not declare is

- kept, never touched, when it is an authorized view, routine or dataset (Terraform's
  authoritative dataset IAM removes those: terraform-provider-google#11218);
- revoked when it goes to a member the matrix speaks for (a team member, or a principal of any
  row): a deleted row or an expired one;
- reported as drift otherwise (granted outside the matrix); `apply --revoke-drift` revokes it.

`apply` writes each resource once, with the ETag it read; if the resource changed meanwhile the
write is refused, and the resource is read and planned again (up to three times).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from assets.governance.matrix import BUCKET_SCHEME, Grant, Matrix, load_buckets
from resources.gcp_access import AccessApi, MissingResourceError, StaleEtagError
from resources.warehouse.datasets import datasets

# Dataset access entries that grant to a member, and how IAM spells the member.
_MEMBER_KEYS = {
    "userByEmail": "user",
    "groupByEmail": "group",
    "domain": "domain",
    "specialGroup": "specialGroup",
    "iamMember": "iamMember",
}
_ENTRY_KEYS = {"user": "userByEmail", "serviceAccount": "userByEmail", "group": "groupByEmail"}
ATTEMPTS = 3


@dataclass(frozen=True)
class Change:
    action: str  # add | revoke | drift
    resource: str
    role: str  # as the API spells it
    member: str
    reason: str

    def __str__(self) -> str:
        sign = {"add": "+", "revoke": "-", "drift": "!"}[self.action]
        return f"{sign} {self.resource}: {self.role} {self.member} ({self.reason})"


@dataclass
class ResourcePlan:
    resource: str
    etag: str
    live: list[dict]  # dataset access entries, or bucket bindings
    changes: list[Change] = field(default_factory=list)
    authorized: int = 0  # authorized views/routines/datasets kept as they are
    missing: bool = False  # the resource does not exist: nothing planned

    def to_write(self, revoke_drift: bool) -> list[Change]:
        return [
            c
            for c in self.changes
            if c.action in {"add", "revoke"} or (revoke_drift and c.action == "drift")
        ]


def entry_member(entry: dict) -> str | None:
    """`group:data@example.com` for a member entry; None for an authorized view/routine/dataset."""
    for key, kind in _MEMBER_KEYS.items():
        if key in entry:
            value = entry[key]
            if kind == "user" and value.endswith(".gserviceaccount.com"):
                kind = "serviceAccount"
            return value if kind == "iamMember" else f"{kind}:{value}"
    return None


def member_entry(role: str, member: str) -> dict:
    kind, _, value = member.partition(":")
    if kind in _ENTRY_KEYS:
        return {"role": role, _ENTRY_KEYS[kind]: value}
    if kind in {"domain", "specialGroup"}:
        return {"role": role, kind: value}
    return {"role": role, "iamMember": member}


def managed_resources() -> list[str]:
    return [spec.name for spec in datasets()] + [BUCKET_SCHEME + b for b in load_buckets()]


def _live_grants(resource: str, live: list[dict]) -> tuple[set[tuple[str, str]], int]:
    if resource.startswith(BUCKET_SCHEME):
        # Conditional bindings are someone's deliberate exception: kept like authorized views.
        plain = [b for b in live if not b.get("condition")]
        return {(b["role"], m) for b in plain for m in b.get("members", [])}, len(live) - len(plain)
    grants, authorized = set(), 0
    for entry in live:
        member = entry_member(entry)
        if member is None:
            authorized += 1
        else:
            grants.add((entry["role"], member))
    return grants, authorized


def plan_resource(
    matrix: Matrix, resource: str, live: list[dict], etag: str, today: dt.date
) -> ResourcePlan:
    rows = [g for g in matrix.grants if g.resource == resource]
    wanted: dict[tuple[str, str], Grant] = {
        (g.api_role, m): g for g in rows if not g.expired(today) for m in g.members
    }
    expired = {(g.api_role, m): g for g in rows if g.expired(today) for m in g.members}
    present, authorized = _live_grants(resource, live)
    managed = matrix.managed_members()
    plan = ResourcePlan(resource, etag, live, authorized=authorized)
    for role, member in sorted(set(wanted) - present):
        grant = wanted[role, member]
        plan.changes.append(
            Change("add", resource, role, member, f"line {grant.line}: {grant.justification}")
        )
    for role, member in sorted(present - set(wanted)):
        if (role, member) in expired:
            reason = f"line {expired[role, member].line}: expired {expired[role, member].expiry}"
            plan.changes.append(Change("revoke", resource, role, member, reason))
        elif member in managed:
            plan.changes.append(Change("revoke", resource, role, member, "not in the matrix"))
        else:
            plan.changes.append(
                Change("drift", resource, role, member, "granted outside the matrix")
            )
    return plan


def _read(api: AccessApi, resource: str) -> tuple[list[dict], str]:
    if resource.startswith(BUCKET_SCHEME):
        return api.bucket_policy(resource.removeprefix(BUCKET_SCHEME))
    return api.dataset_access(resource)


def plan(matrix: Matrix, api: AccessApi, today: dt.date) -> list[ResourcePlan]:
    """One plan per managed resource; one that does not exist is marked `missing` (create
    the catalog's datasets first), and its grants wait for it."""
    plans = []
    for resource in managed_resources():
        try:
            live, etag = _read(api, resource)
        except MissingResourceError:
            plans.append(ResourcePlan(resource, "", [], missing=True))
            continue
        plans.append(plan_resource(matrix, resource, live, etag, today))
    return plans


def _written(plan: ResourcePlan, changes: list[Change]) -> list[dict]:
    """The resource's new access list or bindings: the live one with `changes` made."""
    drop = {(c.role, c.member) for c in changes if c.action != "add"}
    add = [(c.role, c.member) for c in changes if c.action == "add"]
    if plan.resource.startswith(BUCKET_SCHEME):
        bindings: dict[str, list[str]] = {}
        kept = [b for b in plan.live if b.get("condition")]
        for binding in plan.live:
            if binding.get("condition"):
                continue
            for member in binding.get("members", []):
                if (binding["role"], member) not in drop:
                    bindings.setdefault(binding["role"], []).append(member)
        for role, member in add:
            bindings.setdefault(role, []).append(member)
        return kept + [{"role": r, "members": sorted(m)} for r, m in sorted(bindings.items())]
    kept = [e for e in plan.live if (e.get("role"), entry_member(e)) not in drop]
    return kept + [member_entry(role, member) for role, member in add]


def apply(
    matrix: Matrix,
    api: AccessApi,
    today: dt.date,
    *,
    revoke_drift: bool = False,
    report: Callable[[str], None] = lambda _: None,
) -> list[Change]:
    """Make every resource match the matrix; returns the changes made. Idempotent: a second
    run changes nothing."""
    made: list[Change] = []
    for resource in managed_resources():
        for attempt in range(1, ATTEMPTS + 1):
            try:
                live, etag = _read(api, resource)
            except MissingResourceError:
                report(f"{resource} does not exist: skipped")
                break
            resource_plan = plan_resource(matrix, resource, live, etag, today)
            changes = resource_plan.to_write(revoke_drift)
            if not changes:
                break
            written = _written(resource_plan, changes)
            try:
                if resource.startswith(BUCKET_SCHEME):
                    api.set_bucket_policy(resource.removeprefix(BUCKET_SCHEME), written, etag)
                else:
                    api.set_dataset_access(resource, written, etag)
            except StaleEtagError:
                if attempt == ATTEMPTS:
                    raise
                report(f"{resource} changed while applying: read again and re-planned")
                continue
            made.extend(changes)
            break
    return made


@dataclass(frozen=True)
class Review:
    readers: list[Grant]  # current grants, PII resources first
    expiring: list[Grant]  # expire within `days`
    expired: list[Grant]  # past their expiry: the next apply revokes them


def review(matrix: Matrix, today: dt.date, days: int = 30) -> Review:
    current = [g for g in matrix.grants if not g.expired(today)]
    readers = sorted(
        current, key=lambda g: (g.resource not in matrix.pii_resources, g.resource, g.principal)
    )
    horizon = today + dt.timedelta(days=days)
    expiring = sorted(
        (g for g in current if g.expiry is not None and g.expiry <= horizon),
        key=lambda g: (g.expiry, g.resource),
    )
    expired = [g for g in matrix.grants if g.expired(today)]
    return Review(readers, expiring, expired)
