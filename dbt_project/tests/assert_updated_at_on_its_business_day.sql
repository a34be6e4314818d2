-- Every ingested version was selected for the JST business day of its updated_at; after the
-- source-zone -> JST conversion the two must agree. A shard with a wrong timezone in
-- shards.yaml (the 9-hour bug) fails here.
select shard, client_id, order_id, updated_at, business_day
from {{ ref('cleansing_orders') }}
where cast(updated_at as date) <> business_day
