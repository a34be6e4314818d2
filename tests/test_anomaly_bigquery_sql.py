"""BigQuery ML anomaly detection: the exact SQL, that it parses, and the statements a run sends."""

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.tokens import TokenType

from assets.monitoring.bigquery_ml import (
    create_model_sql,
    detect_anomalies_bigquery,
    detect_anomalies_sql,
    detection_query_sql,
    history_days_sql,
    model_reference,
    training_query_sql,
)
from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec
from resources.identifiers import InvalidIdentifierError
from resources.warehouse import BigQueryWarehouse

SOURCE = "`acme-data.prod_monitoring.monitoring_daily_metrics`"
MODEL = "`acme-data.prod_monitoring.anomaly_model_page_clicks`"
START = dt.date(2025, 5, 4)
PAGE_CLICKS = MetricSpec(name="page_clicks", description="clicks", direction="spike")

TRAINING_QUERY = """\
SELECT series_id, metric_day, value
FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
WHERE metric = 'page_clicks'
  AND metric_day < DATE '2025-05-04'
  AND value IS NOT NULL
  AND series_id IN (
    SELECT series_id
    FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
    WHERE metric = 'page_clicks'
      AND metric_day < DATE '2025-05-04'
      AND value IS NOT NULL
    GROUP BY series_id
    HAVING COUNT(*) >= 28
  )"""

CREATE_MODEL = f"""\
CREATE OR REPLACE MODEL `acme-data.prod_monitoring.anomaly_model_page_clicks`
OPTIONS (
  model_type = 'ARIMA_PLUS',
  time_series_timestamp_col = 'metric_day',
  time_series_data_col = 'value',
  time_series_id_col = ['series_id'],
  data_frequency = 'DAILY',
  holiday_region = 'JP'
)
AS
{TRAINING_QUERY}"""

DETECT = """\
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
    SELECT series_id, metric_day, value
    FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
    WHERE metric = 'page_clicks'
      AND metric_day >= DATE '2025-05-04'
      AND value IS NOT NULL
      AND series_id IN (
        SELECT series_id
        FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
        WHERE metric = 'page_clicks'
          AND metric_day < DATE '2025-05-04'
          AND value IS NOT NULL
        GROUP BY series_id
        HAVING COUNT(*) >= 28
      )
  )
)
WHERE is_anomaly IS NOT NULL"""

HISTORY_DAYS = """\
SELECT metric, series_id, COUNT(*) AS history_days
FROM `acme-data.prod_monitoring.monitoring_daily_metrics`
WHERE metric IN ('gmv_by_category', 'page_clicks')
  AND metric_day < DATE '2025-05-04'
  AND value IS NOT NULL
GROUP BY metric, series_id"""


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


def test_training_and_detection_queries_are_exact() -> None:
    assert training_query_sql(SOURCE, PAGE_CLICKS, START) == TRAINING_QUERY
    detection = detection_query_sql(SOURCE, PAGE_CLICKS, START)
    assert detection == TRAINING_QUERY.replace(
        "metric_day < DATE '2025-05-04'\n  AND value IS NOT NULL\n  AND series_id",
        "metric_day >= DATE '2025-05-04'\n  AND value IS NOT NULL\n  AND series_id",
    )


def test_create_model_sql_is_exact() -> None:
    sql = create_model_sql(
        MODEL,
        TRAINING_QUERY,
        timestamp_col="metric_day",
        data_col="value",
        id_cols=["series_id"],
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
    detection = detection_query_sql(SOURCE, PAGE_CLICKS, START)
    sql = detect_anomalies_sql(MODEL, 0.999, detection, metric="page_clicks", direction="spike")
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


def test_history_days_sql_is_exact() -> None:
    assert history_days_sql(SOURCE, ["gmv_by_category", "page_clicks"], START) == HISTORY_DAYS


def test_every_statement_parses_as_bigquery(
    parse_bigquery: Callable[[str], exp.Expression],
) -> None:
    assert isinstance(parse_bigquery(CREATE_MODEL), exp.Create)
    assert isinstance(parse_bigquery(TRAINING_QUERY), exp.Select)
    assert isinstance(parse_bigquery(HISTORY_DAYS), exp.Select)
    detection = detection_query_sql(SOURCE, PAGE_CLICKS, START)
    assert isinstance(parse_bigquery(detection), exp.Select)
    for direction in ("both", "spike", "drop"):
        sql = detect_anomalies_sql(MODEL, 0.999, detection, metric="m", direction=direction)
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


class RecordingWarehouse:
    """Stands in for BigQueryWarehouse: records the SQL, answers with canned Arrow tables."""

    kind = "bigquery"

    def __init__(self, answers: list[pa.Table]) -> None:
        # The real resource names things, so model and table names are the production ones.
        self._names = BigQueryWarehouse(project="acme-data", dataset_prefix="prod_")
        self._answers = list(answers)
        self.sent: list[tuple[str, str]] = []

    def qualified(self, schema: str, table: str) -> str:
        return self._names.qualified(schema, table)

    def execute(self, sql: str) -> None:
        self.sent.append(("execute", sql))

    def query_arrow(self, sql: str) -> pa.Table:
        self.sent.append(("query", sql))
        return self._answers.pop(0)


def test_bigquery_run_sends_exactly_these_statements() -> None:
    specs = {
        "gmv_by_category": MetricSpec(name="gmv_by_category", description="gmv", direction="drop"),
        "page_clicks": PAGE_CLICKS,
    }
    history_days = pa.table(
        {
            "metric": ["gmv_by_category", "page_clicks", "page_clicks"],
            "series_id": ["アウトドア", "/", "/help/delivery-delay"],
            # gmv has too little history for BigQuery ML to train on: no model is created.
            "history_days": [20, 56, 56],
        }
    )
    detected = pa.table(
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
    warehouse = RecordingWarehouse([history_days, detected])

    result = detect_anomalies_bigquery(warehouse, START, specs)  # type: ignore[arg-type]

    assert warehouse.sent == [
        ("query", HISTORY_DAYS),
        ("execute", CREATE_MODEL),
        ("query", DETECT),
    ]
    assert tuple(result.columns) == RESULT_COLUMNS
    assert result.to_dict("records") == detected.to_pylist()


def test_bigquery_run_with_nothing_trainable_sends_only_the_history_query() -> None:
    empty = pa.table({"metric": [], "series_id": [], "history_days": []})
    warehouse = RecordingWarehouse([empty])

    result = detect_anomalies_bigquery(warehouse, START, {"page_clicks": PAGE_CLICKS})  # type: ignore[arg-type]

    assert [kind for kind, _ in warehouse.sent] == ["query"]
    assert result.empty
    assert tuple(result.columns) == RESULT_COLUMNS
