with ranked as (
    select
        *,
        row_number() over (
            partition by _shard, _client_id, order_item_id, updated_at order by _loaded_at desc
        ) as _version_rank
    from {{ source('lake', 'order_items') }}
)

select
    _shard as shard,
    cast(_client_id as {{ dbt.type_bigint() }}) as client_id,
    cast(order_item_id as {{ dbt.type_bigint() }}) as order_item_id,
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    cast(product_id as {{ dbt.type_bigint() }}) as product_id,
    cast(quantity as {{ dbt.type_bigint() }}) as quantity,
    {{ parse_amount('unit_price') }} as unit_price_jpy,
    {{ to_jst_datetime('updated_at', '_source_tz') }} as updated_at,
    _business_day as business_day
from ranked
where _version_rank = 1
