-- The current catalogue: the latest stored version of each product (history lives in
-- snapshot.snapshot_products).
with ranked as (
    select
        *,
        row_number() over (
            partition by _shard, _client_id, product_id order by updated_at desc, _loaded_at desc
        ) as _version_rank
    from {{ source('lake', 'products') }}
)

select
    _shard as shard,
    cast(_client_id as {{ dbt.type_bigint() }}) as client_id,
    cast(product_id as {{ dbt.type_bigint() }}) as product_id,
    product_name,
    category,
    {{ parse_amount('price') }} as price_jpy,
    {{ to_jst_datetime('updated_at', '_source_tz') }} as updated_at
from ranked
where _version_rank = 1
