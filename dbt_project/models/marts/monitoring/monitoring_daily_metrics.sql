-- Daily metric series of the demo, one row per (metric, series, day). Anomaly detection reads
-- them through assets/monitoring/metric_definitions/*.yaml (model monitoring.monitoring_daily_metrics,
-- `where: metric = ...`); a metric may as well name any other dbt model there, without a row here.
select
    order_day as metric_day,
    'gmv_by_category' as metric,
    coalesce(category, 'unknown') as series_id,
    cast(sum(line_amount_jpy) as {{ dbt.type_float() }}) as value
from {{ ref('widetable_orders') }}
where order_status <> 'cancelled'
group by order_day, coalesce(category, 'unknown')

union all

select
    order_day as metric_day,
    'orders_by_shard' as metric,
    shard as series_id,
    cast(count(distinct cast(client_id as {{ dbt.type_string() }}) || '-' || cast(order_id as {{ dbt.type_string() }})) as {{ dbt.type_float() }}) as value
from {{ ref('widetable_orders') }}
group by order_day, shard

union all

select
    metric_day,
    'page_clicks' as metric,
    page as series_id,
    cast(sum(clicks) as {{ dbt.type_float() }}) as value
from {{ ref('cleansing_search_console_pages') }}
group by metric_day, page
