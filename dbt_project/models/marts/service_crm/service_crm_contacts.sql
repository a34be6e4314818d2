-- Read by the CRM sync (reverse ETL): per CRM contact, purchase behaviour from orders. The CRM
-- already holds the contact, so only its own id and computed attributes leave; no PII.
with purchases as (
    select
        customer_key,
        count(distinct shard || '-' || cast(client_id as {{ dbt.type_string() }}) || '-' || cast(order_id as {{ dbt.type_string() }})) as lifetime_orders,
        sum(line_amount_jpy) as lifetime_gmv_jpy,
        max(ordered_at) as last_ordered_at
    from {{ ref('widetable_orders') }}
    where order_status <> 'cancelled' and customer_key is not null
    group by customer_key
)

select
    c.contact_id,
    c.lifecycle_stage,
    coalesce(p.lifetime_orders, 0) as lifetime_orders,
    cast(coalesce(p.lifetime_gmv_jpy, 0) as {{ dbt.type_float() }}) as lifetime_gmv_jpy,
    p.last_ordered_at,
    case
        when coalesce(p.lifetime_gmv_jpy, 0) >= 30000 then 'vip'
        when coalesce(p.lifetime_orders, 0) > 0 then 'active'
        else 'prospect'
    end as customer_segment
from {{ ref('cleansing_crm_contacts') }} as c
left join purchases as p on c.email_key = p.customer_key
