"""BigQuery ML anomaly detection: the exact SQL, that it parses, and the statements a run sends."""

import datetime as dt
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from google.cloud import bigquery
from sqlglot import exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.tokens import TokenType

from assets.monitoring.bigquery_ml import (
    BigQueryJobs,
    create_model_sql,
    detect_anomalies_bigquery,
    detect_anomalies_sql,
    detection_query_sql,
    latest_day_sql,
    model_reference,
    trained_series_sql,
    training_query_sql,
)
from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec, series_sql
from resources.identifiers import InvalidIdentifierError

SOURCE = "`acme-data.prod_monitoring.monitoring_daily_metrics`"
FEEDBACK = "`acme-data.prod_monitoring.anomaly_feedback`"
MODEL = "`acme-data.prod_monitoring.anomaly_model_page_clicks`"
START = dt.date(2025, 5, 4)
# The demo metrics' mart (assets/monitoring/metric_definitions).
DAILY_METRICS = {
    "schema": "monitoring",
    "model": "monitoring_daily_metrics",
    "timestamp_column": "metric_day",
    "value": "SUM(value)",
    "series": ("series_id",),
}
PAGE_CLICKS = MetricSpec(
    name="page_clicks",
    description="clicks",
    direction="spike",
    where="metric = 'page_clicks'",
    **DAILY_METRICS,
)

SERIES = """\
SELECT
  COALESCE(CAST(series_id AS STRING), '(null)') AS series_id,
  CAST(metric_day AS DATE) AS metric_day,
  SUM(value) AS value
FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
WHERE metric = 'page_clicks'
GROUP BY 1, 2"""

# Two years before the detection window, without confirmed incidents, series with 28+ days.
TRAINING_QUERY = f"""\
SELECT series_id, metric_day, value
FROM (
{textwrap.indent(SERIES, "  ")}
) AS metric_series
WHERE metric_day >= DATE '2023-05-05'
  AND metric_day < DATE '2025-05-04'
  AND value IS NOT NULL
  AND NOT EXISTS (
    SELECT 1
    FROM `acme-data.prod_monitoring.anomaly_feedback` AS feedback
    WHERE feedback.metric = 'page_clicks'
      AND feedback.series_id = metric_series.series_id
      AND feedback.metric_day = metric_series.metric_day
      AND feedback.verdict = 'incident'
  )
QUALIFY COUNT(*) OVER (PARTITION BY series_id) >= 28"""

TRAINED_SERIES = f"""\
SELECT COUNT(DISTINCT series_id) AS series
FROM (
{textwrap.indent(TRAINING_QUERY, "  ")}
)"""

DETECTION_QUERY = f"""\
SELECT series_id, metric_day, value
FROM (
{textwrap.indent(SERIES, "  ")}
) AS metric_series
WHERE metric_day >= DATE '2025-05-04'
  AND value IS NOT NULL
  AND series_id IN (
    SELECT DISTINCT series_id
    FROM (
{textwrap.indent(TRAINING_QUERY, "      ")}
    )
  )"""

CREATE_MODEL = f"""\
CREATE OR REPLACE MODEL `acme-data.prod_monitoring.anomaly_model_page_clicks`
OPTIONS (
  model_type = 'ARIMA_PLUS',
  time_series_timestamp_col = 'metric_day',
  time_series_data_col = 'value',
  time_series_id_col = ['series_id'],
  data_frequency = 'DAILY',
  holiday_region = 'JP',
  auto_arima_max_order = 2
)
AS
{TRAINING_QUERY}"""

DETECT = f"""\
SELECT
  'page_clicks' AS metric,
  CAST(series_id AS STRING) AS series_id,
  CAST(metric_day AS DATE) AS metric_day,
  CAST(value AS FLOAT64) AS value,
  is_anomaly AND value > upper_bound AS is_anomaly,
  lower_bound,
  upper_bound,
  anomaly_probability
FROM ML.DETECT_ANOMALIES(
  MODEL `acme-data.prod_monitoring.anomaly_model_page_clicks`,
  STRUCT(0.999 AS anomaly_prob_threshold),
  (
{textwrap.indent(DETECTION_QUERY, "    ")}
  )
)
WHERE is_anomaly IS NOT NULL"""

LATEST_DAY = f"""\
SELECT MAX(metric_day) AS latest_day
FROM (
{textwrap.indent(SERIES, "  ")}
) AS metric_series"""


def _parse_detect_anomalies(parser: Any) -> exp.Expression:
    """`ML.DETECT_ANOMALIES(MODEL m, STRUCT(...), (query))` as an anonymous table function."""
    parser._match_text_seq("MODEL")
    arguments = [parser._parse_table()]
    while parser._match(TokenType.COMMA):
        struct_next = parser._match(TokenType.STRUCT, advance=False)
        arguments.append(parser._parse_bitwise() if struct_next else parser._parse_table())
    return parser.expression(exp.Anonymous(this="DETECT_ANOMALIES", expressions=arguments))


@pytest.fixture
def parse_bigquery(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], exp.Expression]]:
    # sqlglot's BigQuery grammar knows ML.PREDICT's argument order (model, data, struct) but not
    # ML.DETECT_ANOMALIES' (model, struct, data); teach it that one function, nothing else.
    monkeypatch.setitem(
        BigQuery.Parser.FUNCTION_PARSERS, "DETECT_ANOMALIES", _parse_detect_anomalies
    )
    yield lambda sql: sqlglot.parse_one(sql, read="bigquery")


def test_series_training_and_detection_queries_are_exact() -> None:
    assert series_sql(PAGE_CLICKS, SOURCE) == SERIES
    assert latest_day_sql(SERIES) == LATEST_DAY
    training = training_query_sql(SERIES, PAGE_CLICKS, START, FEEDBACK)
    assert training == TRAINING_QUERY
    assert trained_series_sql(training) == TRAINED_SERIES
    assert detection_query_sql(SERIES, START, training) == DETECTION_QUERY


def test_training_window_follows_training_days_and_min_history() -> None:
    spec = MetricSpec(
        name="m",
        description="d",
        direction="both",
        training_days=90,
        min_history_days=40,
        **DAILY_METRICS,
    )
    training = training_query_sql(SERIES, spec, START, FEEDBACK)
    assert "WHERE metric_day >= DATE '2025-02-03'\n  AND metric_day < DATE '2025-05-04'\n" in (
        training
    )
    assert training.endswith("QUALIFY COUNT(*) OVER (PARTITION BY series_id) >= 40")


def test_create_model_sql_is_exact() -> None:
    sql = create_model_sql(
        MODEL,
        TRAINING_QUERY,
        timestamp_col="metric_day",
        data_col="value",
        id_cols=["series_id"],
        auto_arima_max_order=2,
    )
    assert sql == CREATE_MODEL


def test_create_model_sql_with_every_option() -> None:
    sql = create_model_sql(
        "monitoring.anomaly_model_x",
        "SELECT d, v, a, b FROM t",
        timestamp_col="d",
        data_col="v",
        id_cols=["a", "b"],
        holiday_region="US",
        data_frequency="WEEKLY",
        auto_arima_max_order=3,
    )
    assert sql == (
        "CREATE OR REPLACE MODEL `monitoring.anomaly_model_x`\n"
        "OPTIONS (\n"
        "  model_type = 'ARIMA_PLUS',\n"
        "  time_series_timestamp_col = 'd',\n"
        "  time_series_data_col = 'v',\n"
        "  time_series_id_col = ['a', 'b'],\n"
        "  data_frequency = 'WEEKLY',\n"
        "  holiday_region = 'US',\n"
        "  auto_arima_max_order = 3\n"
        ")\n"
        "AS\n"
        "SELECT d, v, a, b FROM t"
    )


def test_detect_anomalies_sql_is_exact() -> None:
    sql = detect_anomalies_sql(
        MODEL, 0.999, DETECTION_QUERY, metric="page_clicks", direction="spike"
    )
    assert sql == DETECT


@pytest.mark.parametrize(
    ("direction", "flag"),
    [
        ("both", "  is_anomaly AS is_anomaly,\n"),
        ("spike", "  is_anomaly AND value > upper_bound AS is_anomaly,\n"),
        ("drop", "  is_anomaly AND value < lower_bound AS is_anomaly,\n"),
    ],
)
def test_direction_narrows_bigquery_flags(direction: str, flag: str) -> None:
    sql = detect_anomalies_sql(MODEL, 0.95, "SELECT 1", metric="m", direction=direction)
    assert flag in sql
    assert "STRUCT(0.95 AS anomaly_prob_threshold)" in sql


def test_every_statement_parses_as_bigquery(
    parse_bigquery: Callable[[str], exp.Expression],
) -> None:
    assert isinstance(parse_bigquery(CREATE_MODEL), exp.Create)
    for query in (SERIES, LATEST_DAY, TRAINING_QUERY, TRAINED_SERIES, DETECTION_QUERY):
        assert isinstance(parse_bigquery(query), exp.Select)
    assert isinstance(parse_bigquery(TRAINING_QUERY).args.get("qualify"), exp.Qualify)
    for direction in ("both", "spike", "drop"):
        sql = detect_anomalies_sql(MODEL, 0.999, DETECTION_QUERY, metric="m", direction=direction)
        tree = parse_bigquery(sql)
        call = tree.find(exp.Anonymous)
        assert call is not None and call.name == "DETECT_ANOMALIES"
        model, settings, data = call.expressions
        assert model.sql("bigquery") == MODEL
        assert isinstance(settings, exp.Struct)
        assert isinstance(data, exp.Subquery)
        assert tree.named_selects == list(RESULT_COLUMNS)


@pytest.mark.parametrize(
    "model",
    [
        "anomaly_model",
        "`acme-data.monitoring.model; DROP TABLE x`",
        "a.b.c.d",
        "Bad_Project.monitoring.model",
    ],
)
def test_model_names_are_validated(model: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        model_reference(model)


def test_model_reference_accepts_two_and_three_parts() -> None:
    assert model_reference("monitoring.m") == "`monitoring.m`"
    assert model_reference("`acme-data.monitoring.m`") == "`acme-data.monitoring.m`"


def test_names_and_options_reaching_sql_are_validated() -> None:
    query = "SELECT 1"
    with pytest.raises(InvalidIdentifierError):
        create_model_sql(MODEL, query, timestamp_col="d'x", data_col="v", id_cols=["a"])
    with pytest.raises(InvalidIdentifierError):
        create_model_sql(MODEL, query, timestamp_col="d", data_col="v", id_cols=["a b"])
    with pytest.raises(ValueError, match="id_cols"):
        create_model_sql(MODEL, query, timestamp_col="d", data_col="v", id_cols=[])
    with pytest.raises(ValueError, match="holiday_region"):
        create_model_sql(
            MODEL, query, timestamp_col="d", data_col="v", id_cols=["a"], holiday_region="jp'"
        )
    with pytest.raises(ValueError, match="data_frequency"):
        create_model_sql(
            MODEL, query, timestamp_col="d", data_col="v", id_cols=["a"], data_frequency="x"
        )
    with pytest.raises(ValueError, match="auto_arima_max_order"):
        create_model_sql(
            MODEL, query, timestamp_col="d", data_col="v", id_cols=["a"], auto_arima_max_order=6
        )
    with pytest.raises(InvalidIdentifierError):
        detect_anomalies_sql(MODEL, 0.9, query, metric="m'; --")
    with pytest.raises(ValueError, match="direction"):
        detect_anomalies_sql(MODEL, 0.9, query, metric="m", direction="up")
    for threshold in (0.0, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match="threshold"):
            detect_anomalies_sql(MODEL, threshold, query, metric="m")


class FakeJob:
    def __init__(self, table: pa.Table, bytes_billed: int) -> None:
        self._table = table
        self.total_bytes_billed = bytes_billed

    def to_arrow(self) -> pa.Table:
        return self._table


class FakeClient:
    """Stands in for google.cloud.bigquery.Client: records each job's SQL and cost guard."""

    def __init__(self, answers: list[tuple[pa.Table, int]]) -> None:
        self._answers = list(answers)
        self.sent: list[tuple[str, int | None]] = []

    def query(self, sql: str, job_config: bigquery.QueryJobConfig) -> FakeJob:
        self.sent.append((sql, job_config.maximum_bytes_billed))
        return FakeJob(*self._answers.pop(0))


DETECTED = pa.table(
    {
        "metric": ["page_clicks", "page_clicks"],
        "series_id": ["/", "/help/delivery-delay"],
        "metric_day": [dt.date(2025, 5, 10), dt.date(2025, 5, 10)],
        "value": [120.0, 1770.0],
        "is_anomaly": [False, True],
        "lower_bound": [90.0, 230.0],
        "upper_bound": [150.0, 380.0],
        "anomaly_probability": [0.4, 1.0],
    }
)


def _run(client: FakeClient, spec: MetricSpec, warehouse_limit: int | None = None):
    jobs = BigQueryJobs(client, warehouse_limit)
    result = detect_anomalies_bigquery(
        jobs,
        spec,
        series_query=SERIES,
        model=MODEL,
        feedback_table=FEEDBACK,
        detection_start=START,
    )
    return jobs, result


def test_bigquery_run_sends_exactly_these_jobs_and_counts_bytes_billed() -> None:
    empty = pa.table({"x": pa.array([], pa.int64())})
    client = FakeClient(
        [(pa.table({"series": [2]}), 10_485_760), (empty, 52_428_800), (DETECTED, 20_971_520)]
    )

    jobs, result = _run(client, PAGE_CLICKS)

    limit = 10 * 1024**3  # the metric's maximum_bytes_billed default
    assert client.sent == [(TRAINED_SERIES, limit), (CREATE_MODEL, limit), (DETECT, limit)]
    assert jobs.bytes_billed == 10_485_760 + 52_428_800 + 20_971_520
    assert tuple(result.columns) == RESULT_COLUMNS
    assert result.to_dict("records") == DETECTED.to_pylist()


def test_cost_guard_and_model_options_come_from_the_metric() -> None:
    spec = replace(
        PAGE_CLICKS,
        auto_arima_max_order=4,
        maximum_bytes_billed=1_000_000_000,
        frequency="WEEKLY",
        holiday_region="US",
    )
    client = FakeClient([(pa.table({"series": [1]}), 0), (pa.table({}), 0), (DETECTED, 0)])

    _run(client, spec, warehouse_limit=500_000_000)

    # The stricter of the metric's and the warehouse's limits applies to every job.
    assert [limit for _, limit in client.sent] == [500_000_000] * 3
    create = client.sent[1][0]
    assert "  auto_arima_max_order = 4\n" in create
    assert "  data_frequency = 'WEEKLY',\n" in create
    assert "  holiday_region = 'US',\n" in create


def test_bigquery_run_with_nothing_trainable_sends_only_the_count() -> None:
    client = FakeClient([(pa.table({"series": [0]}), 10_485_760)])

    jobs, result = _run(client, PAGE_CLICKS)

    assert [sql for sql, _ in client.sent] == [TRAINED_SERIES]
    assert jobs.bytes_billed == 10_485_760
    assert result.empty
    assert tuple(result.columns) == RESULT_COLUMNS
