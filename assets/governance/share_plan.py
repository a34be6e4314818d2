"""`minato share plan | apply`: each partner's listing, as its config.yml's `sharing` says.

Per partner with a sharing section, in this order:

1. the thresholded views (`share_views.bigquery_ddl`; CREATE OR REPLACE, run on every apply);
2. each view authorized on the partner's mart dataset (an access entry `{"view": …}` written
   with the dataset's ETag; other entries are kept);
3. the data exchange (created if missing);
4. the listing: it publishes only `public_<id>_<name>_share`, with query results that cannot
   be exported, and names the data-review ticket;
5. who may subscribe: the listing's `roles/analyticshub.subscriber` members are exactly the
   config's subscribers (written with the policy's ETag; other roles are kept).

A write refused for a stale ETag is read, planned and written again (up to three times).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from assets.governance.partner_config import PartnerConfig, Sharing
from assets.governance.share_views import bigquery_ddl
from resources.analytics_hub import AnalyticsHubApi
from resources.gcp_access import AccessApi, StaleEtagError

SUBSCRIBER = "roles/analyticshub.subscriber"
ATTEMPTS = 3


@dataclass(frozen=True)
class Target:
    """Where a partner's share lives."""

    project: str
    location: str = "asia-northeast1"
    dataset_prefix: str = ""

    def dataset(self, name: str) -> str:
        return f"{self.dataset_prefix}{name}"


@dataclass(frozen=True)
class ShareChange:
    action: str  # authorize | create | update | grant | revoke
    target: str
    detail: str

    def __str__(self) -> str:
        return f"{self.action} {self.target}: {self.detail}"


def _sharing(config: PartnerConfig) -> Sharing:
    if config.sharing is None:
        raise ValueError(f"partner {config.company_id} has no sharing section")
    return config.sharing


def exchange_name(config: PartnerConfig, target: Target) -> str:
    parent = f"projects/{target.project}/locations/{target.location}"
    return f"{parent}/dataExchanges/{_sharing(config).exchange}"


def listing_name(config: PartnerConfig, target: Target) -> str:
    return f"{exchange_name(config, target)}/listings/{_sharing(config).listing}"


def desired_listing(config: PartnerConfig, target: Target) -> dict:
    sharing = _sharing(config)
    privacy = sharing.privacy
    dataset = target.dataset(config.share_dataset)
    return {
        "display_name": f"{config.name} ({config.company_id})",
        "description": (
            f"Minato partner share for company {config.company_id}. Data review "
            f"{sharing.review_ticket}. Every result aggregates at least {privacy.threshold} "
            f"distinct {privacy.privacy_unit}."
        ),
        "bigquery_dataset": {"dataset": f"projects/{target.project}/datasets/{dataset}"},
        "restricted_export_config": {"enabled": True, "restrict_query_result": True},
    }


def _view_entries(config: PartnerConfig, target: Target) -> list[dict]:
    dataset = target.dataset(config.share_dataset)
    return [
        {
            "view": {
                "projectId": target.project,
                "datasetId": dataset,
                "tableId": model.removeprefix(f"{config.dataset}_"),
            }
        }
        for model in config.shared_models()
    ]


def _authorize(config: PartnerConfig, target: Target, access: AccessApi) -> tuple[list, str, list]:
    """(live entries, etag, view entries missing from the mart dataset)."""
    live, etag = access.dataset_access(config.dataset)
    missing = [e for e in _view_entries(config, target) if e not in live]
    return live, etag, missing


def _subscribers(policy: dict) -> set[str]:
    return {m for b in policy.get("bindings", []) if b["role"] == SUBSCRIBER for m in b["members"]}


def plan_share(
    config: PartnerConfig, target: Target, hub: AnalyticsHubApi, access: AccessApi
) -> list[ShareChange]:
    sharing = _sharing(config)
    changes: list[ShareChange] = []
    for entry in _authorize(config, target, access)[2]:
        view = entry["view"]
        changes.append(
            ShareChange(
                "authorize",
                config.dataset,
                f"view {view['datasetId']}.{view['tableId']} may read the mart",
            )
        )
    exchange = exchange_name(config, target)
    if hub.get_data_exchange(exchange) is None:
        changes.append(ShareChange("create", exchange, "data exchange"))
    listing = listing_name(config, target)
    live = hub.get_listing(listing)
    wanted = desired_listing(config, target)
    if live is None:
        changes.append(ShareChange("create", listing, f"listing of {wanted['bigquery_dataset']}"))
        present: set[str] = set()
    else:
        fields = [k for k, v in wanted.items() if live.get(k) != v]
        if fields:
            changes.append(ShareChange("update", listing, ", ".join(fields)))
        present = _subscribers(hub.get_iam_policy(listing))
    for member in sorted(set(sharing.subscribers) - present):
        changes.append(ShareChange("grant", listing, f"{SUBSCRIBER} {member}"))
    for member in sorted(present - set(sharing.subscribers)):
        changes.append(ShareChange("revoke", listing, f"{SUBSCRIBER} {member} (not in config)"))
    return changes


def _retrying(action: Callable[[], None], report: Callable[[str], None], what: str) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            action()
            return
        except StaleEtagError:
            if attempt == ATTEMPTS:
                raise
            report(f"{what} changed while applying: read again and re-planned")


def apply_share(
    config: PartnerConfig,
    target: Target,
    hub: AnalyticsHubApi,
    access: AccessApi,
    run_ddl: Callable[[str], None],
    report: Callable[[str], None] = lambda _: None,
) -> list[ShareChange]:
    """Make the partner's share match its config; a second run changes nothing but re-running
    the idempotent view DDL."""
    sharing = _sharing(config)
    for statement in bigquery_ddl(config, target.project, target.dataset_prefix):
        run_ddl(statement)
    made: list[ShareChange] = []

    def authorize() -> None:
        live, etag, missing = _authorize(config, target, access)
        if missing:
            access.set_dataset_access(config.dataset, live + missing, etag)
            made.extend(
                ShareChange("authorize", config.dataset, f"view {e['view']['tableId']}")
                for e in missing
            )

    _retrying(authorize, report, config.dataset)
    exchange = exchange_name(config, target)
    if hub.get_data_exchange(exchange) is None:
        parent, _, exchange_id = exchange.rpartition("/dataExchanges/")
        hub.create_data_exchange(
            parent, exchange_id, {"display_name": exchange_id, "description": "Minato partners"}
        )
        made.append(ShareChange("create", exchange, "data exchange"))
    listing = listing_name(config, target)
    wanted = desired_listing(config, target)
    live = hub.get_listing(listing)
    if live is None:
        hub.create_listing(exchange, sharing.listing, wanted)
        made.append(ShareChange("create", listing, "listing"))
    else:
        fields = [k for k, v in wanted.items() if live.get(k) != v]
        if fields:
            hub.update_listing(listing, {k: wanted[k] for k in fields}, fields)
            made.append(ShareChange("update", listing, ", ".join(fields)))

    def subscribers() -> None:
        policy = hub.get_iam_policy(listing)
        if _subscribers(policy) == set(sharing.subscribers):
            return
        others = [b for b in policy.get("bindings", []) if b["role"] != SUBSCRIBER]
        binding = {"role": SUBSCRIBER, "members": sorted(sharing.subscribers)}
        written = {"bindings": [*others, binding]}
        if "etag" in policy:
            written["etag"] = policy["etag"]
        hub.set_iam_policy(listing, written)
        made.append(ShareChange("grant", listing, f"{SUBSCRIBER}: {', '.join(binding['members'])}"))

    _retrying(subscribers, report, listing)
    return made
