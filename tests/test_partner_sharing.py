"""Partner sharing: the config's sharing section, golden DDL with privacy_policy, thresholded
views on DuckDB (a hypothesis property), and no leak between partners (manifest and data)."""

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.governance import share_plan
from assets.governance.partner_config import (
    PartnerConfig,
    PartnerConfigError,
    load_partner_config,
)
from assets.governance.share_views import bigquery_ddl, duckdb_ddl
from pipelines import share_cli
from pipelines.cli import main
from pipelines.generate import partners
from resources.analytics_hub import AnalyticsHub
from resources.gcp_access import GcpAccess, StaleEtagError
from resources.settings import REPO_ROOT
from tests.fake_gcp import FakeAnalyticsHub, FakeGcp, serve, serve_hub

METADATA = REPO_ROOT / "metadata"
GOLDEN = Path(__file__).parent / "fixtures" / "access"


def config_101() -> PartnerConfig:
    return load_partner_config(METADATA, "101")[0]


def test_golden_ddl() -> None:
    config = config_101()
    bigquery = ";\n\n".join(bigquery_ddl(config, "minato-prod", "prod_")) + ";\n"
    local = ";\n\n".join(duckdb_ddl(config)) + ";\n"
    assert bigquery == (GOLDEN / "share_101_bigquery.sql").read_text()
    assert local == (GOLDEN / "share_101_duckdb.sql").read_text()


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        (
            "    privacy_unit: customer_key\n",
            "config.yml:13: key 'sharing.privacy.privacy_unit': missing",
        ),
        ("  review_ticket: DATA-117\n", "config.yml:8: key 'sharing.review_ticket': missing"),
    ],
)
def test_a_share_without_privacy_unit_or_review_ticket_is_refused(
    tmp_path: Path, drop: str, expected: str
) -> None:
    folder = tmp_path / "partners" / "101"
    folder.mkdir(parents=True)
    text = (METADATA / "partners" / "101" / "config.yml").read_text()
    assert drop in text
    (folder / "config.yml").write_text(text.replace(drop, ""))
    with pytest.raises(PartnerConfigError, match=re.escape(expected)):
        load_partner_config(tmp_path, "101")


def _mart_table(conn: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    conn.execute("create schema public_101_kazaneya")
    conn.execute(
        "create table public_101_kazaneya.public_101_kazaneya_orders_v2 (shipping_prefecture "
        "varchar, order_status varchar, total_amount_jpy bigint, customer_key varchar)"
    )
    if rows:
        conn.executemany(
            "insert into public_101_kazaneya.public_101_kazaneya_orders_v2 values (?, ?, ?, ?)",
            rows,
        )


_rows = st.lists(
    st.tuples(
        st.sampled_from(["東京都", "大阪府", "北海道"]),
        st.sampled_from(["shipped", "pending"]),
        st.integers(0, 10_000),
        st.one_of(st.none(), st.sampled_from([f"c{i}" for i in range(12)])),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(rows=_rows, k=st.integers(2, 8))
def test_no_output_row_aggregates_fewer_than_k_privacy_units(rows: list[tuple], k: int) -> None:
    base = config_101()
    assert base.sharing is not None
    privacy = base.sharing.privacy.model_copy(update={"threshold": k})
    config = base.model_copy(
        update={"sharing": base.sharing.model_copy(update={"privacy": privacy})}
    )
    with duckdb.connect() as conn:
        _mart_table(conn, rows)
        for statement in duckdb_ddl(config):
            conn.execute(statement)
        shown = conn.execute(
            "select shipping_prefecture, order_status, orders, gmv_jpy "
            "from public_101_kazaneya_share.orders_by_prefecture"
        ).fetchall()
    groups: dict[tuple, list[tuple]] = {}
    for row in rows:
        if row[3] is not None:
            groups.setdefault(row[:2], []).append(row)
    for prefecture, status, orders, gmv in shown:
        members = groups[(prefecture, status)]
        assert len({r[3] for r in members}) >= k
        assert (orders, gmv) == (len(members), sum(r[2] for r in members))
    # Nothing above the threshold is withheld either.
    expected = {g for g, members in groups.items() if len({r[3] for r in members}) >= k}
    assert {(p, s) for p, s, _, _ in shown} == expected


def test_partner_a_never_reads_partner_b_over_the_manifest() -> None:
    """Each partner's shared models read only `cleansing` filtered to its own id, and its views
    read only its own dataset."""
    from assets.dbt_models.project import dbt_project

    manifest = json.loads(dbt_project().manifest_path.read_text())
    nodes = manifest["nodes"]
    for company in sorted(p.name for p in (METADATA / "partners").iterdir()):
        config = load_partner_config(METADATA, company)[0]
        shared = config.shared_models()
        assert shared, f"partner {company} shares nothing"
        for model in shared:
            (node,) = [n for n in nodes.values() if n["name"] == model]
            assert node["schema"] == config.dataset
            assert (
                node["raw_code"]
                .rstrip()
                .endswith(f"where {config.filter_column} = {config.company_id}")
            )
            parents = manifest["parent_map"][node["unique_id"]]
            assert all(nodes[p]["schema"] == "cleansing" for p in parents)
        for statement in bigquery_ddl(config, "minato-prod"):
            assert re.findall(r"FROM `minato-prod\.([a-z0-9_]+)\.", statement) == [config.dataset]
        for statement in duckdb_ddl(config)[1:]:
            assert re.findall(r"from ([a-z0-9_]+)\.", statement) == [config.dataset]


def test_partner_a_never_sees_partner_b_rows_on_data(tmp_path: Path) -> None:
    """Two partners' marts and share views built from the generator's SQL over one cleansing
    table: every row A can reach comes from A's rows, and B's customers never appear."""
    metadata = tmp_path / "metadata"
    shutil.copytree(METADATA, metadata)
    other = metadata / "partners" / "202"
    shutil.copytree(metadata / "partners" / "101", other)
    config_text = (other / "config.yml").read_text()
    (other / "config.yml").write_text(
        config_text.replace("company_id: 101", "company_id: 202")
        .replace("name: kazaneya", "name: yamabiko")
        .replace("listing: kazaneya", "listing: yamabiko")
    )
    with duckdb.connect() as conn:
        conn.execute("create schema cleansing")
        conn.execute(
            "create table cleansing.cleansing_orders as select i as order_id, "
            "case when i % 2 = 0 then 101 else 202 end as client_id, "
            "'c' || (i % 2) || '_' || (i % 7) as customer_key, "
            "(['shipped', 'pending'])[1 + i % 2] as order_status, i * 100 as total_amount_jpy, "
            "(['東京都', '大阪府'])[1 + i % 3 % 2] as shipping_prefecture, "
            "timestamp '2026-11-01' as ordered_at, timestamp '2026-11-02' as updated_at "
            "from range(200) t(i)"
        )
        for company in ("101", "202"):
            config = load_partner_config(metadata, company)[0]
            conn.execute(f"create schema {config.dataset}")
            for path, text in partners.render(metadata, company).items():
                if path.endswith(".sql") and "order_items" not in path:
                    sql = re.sub(r"\{\{ config\(.*?\) \}\}", "", text)
                    sql = re.sub(r"\{\{ ref\('(\w+)'\) \}\}", r"cleansing.\1", sql)
                    conn.execute(f"create table {config.dataset}.{Path(path).stem} as {sql}")
            for statement in duckdb_ddl(config):
                conn.execute(statement)
        a_keys = {
            r[0]
            for r in conn.execute(
                "select distinct customer_key "
                "from public_101_kazaneya.public_101_kazaneya_orders_v2"
            ).fetchall()
        }
        assert a_keys and all(key.startswith("c0_") for key in a_keys)
        shown = conn.execute(
            "select shipping_prefecture, order_status, orders, gmv_jpy "
            "from public_101_kazaneya_share.orders_by_prefecture order by 1, 2"
        ).fetchall()
        own = conn.execute(
            "select shipping_prefecture, order_status, count(*), sum(total_amount_jpy) "
            "from cleansing.cleansing_orders where client_id = 101 group by 1, 2 order by 1, 2"
        ).fetchall()
    assert shown and shown == own


TARGET = share_plan.Target("minato-prod", "asia-northeast1", "prod_")
LISTING = (
    "projects/minato-prod/locations/asia-northeast1/dataExchanges/minato_partners/listings/kazaneya"
)


def _share_fakes() -> tuple[FakeAnalyticsHub, FakeGcp, list[str]]:
    access = FakeGcp("minato-prod", "prod_")
    owner = {"role": "OWNER", "userByEmail": "minato@minato-prod.iam.gserviceaccount.com"}
    access.add_dataset("public_101_kazaneya", [owner])
    return FakeAnalyticsHub(), access, []


def test_share_apply_then_plan_is_empty_and_requests_match_the_snapshot() -> None:
    config = config_101()
    hub, access, ddl = _share_fakes()
    planned = share_plan.plan_share(config, TARGET, hub, access)
    assert [c.action for c in planned] == ["authorize", "create", "create", "grant"]
    made = share_plan.apply_share(config, TARGET, hub, access, ddl.append)
    assert [c.action for c in made] == ["authorize", "create", "create", "grant"]
    assert ddl == bigquery_ddl(config, "minato-prod", "prod_")
    snapshot = {
        "analytics_hub": hub.writes(),
        "bigquery": access.writes(),
    }
    assert snapshot == json.loads((GOLDEN / "share_101_requests.json").read_text())
    # The listing publishes only partner 101's share dataset, never the mart or anyone else's.
    assert hub.listings[LISTING]["bigquery_dataset"] == {
        "dataset": "projects/minato-prod/datasets/prod_public_101_kazaneya_share"
    }
    assert share_plan.plan_share(config, TARGET, hub, access) == []
    writes = len(hub.writes()) + len(access.writes())
    assert share_plan.apply_share(config, TARGET, hub, access, ddl.append) == []
    assert len(hub.writes()) + len(access.writes()) == writes


def test_share_converges_after_edits_and_concurrent_policy_changes() -> None:
    config = config_101()
    hub, access, ddl = _share_fakes()
    share_plan.apply_share(config, TARGET, hub, access, ddl.append)
    # Someone adds a subscriber by hand and edits the description; a role edit on the mart
    # dataset must keep the authorized view.
    hub.policies[LISTING]["bindings"][0]["members"].append("user:intruder@example.com")
    hub.listings[LISTING]["description"] = "edited"
    planned = {(c.action, c.detail) for c in share_plan.plan_share(config, TARGET, hub, access)}
    assert planned == {
        ("update", "description"),
        ("revoke", "roles/analyticshub.subscriber user:intruder@example.com (not in config)"),
    }

    def concurrent(resource: str) -> None:
        hub.policies[resource]["etag"] = "BwY-someone-else"

    hub.after_policy_read = concurrent
    messages: list[str] = []
    share_plan.apply_share(config, TARGET, hub, access, ddl.append, report=messages.append)
    assert messages == [f"{LISTING} changed while applying: read again and re-planned"]
    assert hub.policies[LISTING]["bindings"] == [
        {
            "role": "roles/analyticshub.subscriber",
            "members": ["group:data-team@kazaneya.example.com"],
        }
    ]
    assert share_plan.plan_share(config, TARGET, hub, access) == []
    view = {
        "view": {
            "projectId": "minato-prod",
            "datasetId": "prod_public_101_kazaneya_share",
            "tableId": "orders_v2",
        }
    }
    assert view in access.datasets["public_101_kazaneya"]["access"]


def test_the_listing_body_converts_to_the_analytics_hub_proto_and_back() -> None:
    """The resource sends these dicts through the real client types: nothing is lost."""
    from google.cloud import bigquery_analyticshub_v1 as hub

    from resources.analytics_hub import as_dict

    body = share_plan.desired_listing(config_101(), TARGET)
    assert as_dict(hub.Listing(body)) == body


def test_share_cli_plans_and_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    hub, access, ddl = _share_fakes()
    monkeypatch.setenv("MINATO_WAREHOUSE", "bigquery")
    monkeypatch.setenv("MINATO_BIGQUERY_PROJECT", "minato-prod")
    monkeypatch.setenv("MINATO_BIGQUERY_DATASET_PREFIX", "prod_")
    monkeypatch.setattr(share_cli, "apis", lambda where: (hub, access, ddl.append))
    runner = CliRunner()
    planned = runner.invoke(main, ["share", "plan", "--company", "101"])
    assert planned.exit_code == 0, planned.output
    assert "partner 101: 4 change(s)" in planned.output
    applied = runner.invoke(main, ["share", "apply"])
    assert applied.exit_code == 0, applied.output
    again = runner.invoke(main, ["share", "plan"])
    assert "0 change(s) to apply" in again.output


def test_share_refuses_a_partner_without_review_ticket(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata"
    (metadata / "partners" / "101").mkdir(parents=True)
    text = (METADATA / "partners" / "101" / "config.yml").read_text()
    (metadata / "partners" / "101" / "config.yml").write_text(
        text.replace("  review_ticket: DATA-117\n", "")
    )
    result = CliRunner().invoke(main, ["share", "plan", "--metadata", str(metadata)])
    assert result.exit_code == 1
    assert "config.yml:8: key 'sharing.review_ticket': missing" in result.output


def test_share_through_the_real_clients_against_the_fakes_over_the_wire() -> None:
    """AnalyticsHub (gRPC client of google-cloud-bigquery-analyticshub) and GcpAccess (HTTP)
    against the fakes: apply publishes, a second plan is empty."""
    config = config_101()
    hub, access, ddl = _share_fakes()
    with serve_hub(hub) as (hub_endpoint, calls), serve(access) as (http_endpoint, _):
        live_hub = AnalyticsHub(project="minato-prod", api_endpoint=hub_endpoint)
        live_access = GcpAccess(
            project="minato-prod", dataset_prefix="prod_", api_endpoint=http_endpoint
        )
        made = share_plan.apply_share(config, TARGET, live_hub, live_access, ddl.append)
        assert [c.action for c in made] == ["authorize", "create", "create", "grant"]
        assert share_plan.plan_share(config, TARGET, live_hub, live_access) == []
        stale = live_hub.get_iam_policy(LISTING)
        hub.policies[LISTING]["etag"] = "BwY-someone-else"
        with pytest.raises(StaleEtagError):  # ABORTED on the wire
            live_hub.set_iam_policy(LISTING, stale)
    assert hub.listings[LISTING] == share_plan.desired_listing(config, TARGET)
    assert hub.policies[LISTING]["bindings"] == [
        {
            "role": "roles/analyticshub.subscriber",
            "members": ["group:data-team@kazaneya.example.com"],
        }
    ]
    set_policy = [request for name, request in calls if name == "SetIamPolicy"]
    assert [request["resource"] for request in set_policy] == [LISTING, LISTING]
    assert all(request["policy"]["etag"] for request in set_policy)
