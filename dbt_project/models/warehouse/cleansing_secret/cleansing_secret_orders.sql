-- Unmasked customer PII of orders, keyed like cleansing_orders. Restricted; never read by marts.
select distinct
    _shard as shard,
    cast(_client_id as {{ dbt.type_bigint() }}) as client_id,
    cast(order_id as {{ dbt.type_bigint() }}) as order_id,
    {{ to_jst_datetime('updated_at', '_source_tz') }} as updated_at,
    {{ hash_pii('customer_email') }} as customer_key,
    customer_name,
    customer_email,
    customer_phone
from {{ source('lake', 'orders') }}
