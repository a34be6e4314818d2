"""dbt models' BigQuery costs on their materializations, read from a recorded dbt-bigquery
`run_results.json`, and the Dagster run id handed to dbt's job labels."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DagsterDbtCliRuntimeError

from assets.dbt_models.costs import (
    RUN_ID_VARIABLE,
    costs_by_model,
    run_id_for_dbt,
    stream_with_costs,
    with_costs,
)

FIXTURE = Path(__file__).parent / "fixtures" / "dbt_bigquery"
RUN_RESULTS = json.loads((FIXTURE / "run_results.json").read_text())
ORDERS_COSTS = {
    "bigquery_bytes_processed": 50331648,
    "bigquery_bytes_billed": 51380224,
    "bigquery_slot_ms": 15230,
    "bigquery_jobs": 1,
    "bigquery_job_id": "8d2c4b7a-0f3e-4c55-b1aa-6e9d2f0c1b23",
}


def test_costs_are_read_from_the_adapter_response_of_each_node() -> None:
    costs = costs_by_model(RUN_RESULTS)

    assert costs["model.minato.cleansing_orders"] == ORDERS_COSTS
    # A job that scanned nothing still reports its zeros; DuckDB's response reports nothing.
    assert costs["model.minato.cleansing_products"]["bigquery_bytes_billed"] == 0
    assert "model.minato.widetable_duckdb_only" not in costs
    assert costs["test.minato.not_null_cleansing_orders_order_id.3f2a1b"][
        "bigquery_bytes_billed"
    ] == (10485760)


def _output(unique_id: str) -> dg.Output:
    return dg.Output(None, output_name=unique_id.split(".")[-1], metadata={"unique_id": unique_id})


def test_each_output_gets_its_own_model_costs_and_other_events_pass_unchanged() -> None:
    check = dg.AssetCheckResult(passed=True, asset_key="cleansing_orders", check_name="not_null")
    events = [
        _output("model.minato.cleansing_orders"),
        check,
        _output("model.minato.widetable_duckdb_only"),
    ]

    orders, passed, widetable = with_costs(events, costs_by_model(RUN_RESULTS))

    assert {k: v.value for k, v in orders.metadata.items()} == {
        "unique_id": "model.minato.cleansing_orders",
        **ORDERS_COSTS,
    }
    assert passed is check
    assert widetable is events[2]


class _Invocation:
    """What `stream_with_costs` uses of dagster-dbt's DbtCliInvocation: the events, then
    run_results.json in the target path once dbt has exited."""

    def __init__(self, target_path: Path, events: list, error: Exception | None = None) -> None:
        self.target_path, self._events, self._error = target_path, events, error

    def stream(self):
        yield from self._events
        # dbt exits (and writes run_results.json) before dagster-dbt raises its error.
        (self.target_path / "run_results.json").write_text(json.dumps(RUN_RESULTS))
        if self._error is not None:
            raise self._error


def test_a_failed_build_still_yields_what_it_built_with_costs_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINATO_WAREHOUSE", "bigquery")
    error = DagsterDbtCliRuntimeError("dbt build failed")
    invocation = _Invocation(tmp_path, [_output("model.minato.cleansing_orders")], error)
    seen = []

    with pytest.raises(DagsterDbtCliRuntimeError):
        for event in stream_with_costs(invocation):  # type: ignore[arg-type]
            seen.append(event)

    [orders] = seen
    assert orders.metadata["bigquery_bytes_billed"].value == 51380224


def test_the_run_id_reaches_only_the_dbt_process_started_inside_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RUN_ID_VARIABLE, raising=False)

    with run_id_for_dbt("0f9e8d7c-run"):
        assert os.environ[RUN_ID_VARIABLE] == "0f9e8d7c-run"

    assert RUN_ID_VARIABLE not in os.environ


def test_on_duckdb_events_stream_as_dbt_emits_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is billed off BigQuery, so nothing waits for run_results.json."""
    monkeypatch.setenv("MINATO_WAREHOUSE", "duckdb")
    invocation = _Invocation(tmp_path, [_output("model.minato.cleansing_orders")])
    first = next(iter(stream_with_costs(invocation)))  # type: ignore[arg-type]
    assert not (tmp_path / "run_results.json").exists()
    assert "bigquery_bytes_billed" not in first.metadata
