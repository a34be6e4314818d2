-- For the sales team: daily orders and GMV per client company (cancelled orders excluded).
select
    order_day,
    shard,
    client_id,
    count(distinct order_id) as orders,
    sum(line_amount_jpy) as gmv_jpy
from {{ ref('widetable_orders') }}
where order_status <> 'cancelled'
group by order_day, shard, client_id
