"""The access matrix: lint, plan, apply (ETags), review, against an in-memory fake of the APIs."""

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assets.governance import access_plan
from assets.governance.matrix import (
    COLUMNS,
    AccessMatrixError,
    business_today,
    load_buckets,
    load_matrix,
)
from pipelines import access_cli
from pipelines.cli import main
from resources.gcp_access import GcpAccess, MissingResourceError, StaleEtagError
from resources.warehouse.datasets import datasets
from tests.fake_gcp import FakeGcp, serve

TODAY = dt.date(2026, 11, 27)
FIXTURES = Path(__file__).parent / "fixtures" / "access"
AUTHORIZED_VIEW = {
    "view": {
        "projectId": "minato-test",
        "datasetId": "public_101_kazaneya_share",
        "tableId": "orders_v2",
    }
}
DEPLOYER = {"role": "OWNER", "userByEmail": "minato@minato-test.iam.gserviceaccount.com"}


def live() -> FakeGcp:
    """Every catalog dataset and bucket, as a fresh project has them: the deployer owns each
    dataset; role_sales already serves an authorized view."""
    fake = FakeGcp()
    for spec in datasets():
        fake.add_dataset(spec.name, [DEPLOYER])
    fake.datasets["role_sales"]["access"].append(AUTHORIZED_VIEW)
    for bucket in load_buckets():
        fake.add_bucket(bucket)
    return fake


def matrix_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "matrix.csv"
    path.write_text(",".join(COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_the_shipped_matrix_is_the_seeds_and_passes_the_lint() -> None:
    matrix = load_matrix()
    levels = {(g.resource, g.principal): g.role for g in matrix.grants}
    # The seed's example rows: role_x R / - / R, widetables R / R / R, workshop WS / WS / WS.
    assert levels[("role_engineer", "data")] == levels[("role_engineer", "engineer")] == "reader"
    assert ("role_engineer", "sales") not in levels
    assert {levels[("workshop", t)] for t in ("data", "sales", "engineer")} == {"strong_editor"}
    assert not [g for g in matrix.grants if g.resource.startswith("public_")]
    assert {"workshop", "public_common"} <= {spec.name for spec in datasets()}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("widetable,owner,data,x,", "unknown role 'owner'"),
        ("widetables,reader,data,x,", "unknown resource 'widetables'"),
        ("project,reader,data,x,", "never project-wide"),
        ("gs://nobody,reader,data,x,", "unknown resource 'gs://nobody'"),
        ("widetable,reader,allUsers,x,", "allUsers is public"),
        ("widetable,reader,allAuthenticatedUsers,x,", "allAuthenticatedUsers is public"),
        ("widetable,reader,marketing,x,", "unknown principal 'marketing'"),
        ("cleansing_secret,reader,sales,x,", "cleansing_secret holds PII: principal 'sales'"),
        ("cleansing_secret,reader,user:a@example.com,x,", "principal 'user:a@example.com' is not"),
        ("gs://minato-landing,reader,engineer,x,", "gs://minato-landing holds PII"),
        ("widetable,reader,data,,", "justification is empty"),
        ("widetable,reader,data,x,2027-02-30", "expiry '2027-02-30' is not a date"),
        ("widetable,reader,data,x", "expected 5 fields"),
    ],
)
def test_the_lint_refuses_a_bad_row_naming_its_line(tmp_path: Path, row: str, problem: str) -> None:
    path = matrix_file(tmp_path, "widetable,reader,sales,fine,", row)
    with pytest.raises(AccessMatrixError) as caught:
        load_matrix(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert problem in str(caught.value)


def test_a_refused_matrix_exits_non_zero_naming_the_row(tmp_path: Path) -> None:
    path = matrix_file(tmp_path, "cleansing_secret,reader,sales,curious,")
    for command in ("plan", "apply", "review"):
        result = CliRunner().invoke(main, ["access", command, "--matrix", str(path)])
        assert result.exit_code == 1
        assert f"{path}:2: cleansing_secret holds PII" in result.output


def test_apply_then_plan_is_empty_and_the_requests_match_the_snapshot() -> None:
    fake, matrix = live(), load_matrix()
    made = access_plan.apply(matrix, fake, TODAY)
    assert {c.action for c in made} == {"add"} and len(made) == len(matrix.grants)
    snapshot = FIXTURES / "apply_requests.json"
    assert fake.writes() == json.loads(snapshot.read_text())
    # The deployer's own OWNER entry is nobody's row: reported, never revoked unasked.
    again = [c for p in access_plan.plan(matrix, fake, TODAY) for c in p.changes]
    assert {c.action for c in again} == {"drift"}
    assert {c.member for c in again} == {"serviceAccount:" + DEPLOYER["userByEmail"]}
    writes = len(fake.writes())
    assert access_plan.apply(matrix, fake, TODAY) == []
    assert len(fake.writes()) == writes


def test_revoking_a_row_removes_the_grant_and_keeps_authorized_views(tmp_path: Path) -> None:
    fake = live()
    full = matrix_file(
        tmp_path,
        "role_sales,reader,data,maintains,",
        "role_sales,reader,sales,own marts,",
    )
    access_plan.apply(load_matrix(full), fake, TODAY)
    assert {"role": "READER", "groupByEmail": "sales@example.com"} in fake.datasets["role_sales"][
        "access"
    ]
    # The sales row is deleted and data becomes a strong editor: both edits keep the view.
    edited = matrix_file(tmp_path, "role_sales,strong_editor,data,maintains,")
    made = access_plan.apply(load_matrix(edited), fake, TODAY)
    assert {(c.action, c.role, c.member) for c in made} == {
        ("revoke", "READER", "group:sales@example.com"),
        ("revoke", "READER", "group:data@example.com"),
        ("add", "OWNER", "group:data@example.com"),
    }
    access = fake.datasets["role_sales"]["access"]
    assert AUTHORIZED_VIEW in access
    assert {"role": "OWNER", "groupByEmail": "data@example.com"} in access
    assert not [e for e in access if e.get("groupByEmail") == "sales@example.com"]


def test_an_out_of_band_grant_is_drift_and_revoked_only_when_asked(tmp_path: Path) -> None:
    fake = live()
    path = matrix_file(tmp_path, "widetable,reader,sales,seed,")
    stranger = {"role": "WRITER", "userByEmail": "mallory@example.com"}
    fake.datasets["widetable"]["access"].append(stranger)
    fake.buckets["minato-exports"]["bindings"].append(
        {"role": "roles/storage.objectViewer", "members": ["user:mallory@example.com"]}
    )
    matrix = load_matrix(path)
    drift = {
        (c.resource, c.member)
        for p in access_plan.plan(matrix, fake, TODAY)
        for c in p.changes
        if c.action == "drift" and "mallory" in c.member
    }
    assert drift == {
        ("widetable", "user:mallory@example.com"),
        ("gs://minato-exports", "user:mallory@example.com"),
    }
    access_plan.apply(matrix, fake, TODAY)
    assert stranger in fake.datasets["widetable"]["access"]
    access_plan.apply(matrix, fake, TODAY, revoke_drift=True)
    assert stranger not in fake.datasets["widetable"]["access"]
    assert fake.buckets["minato-exports"]["bindings"] == []
    assert fake.datasets["widetable"]["access"] == [
        {"role": "READER", "groupByEmail": "sales@example.com"}
    ]


def test_expired_grants_are_revoked_and_reviewed(tmp_path: Path) -> None:
    fake = live()
    path = matrix_file(
        tmp_path,
        "cleansing_secret,reader,data,incident,2026-12-10",
        "gs://minato-exports,weak_editor,sales,drop files,2026-11-26",
        "widetable,reader,sales,seed,",
    )
    matrix = load_matrix(path)
    access_plan.apply(matrix, fake, dt.date(2026, 11, 20))
    assert fake.buckets["minato-exports"]["bindings"] == [
        {"role": "roles/storage.objectCreator", "members": ["group:sales@example.com"]}
    ]
    result = access_plan.review(matrix, TODAY)
    assert [g.resource for g in result.readers] == ["cleansing_secret", "widetable"]
    assert [(g.resource, g.expiry) for g in result.expiring] == [
        ("cleansing_secret", dt.date(2026, 12, 10))
    ]
    assert [g.resource for g in result.expired] == ["gs://minato-exports"]
    made = access_plan.apply(matrix, fake, TODAY)
    assert [(c.action, c.resource, c.reason) for c in made] == [
        ("revoke", "gs://minato-exports", "line 3: expired 2026-11-26")
    ]
    assert fake.buckets["minato-exports"]["bindings"] == []


def test_a_concurrent_change_is_refused_by_its_etag_and_apply_replans(tmp_path: Path) -> None:
    fake = live()
    path = matrix_file(tmp_path, "workshop,strong_editor,sales,seed,")
    someone = {"role": "READER", "groupByEmail": "auditors@example.com"}

    def on_read(resource: str) -> None:
        if resource != "workshop":
            fake.after_read = on_read  # the fake fires a hook once: wait for workshop
            return
        # Someone else grants between our read and our write.
        fake.datasets["workshop"]["access"].append(someone)
        fake.datasets["workshop"]["etag"] = "etag-someone-else"

    fake.after_read = on_read
    messages: list[str] = []
    access_plan.apply(load_matrix(path), fake, TODAY, report=messages.append)
    patches = [r for r in fake.writes() if r["path"].endswith("/workshop")]
    assert len(patches) == 2
    assert patches[0]["headers"]["If-Match"] != "etag-someone-else"  # refused: stale
    assert patches[1]["headers"]["If-Match"] == "etag-someone-else"
    assert messages == ["workshop changed while applying: read again and re-planned"]
    access = fake.datasets["workshop"]["access"]
    assert someone in access  # the other change is kept, not overwritten
    assert {"role": "OWNER", "groupByEmail": "sales@example.com"} in access


def test_the_cli_plans_and_applies_against_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = live()
    monkeypatch.setattr(access_cli, "access_api", lambda: fake)
    path = matrix_file(tmp_path, "widetable,reader,sales,seed,")
    runner = CliRunner()
    planned = runner.invoke(main, ["access", "plan", "--matrix", str(path)])
    assert planned.exit_code == 0, planned.output
    assert "+ widetable: READER group:sales@example.com (line 2: seed)" in planned.output
    assert (
        "1 to add, 0 to revoke" in planned.output and "1 authorized view(s) kept" in planned.output
    )
    applied = runner.invoke(main, ["access", "apply", "--matrix", str(path)])
    assert applied.exit_code == 0 and "1 change(s) applied" in applied.output
    again = runner.invoke(main, ["access", "plan", "--matrix", str(path)])
    assert "0 to add, 0 to revoke" in again.output


def test_the_live_adapter_speaks_the_apis_through_the_real_clients(tmp_path: Path) -> None:
    """GcpAccess with google-cloud-bigquery and google-cloud-storage against the fake over
    HTTP: If-Match on the dataset, the etag in the bucket policy, 412 as StaleEtagError."""
    fake = FakeGcp("minato-prod", "prod_")
    fake.add_dataset("widetable", [DEPLOYER, AUTHORIZED_VIEW])
    fake.add_bucket("minato-exports")
    with serve(fake) as (endpoint, received):
        api = GcpAccess(project="minato-prod", dataset_prefix="prod_", api_endpoint=endpoint)
        access, etag = api.dataset_access("widetable")
        assert access == [DEPLOYER, AUTHORIZED_VIEW]
        reader = {"role": "READER", "groupByEmail": "sales@example.com"}
        api.set_dataset_access("widetable", [*access, reader], etag)
        with pytest.raises(StaleEtagError):
            api.set_dataset_access("widetable", access, etag)  # the ETag is stale now
        _, policy_etag = api.bucket_policy("minato-exports")
        viewer = {"role": "roles/storage.objectViewer", "members": ["group:sales@example.com"]}
        api.set_bucket_policy("minato-exports", [viewer], policy_etag)
        with pytest.raises(StaleEtagError):
            api.set_bucket_policy("minato-exports", [], policy_etag)
        with pytest.raises(MissingResourceError):
            api.dataset_access("workshop")
        with pytest.raises(MissingResourceError):
            api.bucket_policy("minato-landing")
    dataset = "/bigquery/v2/projects/minato-prod/datasets/prod_widetable"
    writes = [(r["method"], r["path"], r["if_match"], r["body"]) for r in received if r["body"]]
    assert writes[0] == ("PATCH", dataset, etag, {"access": [DEPLOYER, AUTHORIZED_VIEW, reader]})
    assert writes[2][:2] == ("PUT", "/storage/v1/b/minato-exports/iam")
    assert writes[2][3]["etag"] == policy_etag
    assert writes[2][3]["bindings"] == [viewer]
    assert fake.datasets["widetable"]["access"] == [DEPLOYER, AUTHORIZED_VIEW, reader]
    assert fake.buckets["minato-exports"]["bindings"] == [viewer]


def test_a_dataset_not_created_yet_is_reported_and_skipped(tmp_path: Path) -> None:
    fake = live()
    del fake.datasets["workshop"]
    path = matrix_file(tmp_path, "workshop,strong_editor,sales,seed,", "widetable,reader,sales,x,")
    plans = {p.resource: p for p in access_plan.plan(load_matrix(path), fake, TODAY)}
    assert plans["workshop"].missing and plans["workshop"].changes == []
    messages: list[str] = []
    made = access_plan.apply(load_matrix(path), fake, TODAY, report=messages.append)
    assert [(c.resource, c.member) for c in made] == [("widetable", "group:sales@example.com")]
    assert messages == ["workshop does not exist: skipped"]


def test_review_lists_pii_first_and_what_expires_soon(tmp_path: Path) -> None:
    today = business_today()
    soon, gone = today + dt.timedelta(days=10), today - dt.timedelta(days=1)
    path = matrix_file(
        tmp_path,
        "widetable,reader,sales,seed,",
        f"cleansing_secret,reader,data,incident,{soon}",
        f"workshop,strong_editor,engineer,hackathon,{gone}",
    )
    result = CliRunner().invoke(main, ["access", "review", "--matrix", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith(
        f"  PII cleansing_secret: reader data (group:data@example.com) until {soon}"
    )
    assert lines[2].startswith("  widetable: reader sales")
    assert f"  {soon} cleansing_secret: reader data" in lines
    assert lines[-1] == (
        f"Expired {gone}: workshop strong_editor engineer "
        "(the next `minato access apply` revokes it)"
    )
