-- The most used table: one row per order line in its latest state, with order, product and
-- pseudonymous customer attributes. No PII.
with latest_orders as (
    select *
    from (
        select
            *,
            row_number() over (
                partition by shard, client_id, order_id order by updated_at desc
            ) as _rank
        from {{ ref('fact_orders') }}
    ) as ranked
    where _rank = 1
),

latest_items as (
    select *
    from (
        select
            *,
            row_number() over (
                partition by shard, client_id, order_item_id order by updated_at desc
            ) as _rank
        from {{ ref('cleansing_order_items') }}
    ) as ranked
    where _rank = 1
)

select
    o.shard,
    o.client_id,
    o.order_id,
    i.order_item_id,
    o.order_status,
    o.ordered_at,
    cast(o.ordered_at as date) as order_day,
    o.customer_key,
    o.shipping_prefecture,
    i.product_id,
    p.product_name,
    p.category,
    i.quantity,
    i.unit_price_jpy,
    i.quantity * i.unit_price_jpy as line_amount_jpy,
    o.total_amount_jpy as order_total_jpy
from latest_orders as o
inner join latest_items as i
    on o.shard = i.shard and o.client_id = i.client_id and o.order_id = i.order_id
left join {{ ref('cleansing_products') }} as p
    on i.shard = p.shard and i.client_id = p.client_id and i.product_id = p.product_id
