-- One row per stored order version: typed, JST, deduplicated, PII pseudonymised.
with ranked as (
    select
        *,
        -- Shards hold exact duplicate rows; the same version may also be loaded twice.
        row_number() over (
            partition by _shard, _client_id, order_id, updated_at order by _loaded_at desc
        ) as _version_rank
    from {{ source('lake', 'orders') }}
)

select
    _shard as shard,
    cast(_client_id as {{ dbt.type_bigint() }}) as client_id,
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    {{ hash_pii('customer_email') }} as customer_key,
    status as order_status,
    {{ parse_amount('total_amount') }} as total_amount_jpy,
    shipping_prefecture,
    note,
    {{ to_jst_datetime('ordered_at', '_source_tz') }} as ordered_at,
    {{ to_jst_datetime('updated_at', '_source_tz') }} as updated_at,
    _business_day as business_day,
    _source_table as source_table,
    _loaded_at as loaded_at
from ranked
where _version_rank = 1
