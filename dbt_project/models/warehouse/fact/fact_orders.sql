{#- One row per order event (a stored order version), partitioned by the JST business day the
    event happened. Really incremental: a run reads and replaces only the business days between
    vars min_date and max_date (the Dagster partition window); a rerun replaces them exactly. -#}
{%- set bigquery = target.type == 'bigquery' -%}
{{ config(
    materialized='incremental',
    incremental_strategy=('insert_overwrite' if bigquery else 'delete+insert'),
    unique_key=(none if bigquery else 'business_day'),
    partition_by=({'field': 'business_day', 'data_type': 'date', 'granularity': 'day'} if bigquery else none),
    partitions=(business_day_partitions() if bigquery else none),
    cluster_by=(['shard', 'client_id'] if bigquery else none),
    on_schema_change='append_new_columns',
) }}

select
    business_day,
    shard,
    client_id,
    order_id,
    order_status,
    customer_key,
    total_amount_jpy,
    shipping_prefecture,
    ordered_at,
    updated_at,
    source_table,
    loaded_at
from {{ ref('cleansing_orders') }}
{% if is_incremental() %}
where {{ business_day_window('business_day') }}
{% endif %}
